// Whispers (never echoed to the sender) and the cursor helper off the browser:
// throttling to one whisper per interval with the latest value, others map,
// late joiners from the server's latest-value cache, hide().
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, Clients, waitFor, until, record, subscribe, delay } from "./server.mjs";

let srv;
const clients = new Clients();

before(async () => {
  srv = await startServer();
});

after(async () => {
  clients.closeAll();
  await srv?.stop();
});

test("whisper reaches every other subscriber with from = the sender, never the sender itself", { timeout: 10_000 }, async () => {
  const name = "wh:1";
  const A = await clients.connected(srv.wsUrl, "ann");
  const B = await clients.connected(srv.wsUrl, "bob");
  const C = await clients.connected(srv.wsUrl, "cid", { codec: "json" });
  const a = (await subscribe(A, name)).s;
  const b = (await subscribe(B, name)).s;
  const c = (await subscribe(C, name)).s;
  const atA = record(a, "whisper");
  const atB = record(b, "whisper");
  const atC = record(c, "whisper");

  const gotB = waitFor(b, "whisper", (w) => w.ev === "typing", 5000, "B gets A's whisper");
  const gotC = waitFor(c, "whisper", (w) => w.ev === "typing", 5000, "C gets A's whisper");
  assert.equal(a.whisper("typing", { on: true, n: 7 }), true);
  const wb = await gotB;
  const wc = await gotC;
  for (const w of [wb, wc]) {
    assert.equal(w.ev, "typing");
    assert.deepEqual(w.data, { on: true, n: 7 });
    assert.deepEqual(w.from, { user: "ann", client: A.clientId });
  }

  // Marker: B whispers after it has A's whisper; when the marker reaches A,
  // an echo of A's own whisper (queued before it) would have arrived too.
  const marker = waitFor(a, "whisper", (w) => w.ev === "marker", 5000, "B's marker at A");
  b.whisper("marker", 1);
  const m = await marker;
  assert.deepEqual(m.from, { user: "bob", client: B.clientId });
  await until(c, "whisper", () => atC.some((w) => w.ev === "marker"), 5000, "B's marker at C");
  assert.deepEqual(atA.map((w) => w.ev), ["marker"], "A never receives its own whisper");
  assert.deepEqual(atB.map((w) => w.ev), ["typing"], "B does not receive its own marker");
  assert.deepEqual(atC.map((w) => w.ev), ["typing", "marker"]);
});

test("whispers over the rate limit: error 4006 on the client, the connection stays", { timeout: 10_000 }, async () => {
  const name = "wh:flood";
  const A = await clients.connected(srv.wsUrl, "flooder");
  const B = await clients.connected(srv.wsUrl, "bob");
  const a = (await subscribe(A, name)).s;
  const b = (await subscribe(B, name)).s;
  const atB = record(b, "whisper");
  const id = A.clientId;
  const discs = record(A, "disconnected");
  const limited = waitFor(A, "error", (e) => e.code === 4006, 5000, "error 4006 on the client");
  for (let i = 0; i < 200; i++) a.whisper("flood", i); // burst 120 at 60/s
  const err = await limited;
  assert.equal(err.name, "HuddleError");
  assert.equal(err.retry, true);
  const marker = waitFor(b, "whisper", (w) => w.ev === "marker", 5000, "marker");
  await delay(100); // let the bucket refill a token for the marker
  a.whisper("marker", 1);
  await marker;
  // Same (sender, ev) whispers conflate in B's queue, so B may see only a
  // few of the accepted ones; it never sees the ones over the limit.
  const flood = atB.filter((w) => w.ev === "flood").map((w) => w.data);
  assert.ok(flood.length >= 1, "some got through");
  assert.deepEqual(flood, flood.slice().sort((x, y) => x - y), "in order");
  assert.ok(Math.max(...flood) < 150, `the excess was dropped (last delivered: ${Math.max(...flood)})`);
  assert.equal(A.clientId, id);
  assert.deepEqual(discs, []);
});

test("an unsubscribed stream's whisper() is dropped (README: dropped while not subscribed)", { timeout: 10_000 }, async () => {
  const name = "wh:gone";
  const A = await clients.connected(srv.wsUrl, "ann");
  const B = await clients.connected(srv.wsUrl, "bob");
  const a = (await subscribe(A, name)).s;
  const b = (await subscribe(B, name)).s;
  const atB = record(b, "whisper");
  a.unsubscribe();
  assert.equal(a.state, "unsubscribed");
  const sent = a.whisper("ghost", "boo");
  // Marker: a whisper on another stream both are subscribed to, sent after;
  // the ghost, had it gone out, was ahead of it on A's connection.
  const a2 = (await subscribe(A, name + ":marker")).s;
  const b2 = (await subscribe(B, name + ":marker")).s;
  const marker = waitFor(b2, "whisper", (w) => w.ev === "marker", 5000, "marker");
  a2.whisper("marker", 1);
  await marker;
  assert.deepEqual(atB.map((w) => w.ev), [], `B got a whisper from an unsubscribed stream (whisper() returned ${sent})`);
  assert.equal(sent, false, "whisper() reports that nothing was sent");
});

test("cursors({interval: 50}): 1,000 moves in a tight loop send exactly one whisper, with the last value", { timeout: 10_000 }, async () => {
  assert.equal(typeof globalThis.requestAnimationFrame, "undefined", "this test is about the timer path");
  const name = "cur:tight";
  const A = await clients.connected(srv.wsUrl, "ann");
  const B = await clients.connected(srv.wsUrl, "bob");
  const a = (await subscribe(A, name)).s;
  const b = (await subscribe(B, name)).s;
  const cursorWhispers = [];
  b.on("whisper", (w) => { if (w.ev === "cursor") cursorWhispers.push(w); });

  const cur = a.cursors({ interval: 50 });
  const first = waitFor(b, "whisper", (w) => w.ev === "cursor", 5000, "a cursor whisper at B");
  for (let i = 0; i < 1000; i++) cur.move({ x: i, y: 1000 - i });
  const w = await first;
  assert.deepEqual(w.data, { x: 999, y: 1 }, "the last value");
  assert.deepEqual(w.from, { user: "ann", client: A.clientId });

  // Several intervals later nothing else came; the marker (sent after) proves
  // that anything A sent before it has been delivered.
  await delay(200);
  const marker = waitFor(b, "whisper", (x) => x.ev === "marker", 5000, "marker");
  a.whisper("marker", true);
  await marker;
  assert.equal(cursorWhispers.length, 1, `exactly one cursor whisper, got ${cursorWhispers.length}`);
});

test("cursors: moving for ~1 s sends about one whisper per interval; others holds the latest; late joiner; hide()", { timeout: 15_000 }, async () => {
  const name = "cur:flow";
  const A = await clients.connected(srv.wsUrl, "ann");
  const B = await clients.connected(srv.wsUrl, "bob");
  const a = (await subscribe(A, name, { presence: true, join: {} })).s;
  const b = (await subscribe(B, name, { presence: true })).s;
  const received = [];
  b.on("whisper", (w) => { if (w.ev === "cursor") received.push(w.data); });
  const bc = b.cursors({ interval: 50 });
  const ac = a.cursors({ interval: 50 });

  // Move every ~2 ms for ~1 s.
  let n = 0;
  const start = Date.now();
  await new Promise((done) => {
    const timer = setInterval(() => {
      for (let k = 0; k < 5; k++) ac.move({ x: ++n, y: 2 * n });
      if (Date.now() - start >= 1000) {
        clearInterval(timer);
        done();
      }
    }, 2);
  });
  const elapsed = Date.now() - start;
  const last = { x: n, y: 2 * n };
  await until(bc, "change", () => sameJSON(bc.others.get(A.clientId)?.data, last), 5000, "the latest value in B's others",
    () => JSON.stringify([...bc.others.values()]));
  const marker = waitFor(b, "whisper", (x) => x.ev === "marker", 5000, "marker");
  a.whisper("marker", true);
  await marker;

  assert.ok(n >= 200, `moved ${n} times`);
  const expected = elapsed / 50;
  assert.ok(received.length <= 25, `at most ~1 whisper per 50 ms: ${received.length} in ${elapsed} ms`);
  assert.ok(received.length >= 5, `whispers keep flowing while moving: ${received.length} in ${elapsed} ms (~${expected.toFixed(0)} expected)`);
  assert.deepEqual(received.at(-1), last, "the last whisper carries the last value");
  const xs = received.map((d) => d.x);
  assert.deepEqual(xs, [...xs].sort((p, q) => p - q), "values in the order moved");

  // B's others: exactly A's cursor, with user and info; B's own cursor is never in it.
  assert.deepEqual([...bc.others.keys()], [A.clientId]);
  const seen = bc.others.get(A.clientId);
  assert.equal(seen.user, "ann");
  assert.equal(seen.client, A.clientId);
  assert.deepEqual(seen.info, { name: "ann" });
  assert.deepEqual(ac.others.size, 0, "A does not see its own cursor");

  // A late joiner gets A's cursor at once, from subscribed.lv, while A is still.
  const C = await clients.connected(srv.wsUrl, "cid");
  const cs = C.stream(name, { presence: true });
  const cc = cs.cursors();
  await waitFor(cs, "subscribed", () => true, 5000, "C subscribed");
  assert.deepEqual(cc.others.get(A.clientId)?.data, last, "the cursor is there when subscribed fires");
  assert.equal(cc.others.get(A.clientId).user, "ann");
  assert.deepEqual(cc.others.get(A.clientId).info, { name: "ann" });

  // hide(): gone for B and C.
  const goneB = until(bc, "change", () => !bc.others.has(A.clientId), 5000, "A's cursor gone at B");
  const goneC = until(cc, "change", () => !cc.others.has(A.clientId), 5000, "A's cursor gone at C");
  ac.hide();
  await Promise.all([goneB, goneC]);

  // Shown again, then A's connection leaves presence (a clean close): gone again.
  ac.move({ x: -1, y: -1 });
  await until(cc, "change", () => sameJSON(cc.others.get(A.clientId)?.data, { x: -1, y: -1 }), 5000, "A's cursor back at C");
  const gone2 = until(cc, "change", () => !cc.others.has(A.clientId), 5000, "A's cursor gone at C when A leaves");
  A.disconnect();
  await gone2;
});

test("cursors() created after the stream is subscribed still shows the cursors that are standing still", { timeout: 10_000 }, async () => {
  const name = "cur:later";
  const A = await clients.connected(srv.wsUrl, "ann");
  const a = (await subscribe(A, name)).s;
  const ac = a.cursors();
  ac.move({ x: 1, y: 2 });
  // B sees it, so the server has it cached.
  const B = await clients.connected(srv.wsUrl, "bob");
  const b = B.stream(name);
  const bc = b.cursors();
  await until(bc, "change", () => bc.others.has(A.clientId), 5000, "A's cursor at B");

  // C subscribes first and asks for the cursor helper only later (a UI part
  // mounted after the subscribe): A is still, so only the cache can tell.
  const C = await clients.connected(srv.wsUrl, "cid");
  const c = (await subscribe(C, name)).s;
  const cc = c.cursors();
  await until(cc, "change", () => cc.others.has(A.clientId), 1000, "A's standing cursor in a helper created after the subscribe")
    .catch((err) => {
      assert.fail(`${err.message}: others is empty; the latest values of subscribed.lv are not kept for a cursors() made later`);
    });
  assert.deepEqual(cc.others.get(A.clientId).data, { x: 1, y: 2 });
});

function sameJSON(a, b) {
  return a !== undefined && JSON.stringify(a) === JSON.stringify(b);
}
