// Reconnect with recovery: a client behind a cuttable TCP proxy misses
// publications while its network is down, reconnects by itself and gets every
// missed one exactly once, in order; and recovered:false when the server lost
// its history (a memory node restarted: new epoch).
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, startProxy, Clients, mintToken, waitFor, until, withTimeout, record, subscribe, range } from "./server.mjs";

const clients = new Clients();
const cleanups = [];

after(async () => {
  clients.closeAll();
  for (const f of cleanups.reverse()) await f();
});

async function server(args) {
  const srv = await startServer({ args });
  cleanups.push(() => srv.stop());
  return srv;
}

const describe = (pubs) => () => `got ${pubs.length}: ${pubs.map((p) => p.offset).join(",")}`;

for (const codec of ["msgpack", "json"]) {
  test(`network cut: the client reconnects by itself and recovers every missed publication exactly once, in order (${codec})`, { timeout: 20_000 }, async () => {
    const srv = await server([]);
    const proxy = await startProxy(srv.port);
    cleanups.push(() => proxy.close());
    const name = `rec:${codec}`;
    const c = clients.make(proxy.url, { token: mintToken({ sub: "roamer" }), codec, minReconnectDelay: 50, maxReconnectDelay: 200 });
    const { s, pubs, subs } = await subscribe(c, name);
    assert.equal(subs[0].offset, 0);
    const firstId = c.clientId;
    const discs = record(c, "disconnected");

    // Live before the cut.
    await srv.publish(name, range(1, 10).map((i) => ({ i })));
    await until(s, "publication", () => pubs.length >= 10, 5000, "10 live", describe(pubs));

    // The network dies: no close frame, no disconnect message.
    const down = waitFor(c, "disconnected", () => true, 5000, "disconnected after the cut");
    proxy.cut();
    const d = await down;
    assert.equal(d.reconnect, true, `a network drop reconnects (code ${d.code})`);
    assert.notEqual(c.state, "connected");

    // 50 publications while it is away (it keeps retrying through the dead proxy).
    for (let b = 0; b < 5; b++) await srv.publish(name, range(11 + b * 10, 20 + b * 10).map((i) => ({ i })));
    assert.equal(pubs.length, 10, "nothing arrives while the network is down");
    // A call made while disconnected waits for the connection.
    const waitingPublish = s.publish({ i: 61 });

    let atSubscribed = -1;
    const resub = waitFor(s, "subscribed", () => { atSubscribed = pubs.length; return true; }, 10_000, "resubscribed after the network came back");
    proxy.restore();
    const ev = await resub;
    const ack61 = await waitingPublish;
    assert.equal(ack61.offset, 61, "the waiting publish went out after the resubscribe");
    assert.equal(ev.recovered, true);
    assert.equal(ev.missed, 50);
    assert.equal(c.state, "connected");
    assert.notEqual(c.clientId, firstId, "a new connection");
    assert.equal(atSubscribed, 60, "the missed publications are delivered by the time subscribed fires");

    // Live ones continue with no gap.
    await srv.publish(name, range(62, 80).map((i) => ({ i })));
    await until(s, "publication", () => pubs.length >= 80, 5000, "20 more live", describe(pubs));
    const [marker] = await srv.publish(name, [{ i: 81 }]);
    await until(s, "publication", () => pubs.some((p) => p.offset === marker.offset), 5000, "the marker", describe(pubs));

    assert.deepEqual(pubs.map((p) => p.offset), range(1, 81), "in order, contiguous, exactly once");
    assert.deepEqual(pubs.map((p) => p.data.i), range(1, 81));
    assert.deepEqual(pubs[60].from, { user: "roamer", client: c.clientId });
    assert.deepEqual(pubs.map((p) => p.recovered), range(1, 81).map((i) => i > 10 && i <= 60));
    assert.equal(new Set(pubs.map((p) => p.epoch)).size, 1, "one epoch");
    assert.equal(subs.length, 2);
    assert.ok(discs.length >= 1);
    assert.ok(discs.every((x) => x.reconnect === true), "every drop on the way said it would reconnect");
  });
}

test("a call in flight when the network drops rejects with the close code", { timeout: 10_000 }, async () => {
  const srv = await server([]);
  const proxy = await startProxy(srv.port);
  cleanups.push(() => proxy.close());
  const c = clients.make(proxy.url, { token: mintToken({ sub: "inflight" }), minReconnectDelay: 50, maxReconnectDelay: 200 });
  const { s } = await subscribe(c, "rec:inflight");
  const p = s.publish({ maybe: true });
  const h = s.history();
  await Promise.resolve(); // the SDK writes its batch in a microtask: both are on the wire now
  proxy.cut();
  const isClose = (err) => err.name === "HuddleError" && err.code === 1006;
  await assert.rejects(withTimeout(p, 5000, "publish to settle"), isClose);
  await assert.rejects(withTimeout(h, 5000, "history to settle"), isClose);
  proxy.restore();
  await waitFor(s, "subscribed", () => true, 10_000, "resubscribed");
  const again = await s.publish({ surely: true });
  assert.ok(again.offset === 1 || again.offset === 2, `offset ${again.offset}`);
});

test("half-open network (nothing arrives, nothing fails): the client gives up after two ping intervals and recovers", { timeout: 20_000 }, async () => {
  const srv = await server(["--ping-interval", "1s"]);
  const proxy = await startProxy(srv.port);
  cleanups.push(() => proxy.close());
  const name = "rec:frozen";
  const c = clients.make(proxy.url, { token: mintToken({ sub: "frozen" }), minReconnectDelay: 50, maxReconnectDelay: 200 });
  const { s, pubs, subs } = await subscribe(c, name);
  await srv.publish(name, range(1, 3));
  await until(s, "publication", () => pubs.length >= 3, 5000, "3 live", describe(pubs));
  const first = c.clientId;

  const down = waitFor(c, "disconnected", () => true, 10_000, "the client to notice the silence");
  const t0 = Date.now();
  proxy.freeze();
  await srv.publish(name, range(4, 8));
  const d = await down;
  const silent = Date.now() - t0;
  assert.equal(d.reconnect, true);
  assert.ok(silent >= 1500 && silent <= 8000, `noticed after ${silent} ms (ping interval 1 s)`);
  assert.equal(pubs.length, 3);

  await until(s, "subscribed", () => subs.length >= 2, 10_000, "resubscribed");
  assert.equal(subs[1].recovered, true);
  assert.notEqual(c.clientId, first);
  await until(s, "publication", () => pubs.length >= 8, 5000, "recovered", describe(pubs));
  assert.deepEqual(pubs.map((p) => p.data), range(1, 8));
  assert.deepEqual(pubs.map((p) => p.recovered), range(1, 8).map((i) => i > 3));
});

test("client.reconnect(): drops and reconnects at once, recovering what was published meanwhile", { timeout: 10_000 }, async () => {
  const srv = await server([]);
  const name = "rec:manual";
  const c = clients.make(srv.wsUrl, { token: mintToken({ sub: "manual" }) });
  const { s, pubs } = await subscribe(c, name);
  await srv.publish(name, range(1, 5));
  await until(s, "publication", () => pubs.length >= 5, 5000, "5 live", describe(pubs));
  const first = c.clientId;
  const resub = waitFor(s, "subscribed", () => true, 5000, "resubscribed");
  c.reconnect();
  await srv.publish(name, range(6, 10));
  const ev = await resub;
  assert.equal(ev.recovered, true);
  assert.notEqual(c.clientId, first);
  await srv.publish(name, range(11, 12));
  await until(s, "publication", () => pubs.length >= 12, 5000, "12", describe(pubs));
  assert.deepEqual(pubs.map((p) => p.data), range(1, 12));
  assert.deepEqual(pubs.map((p) => p.offset), range(1, 12));
});

test("recover: false: a resubscribe starts at the top, missed publications are not delivered", { timeout: 10_000 }, async () => {
  const srv = await server([]);
  const name = "rec:norecover";
  const c = clients.make(srv.wsUrl, { token: mintToken({ sub: "fresh-start" }) });
  const { s, pubs, subs } = await subscribe(c, name, { recover: false });
  await srv.publish(name, [1, 2]);
  await until(s, "publication", () => pubs.length >= 2, 5000, "2 live", describe(pubs));
  // Disconnect for good, publish, come back.
  c.disconnect();
  await srv.publish(name, [3, 4]);
  c.connect();
  await until(s, "subscribed", () => subs.length >= 2, 5000, "resubscribed");
  assert.equal(subs[1].recovered, undefined, "no recover asked");
  assert.equal(subs[1].offset, 4);
  await srv.publish(name, [5]);
  await until(s, "publication", () => pubs.length >= 3, 5000, "live again", describe(pubs));
  assert.deepEqual(pubs.map((p) => p.data), [1, 2, 5]);
});

test("server restart (history lost, new epoch): subscribed says recovered === false, then live publications go on", { timeout: 20_000 }, async () => {
  const srv = await server([]);
  const name = "rec:restart";
  const c = clients.make(srv.wsUrl, { token: mintToken({ sub: "survivor" }), minReconnectDelay: 50, maxReconnectDelay: 200 });
  const { s, pubs } = await subscribe(c, name);
  const before = await srv.publish(name, range(1, 5).map((i) => ({ i })));
  await until(s, "publication", () => pubs.length >= 5, 5000, "5 live", describe(pubs));
  const oldEpoch = before[0].epoch;
  assert.deepEqual(s.position, { epoch: oldEpoch, offset: 5 });

  const resub = waitFor(s, "subscribed", () => true, 15_000, "resubscribed after the restart");
  const down = waitFor(c, "disconnected", () => true, 5000, "disconnected by the crash");
  await srv.restart(); // same port, empty memory: the stream starts a new epoch
  const d = await down;
  assert.equal(d.reconnect, true);
  const ev = await resub;
  assert.equal(ev.recovered, false, "the history is gone: recovered must be false, never a silent gap");
  assert.equal(ev.missed, 0);
  assert.notEqual(ev.epoch, oldEpoch);
  assert.equal(pubs.length, 5, "nothing is invented");
  assert.deepEqual(s.position, { epoch: ev.epoch, offset: ev.offset });

  const after = await srv.publish(name, range(1, 3).map((i) => ({ j: i })));
  assert.equal(after[0].epoch, ev.epoch);
  await until(s, "publication", () => pubs.length >= 8, 5000, "live in the new epoch", describe(pubs));
  assert.deepEqual(pubs.slice(5).map((p) => [p.epoch, p.offset, p.data.j, p.recovered]),
    [[ev.epoch, 1, 1, false], [ev.epoch, 2, 2, false], [ev.epoch, 3, 3, false]]);
});
