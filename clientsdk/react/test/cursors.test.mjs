// useCursors and <Cursors/>: other connections' cursors from whispers, gone
// when they hide them, leave, or drop (after the presence grace).
import "./dom.mjs";
import { test } from "node:test";
import assert from "node:assert/strict";
import React from "react";
import { render, waitFor, fireEvent } from "@testing-library/react";
import { Cursors, HuddleProvider, colorOf, useCursors } from "../dist/index.js";
import { Clients, options, startProxy, subscribe, until, serverForFile } from "./helpers.mjs";

const h = React.createElement;
const W = { timeout: 8000 };

let srv;
const sdk = new Clients();
// A short grace, so that a dropped connection's leave comes soon.
serverForFile(sdk, (s) => (srv = s), ["--presence-grace", "300ms"]);

function CursorList({ stream }) {
  const { others } = useCursors(stream);
  return h("p", { "data-testid": "cursors" }, others.map((c) => `${c.user}@${c.data.x},${c.data.y}`).join(" "));
}

/** peer connects user sub (through url), subscribes to stream with presence and returns its cursor helper. */
async function peer(url, sub, stream) {
  const c = await sdk.connected(url, sub);
  const { s } = await subscribe(c, stream, { presence: true, join: {} });
  return { client: c, stream: s, cursors: s.cursors() };
}

test("useCursors shows another client's cursor as it moves, and drops it on hide and on leave", async () => {
  const view = render(h(HuddleProvider, { options: options(srv, "ann") }, h(CursorList, { stream: "cur:a" })));
  const text = () => view.getByTestId("cursors").textContent;
  const bob = await peer(srv.wsUrl, "bob", "cur:a");
  bob.cursors.move({ x: 10, y: 20 });
  await waitFor(() => assert.equal(text(), "bob@10,20"), W);
  bob.cursors.move({ x: 30, y: 40 });
  await waitFor(() => assert.equal(text(), "bob@30,40"), W);
  bob.cursors.hide();
  await waitFor(() => assert.equal(text(), ""), W);
  bob.cursors.move({ x: 5, y: 6 });
  await waitFor(() => assert.equal(text(), "bob@5,6"), W);
  bob.client.disconnect();
  await waitFor(() => assert.equal(text(), ""), W);
});

test("a cursor already shown is there at once for a component that mounts later (the server's latest value)", async () => {
  const bob = await peer(srv.wsUrl, "bob", "cur:late");
  bob.cursors.move({ x: 7, y: 8 });
  // Wait until the server has it: another client sees it.
  const watcher = await peer(srv.wsUrl, "watch", "cur:late");
  await until(watcher.cursors, "change", () => watcher.cursors.others.size === 1, 5000, "the watcher to see bob's cursor");
  const view = render(h(HuddleProvider, { options: options(srv, "ann") }, h(CursorList, { stream: "cur:late" })));
  await waitFor(() => assert.equal(view.getByTestId("cursors").textContent, "bob@7,8"), W);
});

test("a dropped connection's cursor goes when its presence grace ends", async () => {
  const proxy = await startProxy(srv.port);
  try {
    const view = render(h(HuddleProvider, { options: options(srv, "ann") }, h(CursorList, { stream: "cur:drop" })));
    const text = () => view.getByTestId("cursors").textContent;
    const bob = await peer(proxy.url, "bob", "cur:drop");
    bob.cursors.move({ x: 1, y: 2 });
    await waitFor(() => assert.equal(text(), "bob@1,2"), W);
    proxy.cut(); // no close frame: the server finds out, then holds bob for the grace
    await waitFor(() => assert.equal(text(), ""), W);
  } finally {
    await proxy.close();
  }
});

test("<Cursors/> places others' cursors in its layer with name and colour, and sends this pointer", async () => {
  const bob = await peer(srv.wsUrl, "bob", "cur:comp");
  const view = render(h(HuddleProvider, { options: options(srv, "ann", { name: "Ann Lee" }) },
    h("div", { "data-testid": "board", style: { position: "relative", width: "400px", height: "300px" } }, h(Cursors, { stream: "cur:comp" })),
    h("div", { "data-testid": "custom", style: { position: "relative" } },
      h(Cursors, { stream: "cur:comp", track: false, renderCursor: (c, look) => h("i", { "data-name": look.name }, `${c.client === bob.client.clientId}:${look.point.x}`) }))));
  const layer = view.getByTestId("board").querySelector("[data-huddle-cursors]");
  assert.equal(layer.style.position, "absolute");
  assert.equal(layer.style.pointerEvents, "none");

  bob.cursors.move({ x: 120, y: 45 });
  await waitFor(() => assert.equal(layer.querySelectorAll(`[data-client="${bob.client.clientId}"]`).length, 1), W);
  const el = layer.querySelector(`[data-client="${bob.client.clientId}"]`);
  assert.equal(el.dataset.user, "bob");
  assert.equal(el.style.transform, "translate(120px, 45px)");
  assert.equal(el.textContent, "bob"); // the token's info.name
  assert.equal(el.querySelector("path").getAttribute("fill"), colorOf("bob"));
  // The render prop replaces the arrow.
  await waitFor(() => assert.equal(view.getByTestId("custom").querySelector("i")?.textContent, "true:120"), W);
  bob.cursors.move({ x: 121, y: 46 });
  await waitFor(() => assert.equal(layer.querySelector(`[data-client="${bob.client.clientId}"]`).style.transform, "translate(121px, 46px)"), W);

  // This pointer over the board goes to bob (jsdom lays out nothing: the layer is at 0,0).
  fireEvent.pointerMove(view.getByTestId("board"), { clientX: 33, clientY: 44 });
  await until(bob.cursors, "change", () => [...bob.cursors.others.values()].some((c) => c.user === "ann" && c.data.x === 33 && c.data.y === 44), 5000, "bob to see ann's cursor");
  // The move joined presence, so bob learns ann's name (the join's diff may come after the cursor).
  await until(bob.cursors, "change", () => [...bob.cursors.others.values()].some((c) => c.user === "ann" && c.info?.name === "Ann Lee"), 5000, "ann's info");
  assert.equal(bob.stream.presence.get("ann")?.info?.name, "Ann Lee");
  fireEvent.pointerLeave(view.getByTestId("board"));
  await until(bob.cursors, "change", () => ![...bob.cursors.others.values()].some((c) => c.user === "ann"), 5000, "ann's cursor to go");

  // A non-point value is not drawn.
  bob.cursors.move({ x: "a" });
  await waitFor(() => assert.equal(layer.querySelectorAll("[data-client]").length, 0), W);

  // Ann's cursor is back; her provider unmounts: she leaves presence and bob drops it.
  fireEvent.pointerMove(view.getByTestId("board"), { clientX: 9, clientY: 9 });
  await until(bob.cursors, "change", () => [...bob.cursors.others.values()].some((c) => c.user === "ann" && c.data.x === 9), 5000, "ann's cursor again");
  view.unmount();
  await until(bob.cursors, "change", () => bob.cursors.others.size === 0, 5000, "ann's cursor to go with her");
});
