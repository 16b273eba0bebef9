// Mobile and battery: pause() and resume(), the React Native AppState
// integration, an injected network source, and the client-requested
// liveness (pingInterval, staleThreshold), against the real server.
//
// React Native cannot run under Node: AppState and NetInfo are stood in for
// by small fakes of the same shape (FakeAppState, FakeNetwork below), which
// is all the SDK sees of them.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { decodeClientFrame, decodeServerFrame } from "../dist/index.js";
import { startServer, startProxy, Clients, WebSocket, mintToken, waitFor, until, withTimeout, record, subscribe, delay, range } from "./server.mjs";

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

async function proxyTo(srv) {
  const proxy = await startProxy(srv.port);
  cleanups.push(() => proxy.close());
  return proxy;
}

/** eventually resolves once cond() is true, polling; it rejects after ms. */
async function eventually(cond, ms, what) {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await delay(20);
  }
}

/**
 * spy returns a WebSocket class (the `ws` one, for options.WebSocket) that
 * counts the sockets it opens and decodes every message sent and received.
 */
function spy(codec = "json") {
  const log = { sockets: 0, sent: [], got: [] };
  log.WebSocket = class SpyWebSocket extends WebSocket {
    constructor(url, protocols) {
      super(url, protocols);
      log.sockets++;
      this.addEventListener("message", (ev) => {
        log.got.push(...decodeServerFrame(codec, ev.data).messages);
      });
    }

    send(data) {
      log.sent.push(...decodeClientFrame(codec, data).messages);
      super.send(data);
    }
  };
  return log;
}

/** FakeAppState has the shape of React Native's AppState. */
class FakeAppState {
  constructor(state = "active") {
    this.currentState = state;
    this.listeners = new Set();
  }

  addEventListener(type, fn) {
    assert.equal(type, "change");
    this.listeners.add(fn);
    return { remove: () => this.listeners.delete(fn) };
  }

  set(state) {
    this.currentState = state;
    for (const fn of [...this.listeners]) fn(state);
  }
}

/** FakeNetwork is a network source as the NetInfo adapter makes it: it reports the current state soon after subscribe, then every change. */
class FakeNetwork {
  constructor(online = true) {
    this.online = online;
    this.listeners = new Set();
  }

  subscribe(fn) {
    this.listeners.add(fn);
    queueMicrotask(() => {
      if (this.listeners.has(fn)) fn(this.online);
    });
    return () => this.listeners.delete(fn);
  }

  set(online) {
    this.online = online;
    for (const fn of [...this.listeners]) fn(online);
  }
}

const describe = (pubs) => () => `got ${pubs.length}: ${pubs.map((p) => p.offset).join(",")}`;
const isPaused = (err) => err.name === "HuddleError" && err.code === 0 && /paused/.test(err.reason);

// ---- pause and resume ----

test("pause(): the socket closes cleanly, nothing is opened or sent while paused; resume() recovers what another client published meanwhile, once, in order", { timeout: 30_000 }, async () => {
  // A presence grace of 30 s: a leave within 5 s can only come from a clean close.
  const srv = await server(["--presence-grace", "30s"]);
  const proxy = await proxyTo(srv);
  const log = spy("json");
  const name = "gps:pause";
  const c = clients.make(proxy.url, { token: mintToken({ sub: "tracker" }), codec: "json", WebSocket: log.WebSocket });
  const { s, pubs, subs } = await subscribe(c, name, { join: { name: "T" } });
  const other = await clients.connected(srv.wsUrl, "watcher");
  const { s: o } = await subscribe(other, name, { presence: true });
  await until(o.presence, "change", () => o.presence.get("tracker") !== undefined, 5000, "the watcher to see the tracker");
  for (const i of [1, 2, 3]) await o.publish({ i });
  await until(s, "publication", () => pubs.length >= 3, 5000, "3 live", describe(pubs));

  const states = record(c, "state");
  const discs = record(c, "disconnected");
  const connecting = record(c, "connecting");
  const left = waitFor(o.presence, "leave", (u) => u.user === "tracker", 5000, "the tracker's leave");
  c.pause();
  assert.equal(c.state, "paused");
  assert.deepEqual(states, ["paused"]);
  assert.deepEqual(discs, [{ code: 4000, reason: "paused", reconnect: false }]);
  assert.equal(c.clientId, undefined);
  assert.equal(s.state, "unsubscribed");
  await left;
  await eventually(() => proxy.connections === 0, 5000, "the proxied connection to close");
  const socketsAtPause = log.sockets;
  const sentAtPause = log.sent.length;

  // Another client publishes while the tracker is paused.
  for (const i of [4, 5, 6, 7, 8]) await o.publish({ i });
  // Calls while paused reject at once with a clear error; whispers are not sent; ready() waits.
  await assert.rejects(withTimeout(s.publish({ i: "no" }), 1000, "publish while paused"), isPaused);
  await assert.rejects(withTimeout(s.history(), 1000, "history while paused"), isPaused);
  assert.equal(s.whisper("hi", 1), false);
  let readyDone = false;
  const ready = c.ready().then(() => { readyDone = true; });
  await delay(800); // with the tests' 20-300 ms backoff, a reconnect would have come by now
  assert.equal(c.state, "paused");
  assert.equal(log.sockets, socketsAtPause, "no socket opened while paused");
  assert.equal(log.sent.length, sentAtPause, "nothing sent while paused");
  assert.equal(proxy.connections, 0);
  assert.deepEqual(connecting, [], "no connection attempt while paused");
  assert.equal(readyDone, false, "ready() waits for resume()");
  assert.equal(pubs.length, 3);

  const resub = waitFor(s, "subscribed", () => true, 10_000, "resubscribed after resume()");
  const back = waitFor(o.presence, "join", (u) => u.user === "tracker", 5000, "the tracker back in presence");
  c.resume();
  assert.equal(c.state, "connecting");
  const ev = await resub;
  await withTimeout(ready, 5000, "ready() after resume()");
  assert.equal(ev.recovered, true);
  assert.equal(ev.missed, 5);
  assert.deepEqual(states, ["paused", "connecting", "connected"]);
  assert.deepEqual(connecting, [{ attempt: 1 }]);
  const sub = log.sent.slice(sentAtPause).find((m) => m.t === "sub" && m.s === name);
  assert.deepEqual(sub.recover, { epoch: subs[0].epoch, offset: 3 }, "resubscribed from the position before the pause");
  const u = await back;
  assert.deepEqual(u.state, { name: "T" }, "the own presence state is rejoined");

  await o.publish({ i: 9 });
  await until(s, "publication", () => pubs.length >= 9, 5000, "live again", describe(pubs));
  assert.deepEqual(pubs.map((p) => p.offset), range(1, 9), "in order, contiguous, exactly once");
  assert.deepEqual(pubs.map((p) => p.data.i), range(1, 9));
  assert.deepEqual(pubs.map((p) => p.recovered), range(1, 9).map((i) => i >= 4 && i <= 8));
  assert.equal(subs.length, 2);
});

test("pause()/resume(): no-ops where they do not apply; disconnect() and connect() while paused; a pause between two reconnect attempts", { timeout: 30_000 }, async () => {
  const srv = await server();
  // Nothing to pause before connect().
  const idle = clients.make(srv.wsUrl, { token: mintToken({ sub: "idle" }), autoConnect: false });
  const idleStates = record(idle, "state");
  idle.pause();
  idle.resume();
  assert.equal(idle.state, "disconnected");
  assert.deepEqual(idleStates, []);

  const name = "gps:edges";
  const c = await clients.connected(srv.wsUrl, "edge");
  const { s, pubs, subs } = await subscribe(c, name);
  const states = record(c, "state");
  const discs = record(c, "disconnected");
  c.pause();
  c.pause();
  assert.deepEqual(states, ["paused"]);
  assert.equal(discs.length, 1);

  // disconnect() while paused: for good; ready() rejects; resume() does not undo it.
  c.disconnect();
  assert.equal(c.state, "disconnected");
  assert.deepEqual(states, ["paused", "disconnected"]);
  await assert.rejects(withTimeout(c.ready(), 1000, "ready() after disconnect()"));
  await assert.rejects(withTimeout(s.publish(0), 1000, "publish after disconnect()"), (err) => /call connect\(\)/.test(err.reason));
  c.resume();
  assert.equal(c.state, "disconnected");

  await srv.publish(name, [1, 2]);
  c.connect();
  await until(s, "subscribed", () => subs.length >= 2, 5000, "resubscribed after connect()");
  assert.equal(subs[1].recovered, true);

  // connect() on a paused client resumes it.
  c.pause();
  await srv.publish(name, [3]);
  c.connect();
  await until(s, "subscribed", () => subs.length >= 3, 5000, "resubscribed after connect() on a paused client");
  await until(s, "publication", () => pubs.length >= 3, 5000, "3", describe(pubs));
  assert.deepEqual(pubs.map((p) => [p.data, p.recovered]), [[1, true], [2, true], [3, true]]);

  // Paused between two reconnect attempts (the network is down).
  const proxy = await proxyTo(srv);
  const r = clients.make(proxy.url, { token: mintToken({ sub: "roamer" }), transports: ["websocket"], minReconnectDelay: 50, maxReconnectDelay: 200 });
  const rs = await subscribe(r, "gps:between");
  const down = waitFor(r, "disconnected", () => true, 5000, "disconnected by the cut");
  proxy.cut();
  assert.equal((await down).reconnect, true);
  const waitingPublish = rs.s.publish({ late: true }); // waits for the connection
  const rStates = record(r, "state");
  const rConnecting = record(r, "connecting");
  r.pause();
  assert.equal(r.state, "paused");
  assert.deepEqual(rStates, ["paused"]);
  await assert.rejects(withTimeout(waitingPublish, 1000, "the waiting publish"), isPaused);
  proxy.restore();
  await delay(600);
  assert.equal(r.state, "paused");
  assert.deepEqual(rConnecting, [], "no attempt while paused, though the network is back");
  await srv.publish("gps:between", [1]);
  const resub = waitFor(rs.s, "subscribed", () => true, 5000, "resubscribed after resume()");
  r.resume();
  assert.equal((await resub).recovered, true);
  await until(rs.s, "publication", () => rs.pubs.length >= 1, 5000, "the recovered publication");
  assert.deepEqual(rs.pubs.map((p) => [p.data, p.recovered]), [[1, true]]);
});

// ---- React Native AppState ----

test("appState: background pauses after backgroundTimeout, active resumes and recovers; disconnect() removes the listener", { timeout: 20_000 }, async () => {
  const srv = await server();
  const name = "gps:app";
  const app = new FakeAppState("active");
  const c = clients.make(srv.wsUrl, { token: mintToken({ sub: "phone" }), appState: app, backgroundTimeout: 300 });
  const { s, pubs } = await subscribe(c, name);
  assert.equal(app.listeners.size, 1);
  await srv.publish(name, [1, 2]);
  await until(s, "publication", () => pubs.length >= 2, 5000, "2 live", describe(pubs));

  const paused = waitFor(c, "state", (st) => st === "paused", 5000, "the pause");
  const t0 = Date.now();
  app.set("background");
  assert.equal(c.state, "connected", "not at once: after backgroundTimeout");
  await paused;
  assert.ok(Date.now() - t0 >= 250, `paused after ${Date.now() - t0} ms (backgroundTimeout 300)`);

  await srv.publish(name, [3, 4, 5]);
  const resub = waitFor(s, "subscribed", () => true, 5000, "resubscribed when active");
  app.set("active");
  const ev = await resub;
  assert.equal(ev.recovered, true);
  assert.equal(ev.missed, 3);
  await until(s, "publication", () => pubs.length >= 5, 5000, "5", describe(pubs));
  assert.deepEqual(pubs.map((p) => p.data), range(1, 5));
  assert.deepEqual(pubs.map((p) => p.recovered), [false, false, true, true, true]);

  c.disconnect();
  assert.equal(app.listeners.size, 0, "disconnect() removes the AppState listener");
  app.set("background");
  app.set("active");
  assert.equal(c.state, "disconnected");
  c.connect();
  assert.equal(app.listeners.size, 1, "connect() adds it again");
  await withTimeout(c.ready(), 5000, "ready() after connect()");
});

test("appState: back to active within backgroundTimeout does not pause; inactive is the foreground; the app's own pause() is not undone by active", { timeout: 20_000 }, async () => {
  const srv = await server();
  const app = new FakeAppState("active");
  const c = clients.make(srv.wsUrl, { token: mintToken({ sub: "fidget" }), appState: app, backgroundTimeout: 1500 });
  await withTimeout(c.ready(), 5000, "ready()");
  const id = c.clientId;
  const states = record(c, "state");
  const discs = record(c, "disconnected");

  app.set("background");
  await delay(50);
  app.set("active"); // back before the timeout: cancelled
  app.set("inactive"); // iOS app switcher, a call: still the foreground
  await delay(2200); // past backgroundTimeout
  assert.deepEqual(states, [], "no pause");
  assert.deepEqual(discs, []);
  assert.equal(c.state, "connected");
  assert.equal(c.clientId, id, "the same connection");

  c.pause();
  app.set("background");
  app.set("active");
  await delay(300);
  assert.equal(c.state, "paused", "a pause() of the app's own stays until resume()");
  c.resume();
  await withTimeout(c.ready(), 5000, "ready() after resume()");
});

test("appState: a client created in the background connects, pauses after backgroundTimeout, and resumes when the app is active", { timeout: 15_000 }, async () => {
  const srv = await server();
  const app = new FakeAppState("background");
  const c = clients.make(srv.wsUrl, { token: mintToken({ sub: "woken" }), appState: app, backgroundTimeout: 400 });
  const paused = waitFor(c, "state", (st) => st === "paused", 5000, "the pause");
  await withTimeout(c.ready(), 5000, "ready()");
  await paused;
  app.set("active");
  assert.equal(c.state, "connecting");
  await withTimeout(c.ready(), 5000, "ready() when active");
});

// ---- the network source ----

test("network: while offline no reconnect attempt is spent; online reconnects with a fresh backoff and recovers", { timeout: 20_000 }, async () => {
  const srv = await server();
  const proxy = await proxyTo(srv);
  const net = new FakeNetwork(true);
  const name = "gps:net";
  const c = clients.make(proxy.url, { token: mintToken({ sub: "subway" }), network: net, transports: ["websocket"], minReconnectDelay: 20, maxReconnectDelay: 100 });
  const { s, pubs } = await subscribe(c, name);
  assert.equal(net.listeners.size, 1);
  await srv.publish(name, [{ i: 1 }]);
  await until(s, "publication", () => pubs.length >= 1, 5000, "1 live", describe(pubs));

  net.set(false);
  await delay(100);
  assert.equal(c.state, "connected", "a connection that is up is left alone");
  const down = waitFor(c, "disconnected", () => true, 5000, "disconnected by the cut");
  proxy.cut();
  assert.equal((await down).reconnect, true);
  const connecting = record(c, "connecting");
  await srv.publish(name, [{ i: 2 }, { i: 3 }]);
  const waitingPublish = s.publish({ i: 4 }); // waits for the connection, as while reconnecting
  await delay(700); // with a 20-100 ms backoff, many attempts would have failed by now
  assert.deepEqual(connecting, [], "no attempt while offline");
  assert.equal(c.state, "disconnected");
  proxy.restore();
  await delay(300);
  assert.deepEqual(connecting, [], "the source is trusted: still offline, still no attempt");

  const resub = waitFor(s, "subscribed", () => true, 5000, "resubscribed when online");
  net.set(true);
  assert.deepEqual(connecting, [{ attempt: 1 }], "online: an attempt at once, the backoff afresh");
  const ev = await resub;
  assert.equal(ev.recovered, true);
  assert.equal(ev.missed, 2);
  assert.equal((await withTimeout(waitingPublish, 5000, "the waiting publish")).offset, 4);
  await until(s, "publication", () => pubs.length >= 4, 5000, "4", describe(pubs));
  assert.deepEqual(pubs.map((p) => p.data.i), [1, 2, 3, 4]);

  net.set(true); // a source may repeat itself: nothing happens
  assert.equal(c.state, "connected");
  c.disconnect();
  assert.equal(net.listeners.size, 0, "disconnect() unsubscribes the source");
});

test("network: online cuts a long backoff short", { timeout: 20_000 }, async () => {
  const srv = await server();
  const proxy = await proxyTo(srv);
  const net = new FakeNetwork(true);
  // The backoff after a drop is 10-20 s here.
  const c = clients.make(proxy.url, { token: mintToken({ sub: "patient" }), network: net, transports: ["websocket"], minReconnectDelay: 20_000, maxReconnectDelay: 30_000 });
  await withTimeout(c.ready(), 5000, "ready()");
  const down = waitFor(c, "disconnected", () => true, 5000, "disconnected by the cut");
  proxy.cut();
  await down;
  proxy.restore();
  await delay(200);
  assert.equal(c.state, "disconnected", "waiting for its backoff");
  net.set(false);
  net.set(true);
  await withTimeout(c.ready(), 5000, "connected at once when online (the backoff was 10 s or more)");
});

test("browser globals, where addEventListener exists: online and a visible page still reconnect at once; lifecycle: false ignores them; disconnect() removes the listeners", { timeout: 20_000 }, async () => {
  const srv = await server();
  const proxy = await proxyTo(srv);
  const win = new EventTarget();
  const doc = new EventTarget();
  doc.visibilityState = "hidden";
  const listening = new Map();
  const counted = (t) => ({
    add: (ev, fn) => { listening.set(ev, (listening.get(ev) ?? 0) + 1); t.addEventListener(ev, fn); },
    remove: (ev, fn) => { listening.set(ev, (listening.get(ev) ?? 0) - 1); t.removeEventListener(ev, fn); },
  });
  const w = counted(win);
  const d = counted(doc);
  globalThis.addEventListener = w.add;
  globalThis.removeEventListener = w.remove;
  globalThis.document = { get visibilityState() { return doc.visibilityState; }, addEventListener: d.add, removeEventListener: d.remove };
  try {
    // A backoff of 10-20 s after a drop: only the events can make it sooner.
    const opts = { transports: ["websocket"], minReconnectDelay: 20_000, maxReconnectDelay: 30_000 };
    const ignoring = clients.make(proxy.url, { token: mintToken({ sub: "plain" }), lifecycle: false, ...opts });
    await withTimeout(ignoring.ready(), 5000, "ready()");
    assert.equal(listening.size, 0, "lifecycle: false adds no listener");
    const c = clients.make(proxy.url, { token: mintToken({ sub: "tab" }), ...opts });
    await withTimeout(c.ready(), 5000, "ready()");
    assert.deepEqual([...listening], [["online", 1], ["visibilitychange", 1]]);

    for (const wake of [() => win.dispatchEvent(new Event("online")), () => { doc.visibilityState = "visible"; doc.dispatchEvent(new Event("visibilitychange")); }]) {
      const down = waitFor(c, "disconnected", () => true, 5000, "disconnected by the cut");
      proxy.cut();
      await down;
      proxy.restore();
      await delay(200);
      assert.equal(c.state, "disconnected", "waiting for its backoff");
      wake();
      await withTimeout(c.ready(), 5000, "connected at once on the event");
      doc.visibilityState = "hidden";
    }
    assert.equal(ignoring.state, "disconnected", "the client with lifecycle: false still waits for its backoff");
    c.disconnect();
    assert.deepEqual([...listening], [["online", 0], ["visibilitychange", 0]], "disconnect() removes the listeners");
  } finally {
    delete globalThis.addEventListener;
    delete globalThis.removeEventListener;
    delete globalThis.document;
  }
});

// ---- liveness ----

test("pingInterval is sent as connect.ping; connected.ping says what the server granted (clamped to 5..300 s)", { timeout: 20_000 }, async () => {
  const srv = await server(["--ping-interval", "60s"]);
  for (const [asked, granted, codec] of [[7, 7, "msgpack"], [7, 7, "json"], [1, 5, "json"], [1000, 300, "json"], [undefined, 60, "json"], [0, 60, "json"]]) {
    const log = spy(codec);
    const c = clients.make(srv.wsUrl, { token: mintToken({ sub: "pinger" }), codec, WebSocket: log.WebSocket, pingInterval: asked });
    const ev = await waitFor(c, "connected", () => true, 5000, `connected (pingInterval ${asked})`);
    assert.equal(ev.ping, granted, `pingInterval ${asked} over ${codec}`);
    const connect = log.sent.find((m) => m.t === "connect");
    assert.equal(connect.ping, asked || undefined, "connect.ping");
    c.disconnect();
  }
  for (const bad of [-5, Number.NaN, Infinity, "30"]) {
    assert.throws(() => clients.make(srv.wsUrl, { pingInterval: bad, autoConnect: false }), TypeError, `pingInterval ${bad}`);
  }
  assert.throws(() => clients.make(srv.wsUrl, { staleThreshold: -1, autoConnect: false }), TypeError);
  assert.throws(() => clients.make(srv.wsUrl, { backgroundTimeout: Number.NaN, autoConnect: false }), TypeError);
});

test("pingInterval: the server pings at the interval granted; by default the client sends no pings of its own", { timeout: 20_000 }, async () => {
  const srv = await server(["--ping-interval", "60s"]);
  const log = spy("json");
  const c = clients.make(srv.wsUrl, { token: mintToken({ sub: "beacon" }), codec: "json", WebSocket: log.WebSocket, pingInterval: 5 });
  await withTimeout(c.ready(), 5000, "ready()");
  // The server's own interval is 60 s: a ping this soon is the granted 5 s one.
  await eventually(() => log.got.some((m) => m.t === "ping"), 12_000, "a server ping");
  await eventually(() => log.sent.some((m) => m.t === "pong"), 2000, "the client's pong");
  assert.equal(log.sent.filter((m) => m.t === "ping").length, 0, "no client pings without staleThreshold");
  assert.equal(c.state, "connected");
});

test("staleThreshold: a quiet healthy connection stays (the client pings at half of it); a black hole reconnects within it and recovers", { timeout: 30_000 }, async () => {
  const srv = await server(); // server ping 25 s: the default threshold would be 52 s
  const proxy = await proxyTo(srv);
  const log = spy("json");
  const name = "gps:stale";
  const c = clients.make(proxy.url, { token: mintToken({ sub: "tunnel" }), codec: "json", WebSocket: log.WebSocket, transports: ["websocket"], staleThreshold: 3000 });
  const { s, pubs, subs } = await subscribe(c, name);
  await srv.publish(name, [1, 2]);
  await until(s, "publication", () => pubs.length >= 2, 5000, "2 live", describe(pubs));
  const id = c.clientId;
  const discs = record(c, "disconnected");

  await delay(4500); // longer than the threshold, with nothing published
  assert.deepEqual(discs, [], "a quiet connection that answers is not dropped");
  assert.equal(c.clientId, id);
  assert.ok(log.sent.some((m) => m.t === "ping"), "the client asked for a sign of life");
  assert.ok(log.got.some((m) => m.t === "pong"), "the server answered it");

  const down = waitFor(c, "disconnected", () => true, 15_000, "the client to notice the black hole");
  const t0 = Date.now();
  proxy.freeze(); // nothing arrives, nothing fails
  await srv.publish(name, [3, 4, 5]);
  const d = await down;
  const took = Date.now() - t0;
  assert.equal(d.code, 4011);
  assert.equal(d.reconnect, true);
  assert.ok(took < 12_000, `noticed after ${took} ms (threshold 3 s; the default would be 52 s)`);

  await until(s, "subscribed", () => subs.length >= 2, 10_000, "resubscribed");
  assert.equal(subs[1].recovered, true);
  assert.notEqual(c.clientId, id);
  await until(s, "publication", () => pubs.length >= 5, 5000, "recovered", describe(pubs));
  assert.deepEqual(pubs.map((p) => p.data), range(1, 5));
  assert.deepEqual(pubs.map((p) => p.recovered), [false, false, true, true, true]);
});
