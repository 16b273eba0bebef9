// usePresence, useOthers, useMyPresence and <AvatarStack/> between real clients.
import "./dom.mjs";
import { test } from "node:test";
import assert from "node:assert/strict";
import React from "react";
import { render, waitFor, act } from "@testing-library/react";
import { AvatarStack, HuddleProvider, StreamProvider, colorOf, useHuddle, useMyPresence, useOthers, usePresence } from "../dist/index.js";
import { Clients, idle, mintToken, options, subscribe, serverForFile } from "./helpers.mjs";

const h = React.createElement;
const W = { timeout: 8000 };

let srv;
const sdk = new Clients();
serverForFile(sdk, (s) => (srv = s));

const show = (users) => users.map((u) => `${u.user}=${JSON.stringify(u.state ?? null)}`).join(" ");

test("useOthers and useMyPresence round-trip between two providers", async () => {
  const updates = {};
  const clients = {};
  const othersSeen = { ann: [], bob: [] };
  function Room({ who }) {
    const [me, update] = useMyPresence(undefined, { status: "idle" });
    const others = useOthers();
    const all = usePresence();
    updates[who] = update;
    clients[who] = useHuddle();
    othersSeen[who].push(others.map((u) => u.user).join(","));
    return h("div", null,
      h("p", { "data-testid": `${who}-me` }, JSON.stringify(me ?? null)),
      h("p", { "data-testid": `${who}-others` }, show(others)),
      h("p", { "data-testid": `${who}-all` }, all.map((u) => u.user).sort().join(",")));
  }
  const app = (who) => h(HuddleProvider, { options: options(srv, who) }, h(StreamProvider, { name: "presence:room" }, h(Room, { who })));
  const ann = render(app("ann"));
  const bob = render(app("bob"));
  const text = (id) => document.querySelector(`[data-testid="${id}"]`).textContent;

  // The initial state is there at once (before the server has it), then both see each other.
  assert.equal(text("ann-me"), '{"status":"idle"}');
  await waitFor(() => assert.equal(text("ann-others"), 'bob={"status":"idle"}'), W);
  await waitFor(() => assert.equal(text("bob-others"), 'ann={"status":"idle"}'), W);
  await waitFor(() => assert.equal(text("ann-all"), "ann,bob"), W);
  assert.equal(text("bob-all"), "ann,bob");

  // Ann updates: her own state at once, Bob sees it through the server.
  act(() => updates.ann({ status: "typing", page: 2 }));
  assert.equal(text("ann-me"), '{"status":"typing","page":2}');
  await waitFor(() => assert.equal(text("bob-others"), 'ann={"status":"typing","page":2}'), W);
  // null deletes a key.
  act(() => updates.ann({ page: null }));
  await waitFor(() => assert.equal(text("bob-others"), 'ann={"status":"typing"}'), W);
  // And the other way.
  act(() => updates.bob({ status: "away" }));
  await waitFor(() => assert.equal(text("ann-others"), 'bob={"status":"away"}'), W);
  assert.equal(text("bob-me"), '{"status":"away"}');

  // Ann reconnects (the SDK forgets its user meanwhile, and keeps presence):
  // she never shows up among her own others.
  othersSeen.ann.length = 0;
  act(() => clients.ann.reconnect());
  await waitFor(() => assert.ok(othersSeen.ann.length > 0 && clients.ann.state === "connected"), W);
  await waitFor(() => assert.equal(text("ann-others"), 'bob={"status":"away"}'), W);
  assert.deepEqual(othersSeen.ann.filter((o) => o.split(",").includes("ann")), [], "renders of ann's others that had ann");

  // Bob's provider goes: Ann sees him leave.
  bob.unmount();
  await waitFor(() => assert.equal(text("ann-others"), ""), W);
  assert.equal(text("ann-all"), "ann");
  ann.unmount();
});

test("useMyPresence without an initial state joins on the first update", async () => {
  const got = {};
  function Me() {
    const [me, update] = useMyPresence("presence:late");
    got.update = update;
    return h("p", { "data-testid": "me" }, JSON.stringify(me ?? null));
  }
  const view = render(h(HuddleProvider, { options: options(srv, "late") }, h(Me)));
  const watcher = await sdk.connected(srv.wsUrl, "watcher");
  const { s } = await subscribe(watcher, "presence:late", { presence: true });
  // Subscribed but not joined: nobody there.
  await waitFor(async () => assert.equal((await srv.presence("presence:late")).clients, 0), W);
  assert.equal(view.getByTestId("me").textContent, "null");
  await waitFor(() => assert.ok(got.update), W);
  act(() => got.update({ mood: "ok" }));
  assert.equal(view.getByTestId("me").textContent, '{"mood":"ok"}');
  await waitFor(() => assert.deepEqual(s.presence.get("late")?.state, { mood: "ok" }), W);
});

test("<AvatarStack/> shows at most `max` avatars, me first, then +N, and follows joins and leaves", async () => {
  const people = [];
  for (const [sub, name] of [["u1", "Cleo Park"], ["u2", "dev"], ["u3", "Eli Stone"], ["u4", "Fay"]]) {
    const c = sdk.make(srv.wsUrl, { token: mintToken({ sub, name }) });
    await c.ready();
    await subscribe(c, "presence:avatars", { presence: true, join: {} });
    people.push(c);
  }
  const view = render(h(HuddleProvider, { options: options(srv, "me", { name: "Ann Lee" }) },
    h(AvatarStack, { stream: "presence:avatars", max: 3 }),
    h("div", { "data-testid": "custom" }, h(AvatarStack, { stream: "presence:avatars", max: 1, includeMe: false, renderAvatar: (u, look) => h("b", null, `${look.name}|${look.isMe}`), renderMore: (hidden) => h("i", null, `and ${hidden.length} more`) }))));
  const stack = () => view.container.querySelector("[data-huddle-avatars]");
  // AvatarStack only watches (this client has not joined): 4 present, max 3 shows 3 and "+1".
  await waitFor(() => assert.equal(stack().querySelector("[data-more]")?.textContent, "+1"), W);
  // The snapshot's order is the server's: check who is where, not the order.
  const names = { u1: ["Cleo Park", "CP"], u2: ["dev", "De"], u3: ["Eli Stone", "ES"], u4: ["Fay", "Fa"] };
  const shown = [...stack().querySelectorAll("[data-user]")];
  assert.equal(shown.length, 3);
  for (const el of shown) {
    const [name, ini] = names[el.dataset.user];
    assert.equal(el.textContent, ini);
    assert.equal(el.title, name);
    assert.equal(el.style.background, cssColor(colorOf(el.dataset.user)));
  }
  assert.notEqual(shown[0].style.background, shown[1].style.background);
  const hiddenUser = Object.keys(names).find((u) => !shown.some((el) => el.dataset.user === u));
  assert.equal(stack().querySelector("[data-more]").title, names[hiddenUser][0]);
  const custom = view.getByTestId("custom");
  assert.equal(custom.querySelector("b").textContent, `${names[shown[0].dataset.user][0]}|false`);
  assert.equal(custom.querySelector("i").textContent, "and 3 more");

  // Two leave: no "+N" any more.
  people[3].disconnect();
  people[2].disconnect();
  await waitFor(() => assert.equal(stack().querySelectorAll("[data-more]").length, 0), W);
  assert.deepEqual([...stack().querySelectorAll("[data-user]")].map((e) => e.dataset.user).sort(), ["u1", "u2"]);
});

test("<AvatarStack/> puts this user first, marked as me, once joined", async () => {
  const other = await sdk.connected(srv.wsUrl, "zed");
  await subscribe(other, "presence:me", { presence: true, join: {} });
  function Join() {
    useMyPresence("presence:me", {});
    return null;
  }
  const view = render(h(HuddleProvider, { options: options(srv, "amy", { name: "Amy" }) }, h(Join), h(AvatarStack, { stream: "presence:me" })));
  await waitFor(() => assert.equal(view.container.querySelectorAll("[data-user]").length, 2), W);
  const [first, second] = view.container.querySelectorAll("[data-user]");
  assert.equal(first.dataset.user, "amy");
  assert.ok(first.hasAttribute("data-me"));
  assert.equal(first.title, "Amy (you)");
  assert.equal(second.dataset.user, "zed");
  assert.ok(!second.hasAttribute("data-me"));
});

// cssColor is a colour as the DOM serializes it (jsdom turns hsl() into rgb()).
function cssColor(c) {
  const el = document.createElement("div");
  el.style.background = c;
  return el.style.background;
}
