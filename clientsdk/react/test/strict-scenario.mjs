// The StrictMode scenario, shared by strict.test.mjs (React 19, the
// installed one) and react18/strict.mjs (the same under React 18): many
// components of one provider use one stream under <StrictMode>, whose dev
// double run of every effect must not add a subscription, a join or a
// connection. What is counted is what really happens: the messages the
// client's socket sends (decoded) and the server's own /metrics and
// /api/stats.
import assert from "node:assert/strict";
import React, { StrictMode, useContext } from "react";
import { render, waitFor, act } from "@testing-library/react";
import {
  HuddleContext,
  HuddleProvider,
  useConnectionState,
  useCursors,
  useMyPresence,
  useOthers,
  usePublications,
  useStream,
  useStreamState,
  useWhisper,
} from "../dist/index.js";
import { countingWebSocket, messagesIn, metrics, options, stats, Clients, subscribe } from "./helpers.mjs";

const h = React.createElement;
const W = { timeout: 8000 };

export async function strictModeScenario(srv, stream = "strict:room") {
  const ws = countingWebSocket();
  const before = { sub: await messagesIn(srv, "sub"), unsub: await messagesIn(srv, "unsub"), join: await messagesIn(srv, "join"), accepted: (await metrics(srv))["huddle_connections_accepted_total"] ?? 0, subs: (await stats(srv)).subscriptions };

  const seen = { effects: 0, ctx: null };
  function Pubs() {
    const pubs = usePublications(stream, { limit: 5 });
    return h("ol", { "data-testid": "pubs" }, pubs.map((p) => h("li", { key: p.offset }, String(p.data.n))));
  }
  function Others() {
    const others = useOthers(stream);
    return h("p", { "data-testid": "others" }, others.map((u) => u.user).join(","));
  }
  function Me() {
    const [me] = useMyPresence(stream, { name: "Strict" });
    return h("p", { "data-testid": "me" }, JSON.stringify(me ?? null));
  }
  function Pointer() {
    const { others } = useCursors(stream);
    return h("p", { "data-testid": "cursors" }, String(others.length));
  }
  function Whisperer() {
    useWhisper(stream, () => {});
    return null;
  }
  function Probe() {
    const st = useStreamState(stream);
    seen.ctx = useContext(HuddleContext);
    return h("p", { "data-testid": "state" }, useConnectionState() + "/" + st);
  }
  function App({ show }) {
    return h(
      StrictMode,
      null,
      h(HuddleProvider, { options: options(srv, "strict", { WebSocket: ws.WebSocket }) },
        h(Probe), h(Pubs), h(Others), h(Me), h(Pointer), show ? h(Whisperer) : null),
    );
  }

  const view = render(h(App, { show: true }));
  await waitFor(() => assert.equal(view.getByTestId("state").textContent, "connected/subscribed"), W);
  // Let anything else that a second effect run might send go out and land.
  await new Promise((r) => setTimeout(r, 300));
  const client = seen.ctx.client;
  const registry = seen.ctx.registry;

  // The client's socket: one socket, one sub (with the join in it), no unsub, no separate join.
  assert.equal(ws.log.opened, 1, "sockets opened");
  assert.equal(ws.count("sub", stream), 1, "sub messages sent");
  assert.equal(ws.count("unsub", stream), 0, "unsub messages sent");
  assert.equal(ws.count("join", stream), 0, "join messages sent (the join rides on the sub)");
  const sub = ws.log.sent.find((m) => m.t === "sub" && m.s === stream);
  assert.equal(sub.presence, true);
  assert.deepEqual(sub.join, { name: "Strict" });
  // The SDK has the stream once; the registry counts each mounted user once (6, not 12).
  assert.equal([...client.streams.keys()].filter((n) => n === stream).length, 1);
  assert.equal(registry.refs(stream), 6, "mounted users of the stream");

  // The server saw exactly one sub, no unsub, one connection.
  const after = { sub: await messagesIn(srv, "sub"), unsub: await messagesIn(srv, "unsub"), join: await messagesIn(srv, "join"), accepted: (await metrics(srv))["huddle_connections_accepted_total"] ?? 0 };
  assert.equal(after.sub - before.sub, 1, "subs received by the server");
  assert.equal(after.unsub - before.unsub, 0, "unsubs received by the server");
  assert.equal(after.join - before.join, 0, "joins received by the server");
  assert.equal(after.accepted - before.accepted, 1, "connections accepted by the server");
  assert.equal((await stats(srv)).subscriptions - before.subs, 1, "subscriptions on the server");

  // Control: a second client subscribing does show up as one more sub, so
  // the counts above would have seen a double subscribe.
  const others = new Clients();
  try {
    const bob = await others.connected(srv.wsUrl, "bob");
    await subscribe(bob, stream, { presence: true, join: { name: "Bob" } });
    assert.equal((await messagesIn(srv, "sub")) - before.sub, 2, "the control sub is counted");
    await waitFor(() => assert.equal(view.getByTestId("others").textContent, "bob"), W);
    // It works, too: a publication arrives once.
    await bob.streams.get(stream).publish({ n: 1 });
    await waitFor(() => assert.equal(view.getByTestId("pubs").textContent, "1"), W);
  } finally {
    others.closeAll();
  }

  // A user that unmounts (in StrictMode too) releases its reference and nothing else.
  view.rerender(h(App, { show: false }));
  await waitFor(() => assert.equal(registry.refs(stream), 5), W);
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(ws.count("unsub", stream), 0);
  assert.equal(ws.count("sub", stream), 1);

  // Unmounting everything unsubscribes once and closes the provider's client.
  view.unmount();
  await waitFor(() => assert.equal(client.state, "disconnected"), W);
  await waitFor(async () => assert.equal((await stats(srv)).subscriptions - before.subs, 0), W);
  assert.equal(ws.count("sub", stream), 1);
  return { version: React.version, sent: ws.log.sent.map((m) => m.t) };
}
