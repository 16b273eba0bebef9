// Connecting: the connected event and state transitions, ready(), a bad
// token (4001: no retry), and a forbidden stream (4003: the connection stays).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, Clients, mintToken, waitFor, until, withTimeout, record, delay, subscribe } from "./server.mjs";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

let srv;
const clients = new Clients();

before(async () => {
  srv = await startServer();
});

after(async () => {
  clients.closeAll();
  await srv?.stop();
});

test("connect: connected event with client id and user, connecting -> connected, ready() resolves", { timeout: 10_000 }, async () => {
  const exp = Math.floor(Date.now() / 1000) + 3600;
  const c = clients.make(srv.wsUrl, { token: mintToken({ sub: "ann", exp }), autoConnect: false });
  assert.equal(c.state, "disconnected");
  assert.equal(c.clientId, undefined);
  const states = record(c, "state");
  const connecting = record(c, "connecting");
  const connected = waitFor(c, "connected", () => true, 5000, "connected");
  c.connect();
  const ready = c.ready(); // asked while connecting: resolves once connected
  const ev = await connected;
  await withTimeout(ready, 2000, "ready()");
  await withTimeout(c.ready(), 100, "ready() while connected");

  assert.match(ev.client, UUID);
  assert.equal(ev.user, "ann");
  assert.equal(ev.exp, exp);
  assert.equal(c.state, "connected");
  assert.equal(c.clientId, ev.client);
  assert.equal(c.user, "ann");
  assert.deepEqual(states, ["connecting", "connected"]);
  assert.deepEqual(connecting, [{ attempt: 1 }]);

  // A second client is another connection of its own.
  const d = await clients.connected(srv.wsUrl, "bob");
  assert.match(d.clientId, UUID);
  assert.notEqual(d.clientId, c.clientId);
  assert.equal(d.user, "bob");
});

test("connect with autoConnect (default) and getToken: getToken called once, ready() resolves", { timeout: 10_000 }, async () => {
  let calls = 0;
  const c = clients.make(srv.wsUrl, {
    getToken: async () => {
      calls++;
      return mintToken({ sub: "carl" });
    },
  });
  await withTimeout(c.ready(), 5000, "ready()");
  assert.equal(c.state, "connected");
  assert.equal(c.user, "carl");
  assert.equal(calls, 1);
});

test("bad token: disconnected with 4001, reconnect false, and no further attempts", { timeout: 10_000 }, async () => {
  let calls = 0;
  const c = clients.make(srv.wsUrl, {
    getToken: () => {
      calls++;
      return mintToken({ sub: "eve", secret: "not-the-server-secret" });
    },
    autoConnect: false,
    minReconnectDelay: 10,
    maxReconnectDelay: 50,
  });
  const connecting = record(c, "connecting");
  const connectedEvents = record(c, "connected");
  const states = record(c, "state");
  const disc = waitFor(c, "disconnected", () => true, 5000, "disconnected");
  c.connect();
  const ready = c.ready();
  const d = await disc;
  assert.equal(d.code, 4001);
  assert.equal(d.reconnect, false);
  assert.equal(typeof d.reason, "string");
  await assert.rejects(withTimeout(ready, 2000, "ready() to settle"), (err) => err.code === 4001,
    "ready() rejects with the close code when the client gives up");

  // With a 10-50 ms backoff, a retry would have happened many times over.
  const discs = record(c, "disconnected");
  await delay(500);
  assert.equal(connecting.length, 1, "connection attempts");
  assert.equal(calls, 1, "getToken calls");
  assert.equal(connectedEvents.length, 0);
  assert.equal(discs.length, 0, "no further disconnected events");
  assert.equal(c.state, "disconnected");
  assert.deepEqual(states, ["connecting", "disconnected"]);
});

test("forbidden stream: unsubscribed and error with 4003, the connection stays usable", { timeout: 10_000 }, async () => {
  const token = mintToken({ sub: "limited", streams: { "ok:*": ["sub", "pub", "history"] } });
  const c = clients.make(srv.wsUrl, { token });
  await withTimeout(c.ready(), 5000, "ready()");
  const id = c.clientId;
  const discs = record(c, "disconnected");

  const bad = c.stream("secret:1");
  const streamErrors = record(bad, "error");
  const unsub = await waitFor(bad, "unsubscribed", () => true, 5000, "unsubscribed on secret:1");
  assert.equal(unsub.code, 4003);
  assert.equal(typeof unsub.reason, "string");
  assert.notEqual(bad.state, "subscribed");
  assert.ok(streamErrors.some((e) => e.code === 4003), `stream error 4003, got ${JSON.stringify(streamErrors.map((e) => e.code))}`);

  // Same connection, still working: subscribe and publish on an allowed stream.
  const { s, pubs } = await subscribe(c, "ok:1");
  const ack = await s.publish({ hello: 1 });
  assert.equal(ack.offset, 1);
  await until(s, "publication", () => pubs.length >= 1, 5000, "own publication");
  assert.deepEqual(pubs.map((p) => p.data), [{ hello: 1 }]);
  assert.equal(c.state, "connected");
  assert.equal(c.clientId, id);
  assert.deepEqual(discs, []);
});

test("disconnect() ends the connection for good; connect() comes back and recovers", { timeout: 10_000 }, async () => {
  const c = await clients.connected(srv.wsUrl, "pauser", { minReconnectDelay: 10, maxReconnectDelay: 50 });
  const { s, pubs, subs } = await subscribe(c, "pause:1");
  const discs = record(c, "disconnected");
  const connecting = record(c, "connecting");
  c.disconnect();
  assert.equal(c.state, "disconnected");
  assert.deepEqual(discs.map((d) => d.reconnect), [false]);
  assert.equal(c.clientId, undefined);
  await assert.rejects(withTimeout(c.ready(), 1000, "ready() after disconnect()"));
  await srv.publish("pause:1", [1, 2, 3]);
  assert.equal(connecting.length, 0, "no reconnect after disconnect()");

  c.connect();
  await withTimeout(c.ready(), 5000, "ready() after connect()");
  await until(s, "subscribed", () => subs.length >= 2, 5000, "resubscribed");
  assert.equal(subs.at(-1).recovered, true);
  await until(s, "publication", () => pubs.length >= 3, 5000, "the publications missed while away");
  assert.deepEqual(pubs.map((p) => [p.data, p.recovered]), [[1, true], [2, true], [3, true]]);
});

test("server-side disconnect (POST /api/disconnect: 4000, reconnect false): the client stops", { timeout: 10_000 }, async () => {
  const c = await clients.connected(srv.wsUrl, "kicked", { minReconnectDelay: 10, maxReconnectDelay: 50 });
  const other = await clients.connected(srv.wsUrl, "stays");
  const connecting = record(c, "connecting");
  const disc = waitFor(c, "disconnected", () => true, 5000, "disconnected by the server");
  await srv.api("POST", "/api/disconnect", { user: "kicked" });
  const d = await disc;
  assert.equal(d.code, 4000);
  assert.equal(d.reconnect, false);
  const later = record(c, "disconnected");
  await delay(300);
  assert.deepEqual(connecting, [], "no reconnect attempt");
  assert.deepEqual(later, []);
  assert.equal(c.state, "disconnected");
  assert.equal(other.state, "connected", "other users are not affected");
});
