// A DOM for Node: jsdom's window, put on globalThis before React and
// Testing Library are imported (import this module first).
import { JSDOM } from "jsdom";

export const dom = new JSDOM("<!doctype html><html><head></head><body></body></html>", {
  url: "http://localhost/",
  pretendToBeVisual: true,
});

const g = globalThis;
const names = [
  "window", "document", "navigator", "HTMLElement", "HTMLDivElement", "HTMLSpanElement", "SVGElement", "Element", "Node",
  "Text", "DocumentFragment", "Event", "CustomEvent", "MouseEvent", "PointerEvent", "KeyboardEvent", "FocusEvent",
  "MutationObserver", "getComputedStyle", "NodeFilter", "requestAnimationFrame", "cancelAnimationFrame",
];
for (const name of names) {
  const value = name === "window" ? dom.window : dom.window[name];
  if (value === undefined) continue;
  Object.defineProperty(g, name, {
    value: typeof value === "function" && /^[a-z]/.test(name) ? value.bind(dom.window) : value,
    configurable: true,
    writable: true,
  });
}

/** closeDom stops jsdom's timers (call it at the end of a test file). */
export function closeDom() {
  dom.window.close();
}
