// Tokens: getToken is called again before expiry and the new token is sent
// as refresh (the connection stays past the old expiry); after a 4002 the
// client asks getToken again and reconnects.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, Clients, mintToken, waitFor, until, record, subscribe, delay, range } from "./server.mjs";

let srv;
const clients = new Clients();

before(async () => {
  srv = await startServer();
});

after(async () => {
  clients.closeAll();
  await srv?.stop();
});

/** tokenSource is a getToken that records its calls; called(n) waits for the nth call. */
function tokenSource(make) {
  const calls = [];
  const fns = new Set();
  const events = { on: (_ev, fn) => { fns.add(fn); return () => fns.delete(fn); } };
  const getToken = async () => {
    const token = make(calls.length + 1);
    calls.push({ at: Date.now(), token });
    for (const fn of [...fns]) fn();
    return token;
  };
  const called = (n, ms, what = `getToken call #${n}`) => until(events, "call", () => calls.length >= n, ms, what);
  return { getToken, calls, called };
}

test("getToken is called again before expiry and sent as refresh: same connection past the old expiry", { timeout: 15_000 }, async () => {
  const src = tokenSource(() => mintToken({ sub: "fresh", ttl: 3 }));
  const c = clients.make(srv.wsUrl, { getToken: src.getToken, refreshMargin: 1500 });
  const connected = await waitFor(c, "connected", () => true, 5000, "connected");
  const id = c.clientId;
  const exp = connected.exp;
  assert.equal(typeof exp, "number");
  const discs = record(c, "disconnected");
  const errors = record(c, "error");
  const { s, pubs } = await subscribe(c, "tok:1");

  await src.called(2, (exp * 1000 - Date.now()) + 200, "getToken called again before the token expired");
  assert.ok(src.calls[1].at < exp * 1000, `refreshed ${exp * 1000 - src.calls[1].at} ms before expiry`);

  // Past the old expiry plus the server's once-a-second check: still the same connection.
  const waitMs = exp * 1000 + 1500 - Date.now();
  if (waitMs > 0) await delay(waitMs);
  assert.deepEqual(discs, [], "no disconnect");
  assert.deepEqual(errors.map((e) => e.message), [], "no errors");
  assert.equal(c.state, "connected");
  assert.equal(c.clientId, id, "same connection");
  assert.equal(src.calls.length >= 2, true);

  // And it works.
  await srv.publish("tok:1", [{ after: "expiry" }]);
  await until(s, "publication", () => pubs.length >= 1, 5000, "a publication after the old expiry");
  const ack = await s.publish({ mine: true });
  assert.equal(ack.offset, 2);
});

test("expired token at connect: 4002, getToken called again, connected", { timeout: 10_000 }, async () => {
  const src = tokenSource((n) => mintToken({ sub: "late", ttl: n === 1 ? -60 : 3600 }));
  const c = clients.make(srv.wsUrl, { getToken: src.getToken, autoConnect: false });
  const discs = record(c, "disconnected");
  const connected = waitFor(c, "connected", () => true, 5000, "connected with the second token");
  c.connect();
  await connected;
  assert.deepEqual(discs.map((d) => [d.code, d.reconnect]), [[4002, true]]);
  assert.equal(src.calls.length, 2);
  assert.equal(c.user, "late");
});

test("token expires mid-session (refresh failed): 4002, getToken called again, the client reconnects and recovers", { timeout: 15_000 }, async () => {
  // Call 1: lives ~2 s. Until the 4002 arrives, getToken only has expired
  // tokens (the refresh fails and the old token stays in force until the
  // server expires it). After it, a good token.
  let expired = false;
  const src = tokenSource((n) => mintToken({ sub: "mid", ttl: expired ? 3600 : (n === 1 ? 2 : -60) }));
  const calls = () => src.calls.length;
  const c = clients.make(srv.wsUrl, { getToken: src.getToken, refreshMargin: 0 });
  c.on("disconnected", (d) => { if (d.code === 4002) expired = true; });
  const first = await waitFor(c, "connected", () => true, 5000, "connected");
  const { s, pubs, subs } = await subscribe(c, "tok:mid");
  await srv.publish("tok:mid", range(1, 3));
  await until(s, "publication", () => pubs.length >= 3, 5000, "3 live");

  const d = await waitFor(c, "disconnected", () => true, (first.exp * 1000 - Date.now()) + 3000, "4002 from the server");
  assert.equal(d.code, 4002);
  assert.equal(d.reconnect, true);
  const callsAt4002 = calls();

  await srv.publish("tok:mid", range(4, 6));
  await waitFor(c, "connected", () => true, 5000, "reconnected");
  assert.ok(calls() > callsAt4002, "getToken was called again after the 4002");
  assert.notEqual(c.clientId, first.client);
  await until(s, "subscribed", () => subs.length >= 2, 5000, "resubscribed");
  assert.equal(subs.at(-1).recovered, true);
  await until(s, "publication", () => pubs.length >= 6, 5000, "recovered");
  assert.deepEqual(pubs.map((p) => p.data), range(1, 6));
});
