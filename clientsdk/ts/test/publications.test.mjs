// Publications: order and exactly-once delivery of server-side publishes (both
// codecs), publish() from the SDK, and history().
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, Clients, mintToken, waitFor, until, subscribe, range } from "./server.mjs";

let srv;
const clients = new Clients();

before(async () => {
  srv = await startServer();
});

after(async () => {
  clients.closeAll();
  await srv?.stop();
});

for (const codec of ["msgpack", "json"]) {
  test(`200 publications through the HTTP API arrive in offset order, contiguous, exactly once (${codec})`, { timeout: 15_000 }, async () => {
    const name = `order:${codec}`;
    const c = await clients.connected(srv.wsUrl, `reader-${codec}`, { codec });
    const { s, pubs, subs } = await subscribe(c, name);
    assert.equal(subs.length, 1);
    const top = subs[0].offset;
    assert.equal(top, 0, "a fresh stream starts at offset 0");
    assert.equal(subs[0].recovered, undefined, "no recover asked, no recovered");
    assert.equal(subs[0].missed, 0);
    assert.equal(s.state, "subscribed");

    // 200 publications in 4 batches of 50, each batch kept in order by the server.
    const results = [];
    for (let b = 0; b < 4; b++) {
      results.push(...(await srv.publish(name, range(b * 50, b * 50 + 49).map((i) => ({ i, text: `m${i}`, nested: { list: [i, "x", true, null] } })))));
    }
    assert.deepEqual(results.map((r) => r.offset), range(1, 200));
    const epoch = results[0].epoch;
    assert.ok(results.every((r) => r.epoch === epoch));

    await until(s, "publication", () => pubs.length >= 200, 10_000, "200 publications", () => `got ${pubs.length}`);
    // A marker after them: anything delivered twice would arrive before it.
    const [marker] = await srv.publish(name, [{ marker: true }]);
    await until(s, "publication", () => pubs.some((p) => p.offset === marker.offset), 5000, "the marker");

    assert.equal(pubs.length, 201, "exactly once");
    assert.deepEqual(pubs.map((p) => p.offset), range(1, 201), "offset order, contiguous");
    assert.deepEqual(pubs.slice(0, 200).map((p) => p.data), range(0, 199).map((i) => ({ i, text: `m${i}`, nested: { list: [i, "x", true, null] } })));
    for (const p of pubs) {
      assert.equal(p.epoch, epoch);
      assert.equal(p.from, undefined, "server-side publishes have no from");
      assert.equal(typeof p.ts, "number");
      assert.ok(Math.abs(p.ts - Date.now()) < 60_000, `ts ${p.ts} is unix ms`);
      assert.equal(p.recovered, false);
    }
    assert.deepEqual(s.position, { epoch, offset: 201 });
  });
}

test("publish() resolves with {offset, epoch}; the other client gets it with from.user and from.client", { timeout: 10_000 }, async () => {
  const name = "chat:sdk";
  const ann = await clients.connected(srv.wsUrl, "ann");
  const bob = await clients.connected(srv.wsUrl, "bob", { codec: "json" });
  const a = await subscribe(ann, name);
  const b = await subscribe(bob, name);

  const got = waitFor(b.s, "publication", (p) => p.data?.text === "hi", 5000, "bob gets ann's publication");
  const ack = await a.s.publish({ text: "hi", n: 1.5, list: [1, 2] });
  assert.equal(ack.offset, 1);
  assert.equal(typeof ack.epoch, "string");
  assert.ok(ack.epoch.length > 0);

  const p = await got;
  assert.equal(p.offset, ack.offset);
  assert.equal(p.epoch, ack.epoch);
  assert.deepEqual(p.data, { text: "hi", n: 1.5, list: [1, 2] });
  assert.deepEqual(p.from, { user: "ann", client: ann.clientId });

  // The publisher, subscribed too, gets its own publication once.
  await until(a.s, "publication", () => a.pubs.length >= 1, 5000, "ann's own publication");
  assert.deepEqual(a.pubs.map((x) => [x.offset, x.from?.client]), [[1, ann.clientId]]);

  // Publishes from both sides share one offset sequence.
  const ack2 = await b.s.publish("second");
  assert.equal(ack2.offset, 2);
  assert.equal(ack2.epoch, ack.epoch);
  await until(a.s, "publication", () => a.pubs.length >= 2, 5000, "bob's publication at ann");
  assert.deepEqual(a.pubs[1].from, { user: "bob", client: bob.clientId });
  assert.equal(a.pubs[1].data, "second");
});

test("history() returns stored publications (all, reverse with limit, since a position)", { timeout: 10_000 }, async () => {
  const name = "hist:1";
  const results = await srv.publish(name, range(1, 10).map((i) => ({ i })));
  const epoch = results[0].epoch;
  const c = await clients.connected(srv.wsUrl, "historian");
  const { s, subs } = await subscribe(c, name);
  assert.equal(subs[0].offset, 10);
  assert.equal(subs[0].epoch, epoch);

  const all = await s.history();
  assert.equal(all.epoch, epoch);
  assert.equal(all.offset, 10);
  assert.equal(all.more, false);
  assert.deepEqual(all.pubs.map((p) => p.offset), range(1, 10));
  assert.deepEqual(all.pubs.map((p) => p.data), range(1, 10).map((i) => ({ i })));
  assert.ok(all.pubs.every((p) => p.epoch === epoch && typeof p.ts === "number"));

  const newest = await s.history({ limit: 3, reverse: true });
  assert.deepEqual(newest.pubs.map((p) => p.offset), [10, 9, 8]);
  assert.equal(newest.more, true);

  const since = await s.history({ since: { epoch, offset: 7 } });
  assert.deepEqual(since.pubs.map((p) => p.data), [{ i: 8 }, { i: 9 }, { i: 10 }]);
  assert.equal(since.more, false);

  // An SDK publish is in history too, with its from.
  await s.publish({ i: 11 });
  const last = await s.history({ since: { epoch, offset: 10 } });
  assert.deepEqual(last.pubs.map((p) => [p.offset, p.data, p.from?.user]), [[11, { i: 11 }, "historian"]]);

  // An epoch that is gone: the call rejects with 4010.
  await assert.rejects(s.history({ since: { epoch: "no-such-epoch", offset: 1 } }), (err) => err.code === 4010);
});

test("a token without a grant for history: history() rejects with 4003, the connection stays", { timeout: 10_000 }, async () => {
  const token = mintToken({ sub: "nohist", streams: { "nh:*": ["sub"] } });
  const c = clients.make(srv.wsUrl, { token });
  const { s } = await subscribe(c, "nh:1");
  const id = c.clientId;
  await assert.rejects(s.history(), (err) => err.code === 4003);
  await assert.rejects(s.publish(1), (err) => err.code === 4003);
  assert.equal(c.state, "connected");
  assert.equal(c.clientId, id);
  assert.equal(s.state, "subscribed");
});

test("stream(): same Stream for the same name; unsubscribe() stops delivery", { timeout: 10_000 }, async () => {
  const name = "unsub:1";
  const c = await clients.connected(srv.wsUrl, "quitter");
  const { s, pubs } = await subscribe(c, name);
  assert.equal(c.stream(name), s);
  await srv.publish(name, [1]);
  await until(s, "publication", () => pubs.length >= 1, 5000, "first");
  s.unsubscribe();
  assert.equal(s.state, "unsubscribed");
  // A second stream on the same connection sees a publication published after
  // one to the unsubscribed stream; then the first has had its chance to leak.
  const other = await subscribe(c, "unsub:marker");
  await srv.publish(name, [2]);
  await srv.publish("unsub:marker", ["m"]);
  await until(other.s, "publication", () => other.pubs.length >= 1, 5000, "marker");
  assert.deepEqual(pubs.map((p) => p.data), [1]);
  const fresh = c.stream(name);
  assert.notEqual(fresh, s, "a new Stream after unsubscribe");
  await waitFor(fresh, "subscribed", () => true, 5000, "resubscribed as a new stream");
});

test("stream(name, {since}): the first subscribe recovers from a saved position", { timeout: 10_000 }, async () => {
  const name = "since:1";
  const results = await srv.publish(name, range(1, 5).map((i) => ({ i })));
  const saved = { epoch: results[0].epoch, offset: 2 };
  const c = await clients.connected(srv.wsUrl, "resumer");
  const { s, pubs, subs } = await subscribe(c, name, { since: saved });
  assert.equal(subs[0].recovered, true);
  assert.equal(subs[0].missed, 3);
  assert.deepEqual(pubs.map((p) => [p.offset, p.data.i, p.recovered]), [[3, 3, true], [4, 4, true], [5, 5, true]]);
  assert.deepEqual(s.position, { epoch: saved.epoch, offset: 5 });

  // A position from an epoch that is gone: recovered false, nothing delivered.
  const c2 = await clients.connected(srv.wsUrl, "resumer2");
  const other = await subscribe(c2, name, { since: { epoch: "gone", offset: 1 } });
  assert.equal(other.subs[0].recovered, false);
  assert.equal(other.pubs.length, 0);
  assert.deepEqual(other.s.position, { epoch: saved.epoch, offset: 5 });
});
