// Edge cases from a review of the runtime: each test pins down one bug that
// the first version had, against the real server (sometimes through a thin
// WebSocket wrapper that delays or rewrites server frames to simulate a slow
// or failing server).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import {
  startServer, startProxy, Clients, WebSocket, mintToken, waitFor, until, record, subscribe, delay, withTimeout,
} from "./server.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const pkgRoot = resolve(here, "..");

let srv;
const clients = new Clients();
const cleanups = [];

before(async () => {
  srv = await startServer();
});

after(async () => {
  clients.closeAll();
  for (const f of cleanups.reverse()) await f();
  await srv?.stop();
});

/**
 * tamperWS returns a WebSocket constructor (json codec only) that wraps the
 * `ws` package and passes every inbound frame's messages through
 * hook(msgs, raw) -> { msgs, holdMs? }. Frames are kept in order: a held
 * frame holds every frame behind it (a stalled server/network).
 */
function tamperWS(hook) {
  return class TamperWS {
    constructor(url, protocols) {
      this.real = new WebSocket(url, protocols);
      this.queue = [];
      this.releaseAt = 0;
      this.onopen = this.onmessage = this.onclose = this.onerror = null;
      this.real.onopen = (ev) => this.onopen?.(ev);
      this.real.onclose = (ev) => this.onclose?.(ev);
      this.real.onerror = (ev) => this.onerror?.(ev);
      this.real.onmessage = (ev) => {
        const text = typeof ev.data === "string" ? ev.data : Buffer.from(ev.data).toString("utf8");
        const msgs = text.split("\n").filter((l) => l.trim() !== "").map((l) => JSON.parse(l));
        const out = hook(msgs, this.real);
        const at = Math.max(this.releaseAt, Date.now() + (out.holdMs ?? 0));
        this.releaseAt = at;
        const data = out.msgs.map((m) => JSON.stringify(m)).join("\n");
        if (out.msgs.length === 0) return;
        setTimeout(() => this.onmessage?.({ data }), Math.max(0, at - Date.now()));
      };
    }
    get readyState() { return this.real.readyState; }
    get protocol() { return this.real.protocol; }
    get binaryType() { return this.real.binaryType; }
    set binaryType(v) { this.real.binaryType = v; }
    send(d) { this.real.send(d); }
    close(code, reason) { this.real.close(code, reason); }
  };
}

// ---------------------------------------------------------------------------
// 1. Node + `ws`: abandoning a socket that is still CONNECTING crashes the
//    process (drop() nulls onerror, then ws.close() on a CONNECTING `ws`
//    socket emits 'error' with no listener -> uncaught exception).

function runChild(code) {
  return new Promise((ok) => {
    const p = spawn(process.execPath, ["--input-type=module", "-e", code], { cwd: pkgRoot, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    p.stdout.on("data", (d) => (out += d));
    p.stderr.on("data", (d) => (err += d));
    const t = setTimeout(() => p.kill("SIGKILL"), 8000);
    p.on("exit", (code) => {
      clearTimeout(t);
      ok({ code, out, err });
    });
  });
}

test("disconnect() right after connect() does not crash a Node process using the ws package", { timeout: 15_000 }, async () => {
  const r = await runChild(`
    import WebSocket from "ws";
    import { Huddle } from "./dist/index.js";
    const c = new Huddle({ url: ${JSON.stringify(srv.wsUrl)}, WebSocket, autoConnect: false, token: "t" });
    c.connect();
    c.disconnect();
    setTimeout(() => { console.log("survived"); process.exit(0); }, 500);
  `);
  assert.equal(r.code, 0, `child exited with ${r.code}: ${r.err.split("\n").slice(0, 6).join("\n")}`);
  assert.match(r.out, /survived/);
});

test("a connect timeout while the TCP/HTTP handshake hangs does not crash a Node process using ws", { timeout: 15_000 }, async () => {
  // A black hole: accepts TCP and never answers the upgrade.
  const socks = new Set();
  const hole = createServer((s) => { socks.add(s); s.on("error", () => {}); });
  await new Promise((ok) => hole.listen(0, "127.0.0.1", ok));
  cleanups.push(() => { for (const s of socks) s.destroy(); return new Promise((ok) => hole.close(() => ok())); });
  const r = await runChild(`
    import WebSocket from "ws";
    import { Huddle } from "./dist/index.js";
    const c = new Huddle({ url: "ws://127.0.0.1:${hole.address().port}/ws", WebSocket, token: "t", requestTimeout: 300, minReconnectDelay: 50, maxReconnectDelay: 100 });
    setTimeout(() => { c.disconnect(); console.log("survived"); process.exit(0); }, 1500);
  `);
  assert.equal(r.code, 0, `child exited with ${r.code}: ${r.err.split("\n").slice(0, 6).join("\n")}`);
  assert.match(r.out, /survived/);
});

// ---------------------------------------------------------------------------
// 2. connect() called from a 'disconnected' listener is undone by drop():
//    after the listener returns, drop() sets want = false, so the new
//    connection never auto-reconnects and ready() waiters are rejected.

test("connect() inside a 'disconnected' listener (after a server kick) keeps auto-reconnect on", { timeout: 20_000 }, async () => {
  const proxy = await startProxy(srv.port);
  cleanups.push(() => proxy.close());
  const c = await clients.connected(proxy.url, "kicked-user");
  let relogged = false;
  let readyAfterRelog;
  c.on("disconnected", (e) => {
    if (!e.reconnect && !relogged) {
      relogged = true;
      c.connect(); // "log back in"
      readyAfterRelog = c.ready().then(() => "ok", (err) => "rejected: " + err.message);
    }
  });
  await srv.api("POST", "/api/disconnect", { user: "kicked-user" });
  await until(c, "state", () => relogged && c.state === "connected", 5000, "connected again after the kick");
  const readyResult = await withTimeout(readyAfterRelog, 2000, "ready()");

  // Now the network drops: the client should reconnect by itself.
  const d = waitFor(c, "disconnected", () => true, 5000, "disconnected after cut");
  proxy.cut();
  const ev = await d;
  proxy.restore();
  assert.deepEqual({ reconnect: ev.reconnect, readyResult }, { reconnect: true, readyResult: "ok" },
    "after connect() in the listener: a network drop must reconnect and ready() must resolve (drop() reset want and failed the waiters)");
});

// ---------------------------------------------------------------------------
// 3. disconnect() from a 'connecting' listener: open() does not recheck the
//    generation when no getToken is given, so a WebSocket is opened anyway
//    (and leaked: never closed by the client, never sends connect).

test("disconnect() inside a 'connecting' listener opens no socket", { timeout: 15_000 }, async () => {
  const proxy = await startProxy(srv.port);
  cleanups.push(() => proxy.close());
  const c = clients.make(proxy.url, { token: mintToken({ sub: "stopper" }), autoConnect: false });
  c.once("connecting", () => c.disconnect());
  c.connect();
  await delay(400);
  assert.equal(c.state, "disconnected");
  assert.equal(proxy.connections, 0, "a socket was opened after disconnect()");
});

// ---------------------------------------------------------------------------
// 4. A getToken that never settles leaves the client in 'connecting' forever:
//    the connect timer only starts after getToken resolved.

test("a hanging getToken does not wedge the client in 'connecting' forever", { timeout: 15_000 }, async () => {
  let calls = 0;
  const c = clients.make(srv.wsUrl, { getToken: () => { calls++; return new Promise(() => {}); }, requestTimeout: 400 });
  const discs = record(c, "disconnected");
  await delay(2000);
  assert.ok(calls >= 2 || discs.length >= 1, `after 5x requestTimeout: state=${c.state}, getToken calls=${calls}, disconnected events=${discs.length}`);
});

// ---------------------------------------------------------------------------
// 5. Refresh scheduling: a timer over 2^31-1 ms fires at once (Node, browsers),
//    so a token valid for > 24.8 days makes the client refresh in a loop.

test("a 30-day token is not refreshed in a tight loop (setTimeout overflow)", { timeout: 15_000 }, async () => {
  let calls = 0;
  const c = clients.make(srv.wsUrl, { getToken: () => { calls++; return mintToken({ sub: "longlived", ttl: 30 * 24 * 3600 }); } });
  await withTimeout(c.ready(), 5000, "connect");
  await delay(1000);
  assert.ok(calls <= 2, `getToken called ${calls} times in 1 s`);
});

// 5b. Same loop when the client's clock is ahead of the server by more than
//     the token's life: exp - Date.now() < 0 -> wait 0 -> refresh -> repeat.

test("a client clock ahead of the server does not cause a refresh storm", { timeout: 15_000 }, async () => {
  const token = mintToken({ sub: "skewed", ttl: 3600 });
  let calls = 0;
  const realNow = Date.now;
  Date.now = () => realNow() + 2 * 3600 * 1000; // client clock 2 h fast
  try {
    const c = clients.make(srv.wsUrl, { getToken: () => { calls++; return token; } });
    await withTimeout(c.ready(), 5000, "connect");
    await delay(1000);
    c.disconnect();
  } finally {
    Date.now = realNow;
  }
  assert.ok(calls <= 3, `getToken called ${calls} times in 1 s`);
});

// ---------------------------------------------------------------------------
// 6. A sub whose reply comes after requestTimeout: the SDK resubscribes
//    without an unsub, the server answers 4004 "already subscribed", and the
//    stream is closed for good (while the server keeps the subscription).

test("a slow subscribed reply (over requestTimeout) does not kill the stream", { timeout: 20_000 }, async () => {
  let held = false;
  const WS = tamperWS((msgs) => {
    if (!held && msgs.some((m) => m.t === "subscribed")) {
      held = true;
      return { msgs, holdMs: 1500 };
    }
    return { msgs };
  });
  const c = clients.make(srv.wsUrl, { token: mintToken({ sub: "slowsub" }), codec: "json", WebSocket: WS, requestTimeout: 1000 });
  await withTimeout(c.ready(), 5000, "connect");
  const s = c.stream("rv:slowsub");
  const pubs = record(s, "publication");
  const unsubs = record(s, "unsubscribed");
  await delay(3500);
  assert.deepEqual(unsubs, [], "the stream was closed: " + JSON.stringify(unsubs));
  assert.equal(s.state, "subscribed");
  await srv.publish("rv:slowsub", [{ n: 1 }]);
  await until(s, "publication", () => pubs.length >= 1, 3000, "a publication");
});

// ---------------------------------------------------------------------------
// 7. A retryable subscribe error (4500, retry: true, e.g. the history store
//    timed out) closes the stream permanently: only 4010 and 0 are retried.

test("a transient 4500 (retry: true) on sub is retried, not fatal", { timeout: 15_000 }, async () => {
  let failed = false;
  const WS = tamperWS((msgs, real) => {
    if (failed) return { msgs };
    const out = msgs.map((m) => {
      if (m.t !== "subscribed" || m.s !== "rv:flaky") return m;
      failed = true;
      // What the server does on a history error: drop the sub, answer 4500.
      real.send(JSON.stringify({ t: "unsub", s: m.s }));
      return { t: "error", id: m.id, s: m.s, code: 4500, reason: "subscribe failed: redis: i/o timeout", retry: true };
    });
    return { msgs: out };
  });
  const c = clients.make(srv.wsUrl, { token: mintToken({ sub: "flaky" }), codec: "json", WebSocket: WS });
  await withTimeout(c.ready(), 5000, "connect");
  const s = c.stream("rv:flaky");
  const unsubs = record(s, "unsubscribed");
  s.on("error", () => {});
  for (let i = 0; i < 100 && s.state !== "subscribed" && unsubs.length === 0; i++) await delay(30);
  assert.deepEqual(unsubs, [], "a retryable error ended the stream");
  assert.equal(s.state, "subscribed");
});

// ---------------------------------------------------------------------------
// 8. unsubscribe() from a publication listener during the recovered pubs of
//    a resubscribe: the loop checks subGen only, which unsubscribe() does not
//    bump, so the rest are still delivered and 'subscribed' still fires.

test("unsubscribe() inside a recovered publication stops delivery", { timeout: 15_000 }, async () => {
  const c = await clients.connected(srv.wsUrl, "quitter");
  const { s } = await subscribe(c, "rv:quit");
  c.disconnect();
  await srv.publish("rv:quit", [1, 2, 3, 4, 5]);
  const got = [];
  const subsAfter = [];
  s.on("publication", (p) => {
    got.push(p.offset);
    if (got.length === 1) s.unsubscribe();
  });
  s.on("subscribed", (e) => subsAfter.push(e));
  c.connect();
  await withTimeout(c.ready(), 5000, "reconnect");
  await delay(300);
  assert.deepEqual(got, [1], "publications delivered after unsubscribe()");
  assert.equal(subsAfter.length, 0, "'subscribed' emitted after unsubscribe()");
});

// ---------------------------------------------------------------------------
// 9. Cursors on a stream without presence: a peer's old connection's cursor
//    is never removed, so each peer reconnect leaves a ghost cursor (and
//    latestWhispers / others grow without bound).

test("a peer's reconnect does not leave a ghost cursor (stream without presence)", { timeout: 15_000 }, async () => {
  const a = await clients.connected(srv.wsUrl, "watcher");
  const b = await clients.connected(srv.wsUrl, "mover");
  const sa = (await subscribe(a, "rv:cur")).s;
  const sb = (await subscribe(b, "rv:cur")).s;
  const ca = sa.cursors({ interval: 10 });
  const cb = sb.cursors({ interval: 10 });
  cb.move({ x: 1 });
  await until(ca, "change", () => ca.others.size === 1, 3000, "A sees B's cursor");
  const oldId = b.clientId;
  b.reconnect();
  await until(ca, "change", () => [...ca.others.keys()].some((k) => k !== oldId), 5000, "A sees B's new connection's cursor");
  await delay(300);
  assert.deepEqual([...ca.others.values()].map((c) => c.client === oldId ? "old" : "new"), ["new"], "ghost cursor of B's old connection");
});

