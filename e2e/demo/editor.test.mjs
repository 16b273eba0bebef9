// The shared text of the --dev demo (a Y.Text on the document stream
// demo:doc through @huddle/yjs, bound to a <textarea>) and the page's
// layout, in headless Chromium against the real server binary:
//
// - two users type into the text at once and end with the same text, each
//   one's words whole and where that user typed them (so the binding kept
//   each caret through the other's edits), and a selection survives a
//   remote edit before it;
// - a user whose TCP connection a proxy cuts keeps editing offline while
//   the other edits too; when the connection is back both have the same
//   text with both edits;
// - a user who opens the page after 10,000 updates sees the whole text;
//   the time from navigation start to the full text in the editor is
//   printed and its median over 3 loads must be under 1 s;
// - on a phone (390 x 844 CSS px, touch) nothing scrolls sideways, the
//   text of the editor and the board is 14 px or more, the board's hint
//   goes once someone else's cursor is there, a cursor sent from a larger
//   board or far outside is drawn inside the board, and a finger on the
//   board moves the user's cursor on the other screens. Screenshots of
//   both sizes go to screenshots/; `npm run screenshots` also refreshes
//   the committed ones in screenshots-committed/.
//
// Each test starts its own server, so each starts with an empty document.
// Needs HUDDLE_BIN (a built cmd/huddle) and Debian's chromium at
// /usr/bin/chromium (or CHROMIUM).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import * as Y from "yjs";
import { startTCPProxy } from "../shared/tcp-proxy.mjs";
import { startDev, launchChromium, openPage, DESKTOP, PHONE, cursorAt } from "./harness.mjs";

const bin = process.env.HUDDLE_BIN;
const API_KEY = "e2e-demo-api-key";
const shots = new URL("./screenshots/", import.meta.url).pathname;
const committed = new URL("./screenshots-committed/", import.meta.url).pathname;
let browser;
const cleanups = [];

before(async () => {
  assert.ok(bin, "set HUDDLE_BIN to a built cmd/huddle");
  browser = await launchChromium();
  mkdirSync(shots, { recursive: true });
});

after(async () => {
  await browser?.close();
  for (const f of cleanups.reverse()) await f();
});

/** server starts `huddle --dev` with a known API key; it is stopped after the suite. */
async function server() {
  const dev = await startDev(bin, ["--api-key", API_KEY]);
  cleanups.push(() => dev.proc.kill("SIGTERM"));
  return dev;
}

// ---- in the page ----

const editorValue = () => document.getElementById("editor").value;
/** The textarea shows the Y.Text exactly. */
const boundExactly = () => document.getElementById("editor").value === window.demo.text.toString();
/** caretTo focuses the editor and puts the caret (or a selection) at [start, end]; end -1 means the end of the text. */
const caretTo = ([start, end]) => {
  const e = document.getElementById("editor");
  e.focus();
  const s = start < 0 ? e.value.length : start;
  e.setSelectionRange(s, end === undefined ? s : end < 0 ? e.value.length : end);
};
const selected = () => {
  const e = document.getElementById("editor");
  return e.value.slice(e.selectionStart, e.selectionEnd);
};

/** converged waits until every page's editor shows the same text, bound to its Y.Text, saved; it returns that text. */
async function converged(pages, ms = 15000) {
  const deadline = Date.now() + ms;
  let seen = [];
  for (;;) {
    seen = await Promise.all(pages.map((p) => p.evaluate(() => [
      document.getElementById("editor").value,
      document.getElementById("editor").value === window.demo.text.toString(),
      document.getElementById("doc-status").dataset.state,
    ])));
    if (seen.every(([v, bound, state]) => v === seen[0][0] && bound && state === "saved")) return seen[0][0];
    if (Date.now() > deadline) throw new Error(`editors did not converge within ${ms} ms: ${JSON.stringify(seen)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test("two users type into the text at once: the same text, each one's words whole where they typed them", { timeout: 60_000 }, async () => {
  const { base } = await server();
  const ann = await openPage(browser, base, "Ann");
  const bob = await openPage(browser, base, "Bob");

  await ann.evaluate(caretTo, [0]);
  await ann.keyboard.type("[start] [end]");
  assert.equal(await converged([ann, bob]), "[start] [end]");

  // Ann types at the end, Bob after "[start]", at the same time: Bob's
  // words land before Ann's caret, which must move along with them.
  await ann.evaluate(caretTo, [-1]);
  await bob.evaluate(caretTo, [7]);
  const annWords = " Ann typed this at the end, while Bob typed too.";
  const bobWords = " Bob typed this in the middle.";
  await Promise.all([ann.keyboard.type(annWords, { delay: 12 }), bob.keyboard.type(bobWords, { delay: 12 })]);
  assert.equal(await converged([ann, bob]), "[start]" + bobWords + " [end]" + annWords);

  // Ann selects "[end]"; Bob inserts at the very start; Ann's selection
  // still holds "[end]", and Bob's caret stays after what he typed.
  await ann.evaluate(() => {
    const e = document.getElementById("editor");
    const i = e.value.indexOf("[end]");
    e.focus();
    e.setSelectionRange(i, i + 5);
  });
  await bob.evaluate(caretTo, [0]);
  await bob.keyboard.type(">> ");
  await ann.waitForFunction(() => document.getElementById("editor").value.startsWith(">> "), null, { timeout: 5000 });
  assert.equal(await ann.evaluate(selected), "[end]", "Ann's selection moved with the text");
  await bob.keyboard.type("!");
  const text = await converged([ann, bob]);
  assert.equal(text, ">> ![start]" + bobWords + " [end]" + annWords);
  for (const p of [ann, bob]) assert.equal(await p.evaluate(boundExactly), true);
  await ann.context().close();
  await bob.context().close();
});

test("edits made while a proxy has cut one user's connection reach everyone once it is back", { timeout: 60_000 }, async () => {
  const { base, port } = await server();
  const proxy = await startTCPProxy(port);
  cleanups.push(() => proxy.close());
  const ann = await openPage(browser, base, "Ann");
  // Bob's WebSocket goes through the proxy (the page takes ?ws=).
  const bob = await openPage(browser, base, "Bob", { query: "&ws=" + encodeURIComponent(proxy.wsUrl) });
  assert.ok(proxy.connections > 0, "Bob's connection goes through the proxy");
  await ann.evaluate(caretTo, [0]);
  await ann.keyboard.type("Shared line.");
  assert.equal(await converged([ann, bob]), "Shared line.");

  proxy.cut();
  await bob.waitForFunction(() => document.querySelector("#status.down") && document.getElementById("doc-status").dataset.state === "offline", null, { timeout: 10000 });
  await bob.evaluate(caretTo, [-1]);
  await bob.keyboard.type(" Bob wrote this offline.");
  await ann.evaluate(caretTo, [0]);
  await ann.keyboard.type("Ann wrote this online. ");
  // Neither has the other's edit while the connection is down.
  await ann.waitForTimeout(500);
  assert.equal(await ann.evaluate(editorValue), "Ann wrote this online. Shared line.");
  assert.equal(await bob.evaluate(editorValue), "Shared line. Bob wrote this offline.");
  assert.equal(await bob.evaluate(() => document.getElementById("doc-status").textContent), "offline · edits kept");

  proxy.restore();
  await bob.waitForSelector("#status.ok", { timeout: 20000 });
  assert.equal(await converged([ann, bob]), "Ann wrote this online. Shared line. Bob wrote this offline.");
  await ann.context().close();
  await bob.context().close();
});

test("a user who opens the page after 10,000 updates sees the whole text in under a second", { timeout: 120_000 }, async () => {
  const { base } = await server();
  // 10,000 single-keystroke Yjs updates, each its own publication, as
  // someone typing would have made them (through the HTTP API, 500 a
  // request).
  const scratch = new Y.Doc();
  const updates = [];
  scratch.on("update", (u) => updates.push(u));
  const t = scratch.getText("text");
  const line = "Every keystroke was its own update; the late joiner gets all of them. ";
  for (let i = 0; i < 10_000; i++) t.insert(t.length, i % 80 === 79 ? "\n" : line[i % line.length]);
  const want = t.toString();
  assert.equal(updates.length, 10_000);
  for (let i = 0; i < updates.length; i += 500) {
    const body = updates.slice(i, i + 500).map((u) => ({ stream: "demo:doc", data: Buffer.from(u).toString("base64") }));
    const r = await fetch(base + "api/publish", { method: "POST", headers: { authorization: `Bearer ${API_KEY}`, "content-type": "application/json" }, body: JSON.stringify(body) });
    const reply = await r.text();
    assert.equal(r.status, 200, reply);
    assert.equal(JSON.parse(reply).results.length, body.length);
  }

  // Three page loads, each in a fresh context (nothing cached): from
  // navigation start to the whole text in the editor, checked every frame.
  const times = [];
  for (let i = 0; i < 3; i++) {
    const ctx = await browser.newContext({ viewport: DESKTOP });
    const page = await ctx.newPage();
    page.on("pageerror", (err) => console.error("late joiner: page error:", err));
    await page.addInitScript((n) => {
      const tick = () => {
        const e = document.getElementById("editor");
        if (e && e.value.length === n) window.fullTextAt = performance.now();
        else requestAnimationFrame(tick);
      };
      requestAnimationFrame(tick);
    }, want.length);
    await page.goto(base + "?user=Late" + (i + 1));
    await page.waitForFunction(() => window.fullTextAt !== undefined, null, { timeout: 20000 });
    times.push(await page.evaluate(() => window.fullTextAt));
    assert.equal(await page.evaluate(editorValue), want, "the whole text, in order");
    assert.equal(await page.evaluate(boundExactly), true);
    await ctx.close();
  }
  const median = [...times].sort((a, b) => a - b)[1];
  console.log(`# late joiner, 10,000 updates: whole text in the editor ${times.map((ms) => ms.toFixed(0) + " ms").join(", ")} after navigation start; median ${median.toFixed(0)} ms`);
  assert.ok(median < 1000, `median ${median.toFixed(0)} ms from navigation start to the whole text, want < 1000 ms (${times.map((x) => x.toFixed(0)).join(", ")})`);
});

// In the phone's page: every piece of text in the editor and on the board
// that is shown, with its font size when under 14 px.
const smallText = () => {
  const out = [];
  const check = (el, what) => {
    if (el.getClientRects().length === 0) return; // not shown
    const px = parseFloat(getComputedStyle(el).fontSize);
    if (!(px >= 14)) out.push(`${what}: ${px}px`);
  };
  for (const root of [document.getElementById("doc"), document.getElementById("board")]) {
    const walk = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    for (let n = walk.nextNode(); n; n = walk.nextNode()) {
      if (n.textContent.trim() !== "") check(n.parentElement, `${n.parentElement.tagName.toLowerCase()}.${n.parentElement.className} "${n.textContent.trim().slice(0, 24)}"`);
    }
    for (const el of root.querySelectorAll("textarea, input, button")) check(el, `${el.tagName.toLowerCase()}#${el.id}`);
  }
  return out;
};
const hintShown = () => {
  const h = document.getElementById("hint");
  return !!h && getComputedStyle(h).display !== "none" && h.getBoundingClientRect().height > 0;
};
const hintHidden = () => {
  const h = document.getElementById("hint");
  return !!h && getComputedStyle(h).display === "none";
};
/**
 * cursorInBoard: user's cursor (arrow and name tag) is drawn within the
 * board's canvas (not over the notes), with its arrow near the board's bottom-right corner
 * ("corner") or top-right corner ("top-right"). Returns where the arrow
 * is, or null.
 */
const cursorInBoard = ([user, where]) => {
  const el = document.querySelector(`[data-huddle-cursors] .cursor[data-user="${user}"]`);
  if (!el) return null;
  const b = document.querySelector("#board .canvas").getBoundingClientRect();
  const parts = [el.querySelector("svg").getBoundingClientRect(), el.querySelector(".label").getBoundingClientRect()];
  const inside = parts.every((r) => r.width > 0 && r.left >= b.left - 0.5 && r.right <= b.right + 0.5 && r.top >= b.top - 0.5 && r.bottom <= b.bottom + 0.5);
  const at = { x: parts[0].left - b.left, y: parts[0].top - b.top, w: b.width, h: b.height };
  const right = at.x + 16 >= at.w - 3;
  const placed = where === "corner" ? right && at.y + 20 >= at.h - 3 : right && at.y <= 3;
  return inside && placed ? at : null;
};
const whereIs = (user) => {
  const el = document.querySelector(`[data-huddle-cursors] .cursor[data-user="${user}"]`);
  if (!el) return "not drawn";
  const b = document.querySelector("#board .canvas").getBoundingClientRect();
  return JSON.stringify({ board: b, arrow: el.querySelector("svg").getBoundingClientRect(), label: el.querySelector(".label").getBoundingClientRect() });
};

test("desktop and phone: the phone layout reads and fits, cursors stay on the board, screenshots", { timeout: 60_000 }, async () => {
  const { base } = await server();
  const ann = await openPage(browser, base, "Ann");
  const bob = await openPage(browser, base, "Bob", { context: PHONE });

  // Some content, from both sides (from the keyboard: a pointer over the
  // board would show a cursor).
  await ann.evaluate(caretTo, [0]);
  await ann.keyboard.type("Notes for Friday\n\n- agenda: the phone layout\n- Bob: check it on the train");
  await ann.fill("#note-text", "Layout looks good on my laptop");
  await ann.press("#note-text", "Enter");
  await bob.fill("#note-text", "And on my phone");
  await bob.press("#note-text", "Enter");
  await converged([ann, bob]);
  for (const page of [ann, bob]) await page.waitForFunction(() => document.querySelectorAll("#notes li").length === 2, null, { timeout: 5000 });

  // The phone: one column, nothing sideways, readable text.
  assert.deepEqual(await bob.evaluate(() => [innerWidth, document.scrollingElement.scrollWidth <= innerWidth]), [390, true], "no horizontal scroll on the phone");
  assert.deepEqual(await bob.evaluate(smallText), [], "text under 14 px in the editor or on the board");
  const [doc, board] = await Promise.all(["#doc", "#board"].map((s) => bob.locator(s).boundingBox()));
  assert.ok(board.y >= doc.y + doc.height, `the board is below the text on the phone: ${JSON.stringify({ doc, board })}`);
  assert.ok(doc.x >= 0 && doc.x + doc.width <= 390 && board.x >= 0 && board.x + board.width <= 390, "both fit the width");
  assert.equal(await bob.evaluate(hintShown), true, "the hint shows while nobody else's cursor is there");

  // Ann's pointer on her board: the phone draws it and drops the hint.
  await bob.locator("#board").scrollIntoViewIfNeeded();
  const annBoard = await ann.locator("[data-huddle-cursors]").boundingBox();
  await ann.mouse.move(annBoard.x + 120, annBoard.y + 100, { steps: 4 });
  await bob.waitForFunction(cursorAt, ["Ann", 120, 100], { timeout: 5000 });
  await bob.waitForFunction(hintHidden, null, { timeout: 5000 });

  // Her pointer where the phone's board ends (hers is wider and taller):
  // drawn at the phone board's corner, inside it.
  await ann.mouse.move(annBoard.x + annBoard.width - 5, annBoard.y + annBoard.height - 5, { steps: 4 });
  const inBoard = (where) => bob.waitForFunction(cursorInBoard, ["Ann", where], { timeout: 5000 })
    .catch(async (err) => { throw new Error(`Ann's cursor, want it inside the board at its ${where}: ${await bob.evaluate(whereIs, "Ann")}: ${err.message}`); });
  await inBoard("corner");
  // A cursor far outside any board (a client may send any numbers): drawn
  // at the nearest point of the board.
  await ann.evaluate(() => window.room.cursors().move({ x: 5000, y: -3000 }));
  await inBoard("top-right");
  assert.deepEqual(await bob.evaluate(() => [innerWidth, document.scrollingElement.scrollWidth <= innerWidth]), [390, true], "the cursor made nothing scroll sideways");

  // A finger on the phone's board moves Bob's cursor on Ann's screen.
  const bobBoard = await bob.locator("[data-huddle-cursors]").boundingBox();
  const cdp = await bob.context().newCDPSession(bob);
  const touch = (type, x, y) => cdp.send("Input.dispatchTouchEvent", { type, touchPoints: type === "touchEnd" ? [] : [{ x: bobBoard.x + x, y: bobBoard.y + y }] });
  await touch("touchStart", 60, 60);
  for (let i = 1; i <= 5; i++) await touch("touchMove", 60 + i * 30, 60 + i * 20);
  await ann.waitForFunction(cursorAt, ["Bob", 210, 160], { timeout: 5000 });
  await ann.mouse.move(annBoard.x + 300, annBoard.y + 180, { steps: 4 });
  await bob.waitForFunction(cursorAt, ["Ann", 300, 180], { timeout: 5000 });

  await ann.screenshot({ path: shots + "desktop.png" });
  await bob.screenshot({ path: shots + "phone.png", fullPage: true });
  if (process.env.UPDATE_SCREENSHOTS) {
    mkdirSync(committed, { recursive: true });
    await ann.screenshot({ path: committed + "desktop.png" });
    await bob.screenshot({ path: committed + "phone.png", fullPage: true, scale: "css" });
  }
  await touch("touchEnd");
  await ann.waitForFunction((u) => !document.querySelector(`[data-huddle-cursors] .cursor[data-user="${u}"]`), "Bob", { timeout: 5000 });
  await ann.context().close();
  await bob.context().close();
});
