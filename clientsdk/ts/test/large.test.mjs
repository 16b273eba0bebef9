// Large publications: a recovered backlog too large for one subscribed reply
// arrives partly as pub messages after it (still recovered: true, exactly
// once, in order, never a 4008 slow-reader cut at the default limits);
// history pages cut by bytes are followed to the end; and a token refresh
// that drops a stream's grant ends that Stream with unsubscribed 4003.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, startProxy, Clients, mintToken, waitFor, until, record, subscribe, range, ALL_OPS } from "./server.mjs";

const clients = new Clients();
const cleanups = [];

after(async () => {
  clients.closeAll();
  for (const f of cleanups.reverse()) await f();
});

async function server(args = []) {
  const srv = await startServer({ args });
  cleanups.push(() => srv.stop());
  return srv;
}

// About 1,000,000 bytes each: under the default --max-message (1 MiB), so
// one of them fits in a message but two do not fit in one step of a reply.
const PAD = 999_000;
const big = (i) => ({ i, pad: String(i % 10).repeat(PAD) });

/** publishBig publishes big(i) for each i, one HTTP request each, and returns the offsets. */
async function publishBig(srv, stream, is) {
  const offsets = [];
  for (const i of is) {
    const [r] = await srv.publish(stream, [big(i)]);
    offsets.push(r.offset);
  }
  return offsets;
}

const describe = (pubs) => () => `got ${pubs.length}: ${pubs.map((p) => `${p.offset}${p.recovered ? "r" : ""}`).join(",")}`;

function checkBig(p, i) {
  assert.equal(p.data.i, i);
  assert.equal(p.data.pad.length, PAD, `publication ${i} arrived whole`);
  assert.equal(p.data.pad[0], String(i % 10));
}

test("5 publications of ~1 MB missed while the network is down, 3 times: all recovered exactly once, in order, then live; no 4008", { timeout: 30_000 }, async () => {
  const srv = await server();
  const proxy = await startProxy(srv.port);
  cleanups.push(() => proxy.close());
  const name = "large:cut";
  const c = clients.make(proxy.url, { token: mintToken({ sub: "big" }), minReconnectDelay: 20, maxReconnectDelay: 100 });
  const discs = record(c, "disconnected");
  const errors = record(c, "error");
  const { s, pubs, subs } = await subscribe(c, name);
  const streamErrors = record(s, "error");
  assert.equal(subs[0].offset, 0);

  let next = 1; // the data.i of the next publication, which is also its offset
  for (let round = 1; round <= 3; round++) {
    const down = waitFor(c, "disconnected", () => true, 5000, `disconnected (round ${round})`);
    proxy.cut();
    await down;
    const from = next;
    await publishBig(srv, name, range(from, from + 4));
    next += 5;
    assert.equal(pubs.length, from - 1, "nothing arrives while the network is down");

    let atSubscribed = -1;
    const resub = waitFor(s, "subscribed", () => { atSubscribed = pubs.length; return true; }, 10_000, `resubscribed (round ${round})`);
    proxy.restore();
    const ev = await resub;
    assert.equal(ev.recovered, true);
    assert.equal(ev.missed, 5, "missed counts the backlog, not only what subscribed carried");
    assert.equal(ev.offset, from + 4);
    assert.ok(atSubscribed < from + 4, `part of the backlog follows subscribed (${atSubscribed - from + 1} of 5 came with it)`);
    await until(s, "publication", () => pubs.length >= from + 4, 15_000, `the 5 missed of round ${round}`, describe(pubs));

    // A live one follows the backlog.
    await srv.publish(name, [{ i: next, live: true }]);
    await until(s, "publication", () => pubs.length >= next, 5000, `the live one of round ${round}`, describe(pubs));
    next++;
  }

  assert.deepEqual(pubs.map((p) => p.offset), range(1, 18), "in order, contiguous, exactly once");
  assert.deepEqual(pubs.map((p) => p.data.i), range(1, 18));
  assert.deepEqual(pubs.map((p) => p.recovered), range(1, 18).map((i) => i % 6 !== 0), "the missed ones recovered, the live ones not");
  for (const p of pubs) if (p.offset % 6 !== 0) checkBig(p, p.offset);
  assert.equal(subs.length, 4);
  assert.equal(new Set(pubs.map((p) => p.epoch)).size, 1);
  assert.ok(!discs.some((d) => d.code === 4008), `no slow-reader cut: ${JSON.stringify(discs)}`);
  assert.ok(discs.every((d) => d.reconnect), "every drop reconnects");
  assert.deepEqual(errors.map((e) => e.message), []);
  assert.deepEqual(streamErrors.map((e) => e.message), []);
  assert.equal(s.state, "subscribed");
  assert.deepEqual(s.position, { epoch: pubs[0].epoch, offset: 18 });
});

for (const codec of ["msgpack", "json"]) {
  test(`a new client subscribing with since behind 5 publications of ~1 MB gets them all, recovered, then a live one (${codec})`, { timeout: 30_000 }, async () => {
    const srv = await server();
    const name = `large:since:${codec}`;
    const [zero] = await srv.publish(name, [{ i: 0 }]);
    await publishBig(srv, name, range(1, 5));

    const c = clients.make(srv.wsUrl, { token: mintToken({ sub: "late" }), codec });
    const discs = record(c, "disconnected");
    const errors = record(c, "error");
    let atSubscribed = -1;
    const s = c.stream(name, { since: { epoch: zero.epoch, offset: zero.offset } });
    const pubs = record(s, "publication");
    const ev = await waitFor(s, "subscribed", () => { atSubscribed = pubs.length; return true; }, 10_000, "subscribed");
    assert.equal(ev.recovered, true);
    assert.equal(ev.missed, 5);
    assert.equal(ev.offset, 6);
    assert.ok(atSubscribed >= 1 && atSubscribed < 5, `subscribed carried ${atSubscribed} of 5`);
    await until(s, "publication", () => pubs.length >= 5, 15_000, "the 5 missed", describe(pubs));
    await srv.publish(name, [{ i: 6 }]);
    await until(s, "publication", () => pubs.length >= 6, 5000, "the live one", describe(pubs));

    assert.deepEqual(pubs.map((p) => p.offset), range(2, 7));
    assert.deepEqual(pubs.map((p) => p.recovered), [true, true, true, true, true, false]);
    pubs.slice(0, 5).forEach((p, k) => checkBig(p, k + 1));
    assert.equal(pubs[5].data.i, 6);
    assert.deepEqual(discs, [], "the connection stayed up");
    assert.deepEqual(errors.map((e) => e.message), []);
  });
}

test("historyPages and historyAll follow more through pages cut by bytes", { timeout: 30_000 }, async () => {
  const srv = await server();
  const name = "large:history";
  await publishBig(srv, name, range(1, 5));
  await srv.publish(name, range(6, 12).map((i) => ({ i })));
  const c = await clients.connected(srv.wsUrl, "reader");
  const s = c.stream(name, { recover: false });

  // One page: cut by bytes, says more.
  const first = await s.history();
  assert.ok(first.pubs.length >= 1 && first.pubs.length < 12, `one page holds ${first.pubs.length}`);
  assert.equal(first.more, true);
  assert.equal(first.offset, 12);

  const pages = [];
  for await (const page of s.historyPages()) pages.push(page);
  assert.ok(pages.length >= 3, `${pages.length} pages`);
  assert.ok(pages.slice(0, -1).every((p) => p.more), "every page but the last says more");
  assert.equal(pages.at(-1).more, false);
  const paged = pages.flatMap((p) => p.pubs);
  assert.deepEqual(paged.map((p) => p.offset), range(1, 12));
  paged.slice(0, 5).forEach((p, k) => checkBig(p, k + 1));
  assert.ok(paged.every((p) => p.recovered === false));

  const all = await s.historyAll();
  assert.deepEqual(all.map((p) => p.offset), range(1, 12));
  assert.deepEqual(all.map((p) => p.data.i), range(1, 12));

  // since and a per-page limit.
  const tail = await s.historyAll({ since: { epoch: first.epoch, offset: 3 }, limit: 2 });
  assert.deepEqual(tail.map((p) => p.offset), range(4, 12));
  let n = 0;
  for await (const page of s.historyPages({ since: { epoch: first.epoch, offset: 5 }, limit: 3 })) {
    assert.ok(page.pubs.length <= 3);
    n++;
  }
  assert.equal(n, 3, "7 small ones in pages of 3");

  // Stopping early stops asking.
  let taken = 0;
  for await (const page of s.historyPages()) {
    taken += page.pubs.length;
    break;
  }
  assert.ok(taken >= 1 && taken < 12);

  // Paging goes forward only.
  await assert.rejects(s.historyAll({ reverse: true }), TypeError);

  // A gone epoch rejects with 4010.
  await assert.rejects(s.historyAll({ since: { epoch: "gone", offset: 1 } }), (err) => err.code === 4010);
});

test("a refresh whose token no longer grants a stream ends that Stream with unsubscribed 4003; the others go on", { timeout: 15_000 }, async () => {
  const srv = await server();
  const ops = ALL_OPS["*"];
  let calls = 0;
  // The first token lives 3 s and grants everything; the refresh brings one
  // that grants keep:* only.
  const getToken = () => {
    calls++;
    return calls === 1 ? mintToken({ sub: "rev", ttl: 3 }) : mintToken({ sub: "rev", streams: { "keep:*": ops } });
  };
  const c = clients.make(srv.wsUrl, { getToken, refreshMargin: 1500 });
  await waitFor(c, "connected", () => true, 5000, "connected");
  const id = c.clientId;
  const discs = record(c, "disconnected");
  const keep = await subscribe(c, "keep:1");
  const gone = await subscribe(c, "gone:1", { join: { here: true } });
  const unsubs = record(gone.s, "unsubscribed");
  const goneErrors = record(gone.s, "error");
  const keepEvents = [record(keep.s, "unsubscribed"), record(keep.s, "error")];

  const ev = await waitFor(gone.s, "unsubscribed", () => true, 8000, "unsubscribed after the refresh");
  assert.equal(ev.code, 4003);
  assert.equal(typeof ev.reason, "string");
  assert.ok(ev.reason.length > 0);
  assert.equal(calls, 2);
  assert.equal(unsubs.length, 1);
  assert.deepEqual(goneErrors.map((e) => e.code), [4003]);
  assert.equal(gone.s.state, "unsubscribed");
  assert.equal(c.streams.has("gone:1"), false, "the ended Stream is forgotten");
  assert.equal(gone.s.presence.count, 0);

  // The connection and the other stream go on; the ended one gets nothing more.
  assert.equal(c.state, "connected");
  assert.equal(c.clientId, id, "same connection");
  await srv.publish("gone:1", [{ after: true }]);
  await srv.publish("keep:1", [{ after: true }]);
  await until(keep.s, "publication", () => keep.pubs.length >= 1, 5000, "keep:1 still live");
  assert.equal(gone.pubs.length, 0);
  assert.deepEqual(keepEvents.map((x) => x.length), [0, 0]);
  assert.deepEqual(discs, []);

  // Subscribing again is refused as the token says.
  const again = c.stream("gone:1");
  const refused = await waitFor(again, "unsubscribed", () => true, 5000, "the resubscribe refused");
  assert.equal(refused.code, 4003);
});
