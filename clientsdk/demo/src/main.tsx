// The entry point of the --dev demo page (bundled into cmd/huddle/web/demo.js).
import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import type * as Y from "yjs";
import { HuddleProvider, type Huddle, type Stream } from "@huddle/react";
import type { HuddleYjsProvider } from "@huddle/yjs";
import { App } from "./app.js";
import { startPage, type Note } from "./setup.js";

declare global {
  interface Window {
    /** huddle is the page's client. */
    huddle: Huddle;
    /** room is the board's stream, demo:room. */
    room: Stream<Note>;
    /** demo holds the shared text: its Y.Doc, Y.Text and provider. */
    demo: { doc: Y.Doc; text: Y.Text; provider: HuddleYjsProvider };
  }
}

const page = startPage(location);
window.huddle = page.client;
window.room = page.room;
window.demo = { doc: page.doc, text: page.text, provider: page.provider };
document.title = `${page.me} · Huddle demo`;

createRoot(document.getElementById("app")!).render(
  <StrictMode>
    <HuddleProvider client={page.client}>
      <App page={page} />
    </HuddleProvider>
  </StrictMode>,
);
