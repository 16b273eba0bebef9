// What the page decides before React renders: who the user is, where the
// server is, and the one Huddle client, Yjs document and provider of the page.
import * as Y from "yjs";
import { Awareness } from "y-protocols/awareness";
import { Huddle, type HuddleOptions, type Stream } from "@huddle/client";
import { colorOf } from "@huddle/react";
import { HuddleYjsProvider } from "@huddle/yjs";

/** The stream of the board: cursors (whispers), avatars (presence) and notes (publications). */
export const ROOM = "demo:room";
/** The stream of the shared text: a document stream (`huddle --dev` adds the rule). */
export const DOC = "demo:doc";
/** The name of the Y.Text in the document. */
export const TEXT = "text";

/** A note on the board. */
export interface Note {
  text: string;
}

/** A cursor on the board, in px from the board's top-left corner. */
export interface Point {
  x: number;
  y: number;
}

const NAMES = ["Ann", "Bob", "Cleo", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jun", "Kai", "Lea", "Max",
  "Nia", "Otto", "Pia", "Quinn", "Rae", "Sam", "Tess", "Uma", "Vic", "Wen", "Xia", "Yann", "Zoe"];

export function randomName(): string {
  const pick = NAMES[Math.floor(Math.random() * NAMES.length)] ?? "Ann";
  return `${pick} ${10 + Math.floor(Math.random() * 90)}`;
}

/** whoAmI is ?user=, else the name this tab had, else a new one (kept for the tab). */
export function whoAmI(params: URLSearchParams): string {
  let me = params.get("user") || sessionStorage.getItem("huddle.user") || randomName();
  me = me.slice(0, 64);
  sessionStorage.setItem("huddle.user", me);
  return me;
}

/** isLoopback tells whether a host name is this machine (what --dev serves). */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "").toLowerCase();
  return h === "localhost" || h.endsWith(".localhost") || h === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/**
 * serverURL is the WebSocket URL of the server: this page's own /ws, or
 * ?ws=ws://127.0.0.1:PORT/ws (loopback only, as --dev is; the tests put a
 * proxy there to cut the connection). Another host in ?ws= is ignored: the
 * page would send it a token.
 */
export function serverURL(params: URLSearchParams, loc: Location): string {
  const own = (loc.protocol === "https:" ? "wss://" : "ws://") + loc.host + "/ws";
  const asked = params.get("ws");
  if (!asked) return own;
  try {
    const u = new URL(asked);
    if ((u.protocol === "ws:" || u.protocol === "wss:") && isLoopback(u.hostname)) return u.href;
  } catch {
    // not a URL: fall through
  }
  console.warn(`huddle demo: ignoring ?ws=${asked}: want a ws:// URL on a loopback host`);
  return own;
}

/** Page is everything the page shares: made once, before the first render. */
export interface Page {
  me: string;
  client: Huddle;
  room: Stream<Note>;
  doc: Y.Doc;
  text: Y.Text;
  provider: HuddleYjsProvider;
}

export function startPage(loc: Location): Page {
  const params = new URLSearchParams(loc.search);
  const me = whoAmI(params);
  const options: HuddleOptions = {
    url: serverURL(params, loc),
    getToken: async () => {
      const r = await fetch("/dev/token?user=" + encodeURIComponent(me));
      if (!r.ok) throw new Error(`/dev/token: ${r.status} ${await r.text()}`);
      return r.text();
    },
    ua: "huddle-demo",
  };
  // ?upgrade=<ms>: how often a page on a fallback transport tries the
  // WebSocket again (the SDK's upgradeInterval).
  const upgrade = Number(params.get("upgrade"));
  if (upgrade > 0) options.upgradeInterval = upgrade;
  const client = new Huddle(options);
  // The board's stream is made here rather than by the first component
  // that uses it, so that it is there for window.room at once; the
  // components share it (see StreamRegistry in @huddle/react).
  const room = client.stream<Note>(ROOM, { presence: true, join: {} });
  const doc = new Y.Doc();
  // The name and colour go into the awareness before the provider joins
  // the document's presence with them.
  const awareness = new Awareness(doc);
  awareness.setLocalStateField("user", { name: me, color: colorOf(me) });
  const provider = new HuddleYjsProvider(client, DOC, doc, { awareness });
  return { me, client, room, doc, text: doc.getText(TEXT), provider };
}
