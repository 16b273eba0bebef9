// The textarea binding (src/textarea.ts) in Node, with a stand-in for the
// <textarea>: the splice found for an edit, local edits reaching the
// Y.Text, and the caret and selection kept through remote edits. The page
// itself is tested in Chromium by e2e/demo.
import { test } from "node:test";
import assert from "node:assert/strict";
import { build } from "esbuild";
import * as Y from "yjs";

// The module under test, compiled as it is bundled, with this package's
// yjs (so that its Y.Text is the one these tests make).
const out = await build({
  entryPoints: [new URL("../src/textarea.ts", import.meta.url).pathname],
  bundle: true, format: "esm", platform: "node", write: false, external: ["yjs"], logLevel: "error",
});
const { diff, bindTextarea } = await import("data:text/javascript;base64," + Buffer.from(out.outputFiles[0].text.replace(/from\s*"yjs"/g, `from ${JSON.stringify(import.meta.resolve("yjs"))}`)).toString("base64"));

const apply = (s, d) => s.slice(0, d.index) + d.insert + s.slice(d.index + d.remove);

test("diff finds the one splice, placed at the caret, never inside a surrogate pair", () => {
  const cases = [
    // before, after, caret, want
    ["", "a", 1, { index: 0, remove: 0, insert: "a" }],
    ["abc", "abXc", 3, { index: 2, remove: 0, insert: "X" }],
    ["abc", "ac", 1, { index: 1, remove: 1, insert: "" }],
    ["hello world", "hello there", 11, { index: 6, remove: 5, insert: "there" }],
    // a run of equal characters: the caret says where the edit was
    ["aa", "aaa", 1, { index: 0, remove: 0, insert: "a" }],
    ["aa", "aaa", 3, { index: 2, remove: 0, insert: "a" }],
    ["aaa", "aa", 0, { index: 0, remove: 1, insert: "" }],
    ["aaa", "aa", 2, { index: 2, remove: 1, insert: "" }],
    // emoji that share their first code unit
    ["x😀y", "x😃y", 3, { index: 1, remove: 2, insert: "😃" }],
    ["😀", "😀😀", 4, { index: 2, remove: 0, insert: "😀" }],
    ["", "", 0, { index: 0, remove: 0, insert: "" }],
  ];
  for (const [a, b, caret, want] of cases) {
    const d = diff(a, b, caret);
    assert.deepEqual(d, want, `${JSON.stringify(a)} -> ${JSON.stringify(b)} at ${caret}`);
    assert.equal(apply(a, d), b);
  }
  // Whatever the caret, the splice turns one into the other.
  for (let n = 0; n < 500; n++) {
    const rnd = (len) => Array.from({ length: len }, () => ["a", "b", "😀", "\n"][Math.floor(Math.random() * 4)]).join("");
    const a = rnd(Math.floor(Math.random() * 8)), b = rnd(Math.floor(Math.random() * 8));
    const d = diff(a, b, Math.floor(Math.random() * (b.length + 1)));
    assert.equal(apply(a, d), b, `${JSON.stringify(a)} -> ${JSON.stringify(b)}`);
    const cut = (s, i) => i > 0 && i < s.length && /[\udc00-\udfff]/.test(s[i]);
    assert.ok(!cut(a, d.index) && !cut(a, d.index + d.remove), `${JSON.stringify(a)}: splice ${JSON.stringify(d)} cuts a pair`);
  }
});

/** A stand-in for a focused <textarea>: value, selection, input events. */
function fakeTextarea() {
  const listeners = new Set();
  const el = {
    value: "",
    selectionStart: 0,
    selectionEnd: 0,
    selectionDirection: "none",
    scrollTop: 0,
    ownerDocument: { activeElement: null },
    addEventListener: (ev, fn) => ev === "input" && listeners.add(fn),
    removeEventListener: (ev, fn) => listeners.delete(fn),
    setSelectionRange(s, e, dir = "none") {
      this.selectionStart = s;
      this.selectionEnd = e;
      this.selectionDirection = dir;
    },
    /** type replaces the selection with text, as the browser does, and fires input. */
    type(text) {
      const v = this.value;
      this.value = v.slice(0, this.selectionStart) + text + v.slice(this.selectionEnd);
      this.selectionStart = this.selectionEnd = this.selectionStart + text.length;
      for (const fn of listeners) fn();
    },
    /** backspace deletes the character before the caret (or the selection). */
    backspace() {
      const v = this.value;
      const s = this.selectionStart === this.selectionEnd ? Math.max(0, this.selectionStart - 1) : this.selectionStart;
      this.value = v.slice(0, s) + v.slice(this.selectionEnd);
      this.selectionStart = this.selectionEnd = s;
      for (const fn of listeners) fn();
    },
  };
  el.ownerDocument.activeElement = el;
  return el;
}

/** Two documents kept in sync by hand, as a provider would (remote updates with their own origin). */
function pair() {
  const a = new Y.Doc(), b = new Y.Doc();
  a.on("update", (u, origin) => origin !== "remote" && Y.applyUpdate(b, u, "remote"));
  b.on("update", (u, origin) => origin !== "remote" && Y.applyUpdate(a, u, "remote"));
  return [a, b];
}
const microtask = () => new Promise((r) => queueMicrotask(r));

test("local typing reaches the Y.Text; remote edits keep the caret and the selection", async () => {
  const [docA, docB] = pair();
  const ta = docA.getText("text"), tb = docB.getText("text");
  const el = fakeTextarea();
  const unbind = bindTextarea(ta, el);
  el.type("hello world");
  assert.equal(tb.toString(), "hello world");

  // The caret after "hello"; B inserts before it: the caret moves along.
  el.setSelectionRange(5, 5);
  tb.insert(0, ">> ");
  assert.equal(el.value, "hello world", "the textarea is updated once per burst, not inside the transaction");
  await microtask();
  assert.equal(el.value, ">> hello world");
  assert.deepEqual([el.selectionStart, el.selectionEnd], [8, 8]);
  el.type(",");
  assert.equal(tb.toString(), ">> hello, world");

  // A selection of "world"; B edits before and right after it, in one burst.
  el.setSelectionRange(10, 15, "backward");
  assert.equal(el.value.slice(10, 15), "world");
  tb.delete(0, 3);
  tb.insert(tb.length, "!");
  await microtask();
  assert.equal(el.value, "hello, world!");
  assert.equal(el.value.slice(el.selectionStart, el.selectionEnd), "world", "the selection still holds the same text, without what was added after it");
  assert.equal(el.selectionDirection, "backward");

  // Typing over the selection and deleting.
  el.type("there");
  el.backspace();
  assert.equal(tb.toString(), "hello, ther!");

  // Edits after the caret leave it alone; an unfocused textarea still shows the text.
  el.setSelectionRange(0, 0);
  tb.insert(tb.length, " bye");
  await microtask();
  assert.deepEqual([el.value, el.selectionStart], ["hello, ther! bye", 0]);
  el.ownerDocument.activeElement = null;
  tb.insert(0, "A: ");
  await microtask();
  assert.equal(el.value, "A: hello, ther! bye");

  // After unbinding nothing flows either way.
  unbind();
  tb.insert(0, "x");
  await microtask();
  assert.equal(el.value, "A: hello, ther! bye");
  el.type("y");
  assert.equal(ta.toString(), "xA: hello, ther! bye");
});

test("two bound textareas typing at random places converge, each caret kept in its own words", async () => {
  const [docA, docB] = pair();
  const ea = fakeTextarea(), eb = fakeTextarea();
  bindTextarea(docA.getText("text"), ea);
  bindTextarea(docB.getText("text"), eb);
  ea.type("[a][b]");
  await microtask();
  assert.equal(eb.value, "[a][b]");
  ea.setSelectionRange(3, 3);
  eb.setSelectionRange(6, 6);
  // Alternate keystrokes; each lands at its typist's caret.
  for (let i = 0; i < 50; i++) {
    ea.type(String(i % 10));
    await microtask();
    eb.type("xyz"[i % 3]);
    await microtask();
  }
  assert.equal(ea.value, eb.value);
  const a = Array.from({ length: 50 }, (_, i) => String(i % 10)).join("");
  const b = Array.from({ length: 50 }, (_, i) => "xyz"[i % 3]).join("");
  assert.equal(ea.value, "[a]" + a + "[b]" + b);
  assert.equal(docA.getText("text").toString(), ea.value);
});
