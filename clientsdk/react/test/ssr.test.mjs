// Server rendering under plain Node: no DOM globals, no connection, hooks
// give their initial values. Browser globals are watched from before the
// package is imported: neither it nor the SDK may read them.
import { test } from "node:test";
import assert from "node:assert/strict";

const touched = [];
const ours = /clientsdk\/(react|ts)\/(dist|src)\//;
for (const name of ["window", "document", "navigator", "location", "localStorage", "sessionStorage", "requestAnimationFrame", "HTMLElement"]) {
  if (name in globalThis) continue; // Node's own (navigator on Node >= 21): not a DOM
  Object.defineProperty(globalThis, name, {
    configurable: true,
    get() {
      const stack = new Error().stack ?? "";
      if (ours.test(stack)) touched.push(`${name}\n${stack}`);
      return undefined;
    },
  });
}

const React = (await import("react")).default;
const { renderToString } = await import("react-dom/server");
const lib = await import("../dist/index.js");
const h = React.createElement;

test("importing the package reads no browser global", () => {
  assert.equal(typeof document, "undefined");
  assert.deepEqual(touched, []);
  for (const name of ["HuddleProvider", "StreamProvider", "useHuddle", "useConnectionState", "useStream", "useStreamState", "usePublications", "usePresence", "useOthers", "useMyPresence", "useCursors", "useWhisper", "Cursors", "AvatarStack"]) {
    assert.equal(typeof lib[name], "function", name);
  }
});

test("renderToString renders every hook and component with its initial value, and connects nothing", () => {
  let sockets = 0;
  class NoSocket {
    constructor() {
      sockets++;
      throw new Error("no WebSocket on the server");
    }
  }
  let tokens = 0;
  const seen = {};
  function App() {
    seen.client = lib.useHuddle();
    const state = lib.useConnectionState();
    const stream = lib.useStream("ssr:room");
    const sub = lib.useStreamState();
    const pubs = lib.usePublications(undefined, { history: true });
    const everyone = lib.usePresence();
    const others = lib.useOthers();
    const [me, update] = lib.useMyPresence(undefined, { name: "Ann" });
    const cursors = lib.useCursors();
    const send = lib.useWhisper(undefined, () => {});
    update({ name: "ignored on the server" });
    cursors.move({ x: 1, y: 1 });
    return h("main", null,
      h("p", { id: "values" }, [
        `client=${seen.client}`, `state=${state}`, `stream=${stream}`, `sub=${sub}`, `pubs=${pubs.length}`, `everyone=${everyone.length}`,
        `others=${others.length}`, `me=${JSON.stringify(me ?? null)}`, `cursors=${cursors.others.length}`, `send=${send("ev", 1)}`,
      ].join(";")),
      h("div", { style: { position: "relative" } }, h(lib.Cursors)),
      h(lib.AvatarStack));
  }
  const html = renderToString(
    h(lib.HuddleProvider, { options: { url: "ws://127.0.0.1:9/ws", WebSocket: NoSocket, getToken: () => (tokens++, "t") } },
      h(lib.StreamProvider, { name: "ssr:room" }, h(App))),
  );
  assert.match(html, /client=null;state=disconnected;stream=null;sub=unsubscribed;pubs=0;everyone=0;others=0;me=null;cursors=0;send=false/);
  assert.match(html, /data-huddle-cursors=""/);
  assert.match(html, /data-huddle-avatars=""/);
  assert.doesNotMatch(html, /data-client=|data-user=|data-more=/);
  assert.equal(sockets, 0, "WebSockets made");
  assert.equal(tokens, 0, "tokens asked for");
  assert.deepEqual(touched, [], "browser globals read while rendering");
});

test("renderToString with a ready client uses it without subscribing", async () => {
  const { Huddle } = await import("@huddle/client");
  const client = new Huddle({ url: "ws://127.0.0.1:9/ws", autoConnect: false, transports: ["longpoll"], fetch: () => Promise.reject(new Error("no")) });
  let got;
  function App() {
    got = lib.useHuddle();
    return h("p", null, lib.useConnectionState() + "/" + lib.useStreamState("ssr:given"));
  }
  const html = renderToString(h(lib.HuddleProvider, { client }, h(App)));
  assert.equal(got, client);
  assert.match(html, /disconnected\/unsubscribed/);
  assert.equal(client.streams.size, 0, "streams made on the server");
  assert.deepEqual(touched, []);
});

test("hooks outside a provider throw on the server too", () => {
  function Lost() {
    lib.usePresence("x");
    return null;
  }
  assert.throws(() => renderToString(h(Lost)), /inside a <HuddleProvider>/);
});
