// useStream's shared, reference-counted subscriptions and usePublications.
import "./dom.mjs";
import { test } from "node:test";
import assert from "node:assert/strict";
import React, { useContext } from "react";
import { render, waitFor } from "@testing-library/react";
import { HuddleContext, HuddleProvider, StreamProvider, useOthers, usePublications, useStream, useStreamState, mergePublications } from "../dist/index.js";
import { Clients, countingWebSocket, delay, options, range, stats, subscribe, serverForFile } from "./helpers.mjs";

const h = React.createElement;
const W = { timeout: 8000 };

let srv;
const sdk = new Clients();
serverForFile(sdk, (s) => (srv = s));

function State({ stream }) {
  return h("p", { "data-testid": "sub" }, useStreamState(stream));
}

function PubList({ stream, limit, history, id = "pubs" }) {
  const pubs = usePublications(stream, { limit, history });
  return h("p", { "data-testid": id }, pubs.map((p) => `${p.offset}:${p.data.n}`).join(" "));
}

const expectPubs = (from, to) => range(from, to).map((n) => `${n}:${n}`).join(" ");

test("usePublications shows another client's publications in order, the latest `limit` of them", async () => {
  const view = render(h(HuddleProvider, { options: options(srv, "reader") }, h(State, { stream: "pubs:a" }), h(PubList, { stream: "pubs:a", limit: 10 })));
  await waitFor(() => assert.equal(view.getByTestId("sub").textContent, "subscribed"), W);
  const writer = (await subscribe(await sdk.connected(srv.wsUrl, "writer"), "pubs:a")).s;
  for (const n of range(1, 5)) await writer.publish({ n });
  await waitFor(() => assert.equal(view.getByTestId("pubs").textContent, expectPubs(1, 5)), W);
  // Fired without waiting for the acks: the hook still lists them in offset order, each once.
  await Promise.all(range(6, 25).map((n) => writer.publish({ n }).then((ack) => assert.ok(ack.offset > 0))));
  await waitFor(() => {
    const items = view.getByTestId("pubs").textContent.split(" ");
    assert.equal(items.length, 10);
    assert.deepEqual(items.map((i) => Number(i.split(":")[0])), range(16, 25));
  }, W);
  // Server-side publications arrive too.
  await srv.publish("pubs:a", [{ n: 26 }]);
  await waitFor(() => assert.match(view.getByTestId("pubs").textContent, / 26:26$/), W);
});

test("usePublications with history loads the latest publications, then follows live ones", async () => {
  await srv.publish("pubs:h", range(1, 6).map((n) => ({ n })));
  const view = render(h(HuddleProvider, { options: options(srv, "hist") }, h(PubList, { stream: "pubs:h", limit: 3, history: true })));
  await waitFor(() => assert.equal(view.getByTestId("pubs").textContent, expectPubs(4, 6)), W);
  await srv.publish("pubs:h", [{ n: 7 }]);
  await waitFor(() => assert.equal(view.getByTestId("pubs").textContent, expectPubs(5, 7)), W);
});

test("components using one stream share one subscription; the last to unmount unsubscribes", async () => {
  const ws = countingWebSocket();
  const ctx = {};
  function Grab() {
    Object.assign(ctx, useContext(HuddleContext));
    return null;
  }
  function User({ id }) {
    const s = useStream("shared:1");
    return h("p", { "data-testid": id }, s ? s.name : "none");
  }
  function App({ a, b, c, s = true }) {
    return h(HuddleProvider, { options: options(srv, "share", { WebSocket: ws.WebSocket }) },
      h(Grab), s ? h(State, { stream: "shared:1" }) : null,
      a ? h(User, { id: "a" }) : null, b ? h(PubList, { stream: "shared:1" }) : null, c ? h(User, { id: "c" }) : null);
  }
  const subsBefore = (await stats(srv)).subscriptions;
  const view = render(h(App, { a: true, b: true, c: true }));
  await waitFor(() => assert.equal(view.getByTestId("sub").textContent, "subscribed"), W);
  assert.equal(view.getByTestId("a").textContent, "shared:1");
  assert.equal(ws.count("sub", "shared:1"), 1);
  assert.equal(ctx.registry.refs("shared:1"), 4);
  assert.equal((await stats(srv)).subscriptions - subsBefore, 1);

  view.rerender(h(App, { a: false, b: true, c: false }));
  await delay(150);
  assert.equal(ws.count("unsub", "shared:1"), 0, "unsubscribed while still in use");
  assert.equal(ctx.registry.refs("shared:1"), 2);
  // Still working for the one left.
  await srv.publish("shared:1", [{ n: 1 }]);
  await waitFor(() => assert.equal(view.getByTestId("pubs").textContent, "1:1"), W);

  // The last users go: one unsub, and the server has no subscription left.
  view.rerender(h(App, { a: false, b: false, c: false, s: false }));
  await waitFor(() => assert.equal(ws.count("unsub", "shared:1"), 1), W);
  await waitFor(async () => assert.equal((await stats(srv)).subscriptions - subsBefore, 0), W);
  assert.equal(ctx.client.streams.has("shared:1"), false);
  assert.equal(ctx.registry.refs("shared:1"), 0);
  assert.equal(ctx.client.state, "connected", "the client stays");

  // Used again: a new subscription.
  view.rerender(h(App, { a: true, b: false, c: false, s: true }));
  await waitFor(() => assert.equal(view.getByTestId("sub").textContent, "subscribed"), W);
  assert.equal(ws.count("sub", "shared:1"), 2);
});

test("a component asking for presence on a stream subscribed without it resubscribes with recovery: nothing lost or repeated", async () => {
  const ws = countingWebSocket();
  function App({ presence }) {
    return h(HuddleProvider, { options: options(srv, "upg", { WebSocket: ws.WebSocket }) },
      h(StreamProvider, { name: "upgrade:1" },
        h(State, {}), h(PubList, { limit: 1000 }), presence ? h(Others) : null));
  }
  function Others() {
    return h("p", { "data-testid": "others" }, useOthers().map((u) => u.user).join(","));
  }
  const view = render(h(App, { presence: false }));
  await waitFor(() => assert.equal(view.getByTestId("sub").textContent, "subscribed"), W);
  assert.equal(ws.log.sent.find((m) => m.t === "sub").presence, undefined);
  const peer = await sdk.connected(srv.wsUrl, "peer");
  const { s: peerStream } = await subscribe(peer, "upgrade:1", { presence: true, join: {} });
  // Publish throughout the upgrade.
  let n = 0;
  let stop = false;
  const pumping = (async () => {
    while (!stop && n < 400) {
      n++;
      await peerStream.publish({ n });
    }
  })();
  await delay(30);
  view.rerender(h(App, { presence: true }));
  await waitFor(() => assert.equal(view.getByTestId("others").textContent, "peer"), W);
  stop = true;
  await pumping;
  assert.ok(n > 0);
  await waitFor(() => assert.equal(view.getByTestId("pubs").textContent, expectPubs(1, n)), W);
  const subs = ws.log.sent.filter((m) => m.t === "sub");
  assert.equal(subs.length, 2);
  assert.equal(subs[1].presence, true);
  assert.ok(subs[1].recover, "the second sub recovers from the first one's position");
  assert.equal(ws.count("unsub", "upgrade:1"), 1);
});

test("mergePublications keeps offset order, drops repeats, keeps the last `limit`, restarts on a new epoch", () => {
  const p = (offset, epoch = "e1") => ({ stream: "s", offset, epoch, data: offset, ts: 0, recovered: false });
  let list = mergePublications([], [p(1), p(2), p(4)], 10);
  list = mergePublications(list, [p(3), p(2), p(5)], 10);
  assert.deepEqual(list.map((x) => x.offset), [1, 2, 3, 4, 5]);
  assert.equal(mergePublications(list, [p(5)], 10), list, "nothing new: the same array");
  assert.deepEqual(mergePublications(list, [p(6)], 3).map((x) => x.offset), [4, 5, 6]);
  assert.deepEqual(mergePublications(list, [p(1, "e2")], 10).map((x) => x.epoch + x.offset), ["e21"]);
});
