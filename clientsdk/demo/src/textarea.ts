// A two-way binding between a Y.Text and a <textarea>.
//
// Local edits: the browser changes the textarea first; on `input` the new
// value is compared with the one shown before (the common prefix and
// suffix give the one splice that happened) and that splice becomes a Yjs
// delete and insert. Remote edits: the textarea's selection is noted as
// Yjs relative positions before the first remote change, and after the
// changes the new text is shown and the selection put back where those
// positions now are, so text that others insert or delete before the caret
// does not move it within what the user is typing.
import * as Y from "yjs";

/** The transaction origin of edits made in a bound textarea. */
export const LOCAL = Symbol("textarea");

/** Splice is one change of a string: remove `remove` chars at `index`, then insert `insert` there. */
export interface Splice {
  index: number;
  remove: number;
  insert: string;
}

const isHigh = (c: number): boolean => c >= 0xd800 && c <= 0xdbff;
const isLow = (c: number): boolean => c >= 0xdc00 && c <= 0xdfff;

/**
 * diff returns the splice that turns `before` into `after`, from their
 * common prefix and suffix. caret is the caret in `after` (where the edit
 * ended): it places an insertion or deletion inside a run of equal
 * characters ("aa" -> "aaa") where it was made. A splice never cuts a
 * surrogate pair in two.
 */
export function diff(before: string, after: string, caret: number = after.length): Splice {
  const common = Math.min(before.length, after.length);
  let pre = 0;
  while (pre < common && before.charCodeAt(pre) === after.charCodeAt(pre)) pre++;
  // Typed text ends at the caret, so the change starts at most at the
  // caret minus what was inserted.
  pre = Math.min(pre, Math.max(0, caret - Math.max(0, after.length - before.length)));
  if (pre > 0 && isHigh(before.charCodeAt(pre - 1))) pre--;
  let suf = 0;
  while (suf < common - pre && before.charCodeAt(before.length - 1 - suf) === after.charCodeAt(after.length - 1 - suf)) suf++;
  if (suf > 0 && isLow(before.charCodeAt(before.length - suf))) suf--;
  return { index: pre, remove: before.length - pre - suf, insert: after.slice(pre, after.length - suf) };
}

interface Saved {
  start: Y.RelativePosition;
  end: Y.RelativePosition;
  direction: "forward" | "backward" | "none";
}

/**
 * bindTextarea keeps el and text equal both ways until the returned
 * function is called. el's current value is replaced by the text's.
 */
export function bindTextarea(text: Y.Text, el: HTMLTextAreaElement): () => void {
  const doc = text.doc;
  if (!doc) throw new Error("bindTextarea: the Y.Text is not in a Y.Doc");
  let shown = text.toString(); // what el shows, as far as the text knows
  el.value = shown;
  let saved: Saved | null = null;
  let queued = false;
  let live = true;

  const onInput = (): void => {
    const now = el.value;
    if (now === shown) return;
    const d = diff(shown, now, el.selectionEnd);
    shown = now;
    doc.transact(() => {
      if (d.remove > 0) text.delete(d.index, d.remove);
      if (d.insert !== "") text.insert(d.index, d.insert);
    }, LOCAL);
  };

  // Before the first remote change since the textarea was last brought up
  // to date, el's selection still indexes the text as it is: note it.
  const onBefore = (tr: Y.Transaction): void => {
    if (tr.origin === LOCAL || queued) return;
    const start = el.selectionStart;
    const end = el.selectionEnd;
    saved = {
      start: Y.createRelativePositionFromTypeIndex(text, start),
      // A range's end sticks to the character before it, so that text
      // inserted right after a selection does not join it.
      end: start === end ? Y.createRelativePositionFromTypeIndex(text, end) : Y.createRelativePositionFromTypeIndex(text, end, -1),
      direction: el.selectionDirection ?? "none",
    };
  };

  // Remote changes come in bursts (a frame of publications, a document
  // loaded at subscribe), each its own transaction: the textarea is
  // rewritten once per burst, in a microtask. No input event can come
  // between a change and that microtask, so `shown` is the text's value
  // whenever onInput runs.
  const render = (): void => {
    queued = false;
    if (!live) return;
    const now = text.toString();
    const sel = saved;
    saved = null;
    if (now === el.value) {
      shown = now;
      return;
    }
    const focused = el.ownerDocument.activeElement === el;
    const top = el.scrollTop;
    el.value = now;
    shown = now;
    // Setting the selection of a textarea that is not focused can focus it
    // on some phones (and bring up the keyboard): only the focused one's.
    if (focused && sel) {
      const s = Y.createAbsolutePositionFromRelativePosition(sel.start, doc);
      const e = Y.createAbsolutePositionFromRelativePosition(sel.end, doc);
      if (s && e) el.setSelectionRange(Math.min(s.index, e.index), Math.max(s.index, e.index), sel.direction);
    }
    el.scrollTop = top;
  };
  const onChange = (_e: Y.YTextEvent, tr: Y.Transaction): void => {
    if (tr.origin === LOCAL || queued) return;
    queued = true;
    queueMicrotask(render);
  };

  el.addEventListener("input", onInput);
  doc.on("beforeTransaction", onBefore);
  text.observe(onChange);
  return () => {
    live = false;
    el.removeEventListener("input", onInput);
    doc.off("beforeTransaction", onBefore);
    text.unobserve(onChange);
  };
}
