// The Yjs provider against the real server binary: concurrent edits
// converge; edits made offline (TCP cut by a proxy) sync on reconnect; a
// late joiner gets the whole document (snapshot and tail); the server's
// requests for a snapshot are answered; awareness follows whispers and
// presence; a server that lost the document gets it back from the clients.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as Y from "yjs";
import { startServer, startProxy, Clients, mintToken, until, withTimeout, delay } from "../../ts/test/server.mjs";
import { HuddleYjsProvider, toBase64, fromBase64 } from "../dist/index.js";

const clients = new Clients();
const cleanups = [];
const providers = [];
after(async () => {
  for (const p of providers) p.destroy();
  clients.closeAll();
  for (const f of cleanups.reverse()) await f();
});

async function server(args = []) {
  const srv = await startServer({ args: ["--rule", "doc:*=;document=on", "--presence-grace", "1s", ...args] });
  cleanups.push(() => srv.stop());
  return srv;
}

function provider(client, name, opts) {
  const doc = new Y.Doc();
  const p = new HuddleYjsProvider(client, name, doc, opts);
  providers.push(p);
  return p;
}

/** converged waits until every provider's text equals the first's and is want (when given). */
async function converged(ps, want, ms = 10_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const texts = ps.map((p) => p.doc.getText("t").toString());
    if (texts.every((t) => t === texts[0]) && (want === undefined || texts[0] === want) && ps.every((p) => !p.unsynced)) return texts[0];
    if (Date.now() > deadline) throw new Error(`not converged after ${ms} ms: ${JSON.stringify(texts.map((t) => t.slice(0, 80)))}`);
    await delay(20);
  }
}

test("base64 round trip", () => {
  for (let n = 0; n < 40; n++) {
    const b = Uint8Array.from({ length: n }, (_, i) => (i * 37 + n) & 255);
    assert.deepEqual(fromBase64(toBase64(b)), b);
    assert.equal(toBase64(b), Buffer.from(b).toString("base64"));
  }
  assert.equal(fromBase64("a*b="), null);
});

for (const [binary, codecA, codecB] of [[true, "msgpack", "msgpack"], [true, "json", "msgpack"], [false, "msgpack", "json"]]) {
  test(`two users type into one text at once and converge (binary ${binary}, ${codecA} and ${codecB})`, { timeout: 30_000 }, async () => {
    const srv = await server();
    const name = `doc:two:${binary}:${codecA}`;
    const a = provider(await clients.connected(srv.wsUrl, "ann", { codec: codecA }), name, { binary });
    const b = provider(await clients.connected(srv.wsUrl, "bob", { codec: codecB }), name, { binary });
    await Promise.all([a.whenSynced(), b.whenSynced()]);
    const ta = a.doc.getText("t"), tb = b.doc.getText("t");
    for (let i = 0; i < 200; i++) {
      ta.insert(Math.floor(Math.random() * (ta.length + 1)), "a");
      tb.insert(Math.floor(Math.random() * (tb.length + 1)), "b");
      if (i % 20 === 0) await delay(1);
    }
    const text = await converged([a, b]);
    assert.equal(text.length, 400);
    assert.equal([...text].filter((c) => c === "a").length, 200);
  });
}

test("edits made while the TCP connection is cut sync when it comes back", { timeout: 30_000 }, async () => {
  const srv = await server();
  const proxy = await startProxy(srv.port);
  cleanups.push(() => proxy.close());
  const name = "doc:offline";
  const roamer = clients.make(proxy.url, { token: mintToken({ sub: "roamer" }), minReconnectDelay: 50, maxReconnectDelay: 200 });
  const a = provider(roamer, name);
  const b = provider(await clients.connected(srv.wsUrl, "home"), name);
  await Promise.all([a.whenSynced(), b.whenSynced()]);
  a.doc.getText("t").insert(0, "hello ");
  await converged([a, b], "hello ");

  proxy.cut();
  await until(roamer, "state", () => roamer.state !== "connected", 5000, "roamer offline");
  a.doc.getText("t").insert(6, "from the train");
  b.doc.getText("t").insert(0, ">> ");
  await delay(300);
  assert.equal(b.doc.getText("t").toString(), ">> hello ");
  proxy.restore();
  const text = await converged([a, b]);
  assert.equal(text, ">> hello from the train");
});

test("a late joiner after 10,000 updates gets the whole document; snapshots are written when asked", { timeout: 60_000 }, async () => {
  const srv = await server(["--document-compact-every", "10001"]);
  const name = "doc:late";
  // 10,000 single-keystroke updates, each its own publication (through the
  // HTTP API: one connection may send 1,000 messages a second).
  const scratch = new Y.Doc();
  const updates = [];
  scratch.on("update", (u) => updates.push(u));
  const t = scratch.getText("t");
  for (let i = 0; i < 10_000; i++) t.insert(t.length, String.fromCharCode(97 + (i % 26)));
  for (let i = 0; i < updates.length; i += 500) await srv.publish(name, updates.slice(i, i + 500).map(toBase64));

  const start = performance.now();
  const j = provider(await clients.connected(srv.wsUrl, "joiner"), name);
  await withTimeout(j.whenSynced(), 20_000, "joiner synced");
  const ms = performance.now() - start;
  assert.equal(j.doc.getText("t").toString(), t.toString());
  console.log(`# late joiner: 10,000 updates applied in ${ms.toFixed(0)} ms (connect included)`);

  // The joiner's next publication is number 10,001: its ack asks for a
  // snapshot, which the joiner writes; a second joiner starts from it.
  j.doc.getText("t").insert(0, ">");
  for (let i = 0; i < 100 && !(await hasSnapshot(srv, name)); i++) await delay(50);
  assert.ok(await hasSnapshot(srv, name), "a snapshot was stored");
  const k = provider(await clients.connected(srv.wsUrl, "second"), name);
  await withTimeout(k.whenSynced(), 10_000, "second joiner synced");
  await converged([j, k]);
});

async function hasSnapshot(srv, name) {
  const h = await srv.api("GET", `/api/history/${encodeURIComponent(name)}?limit=1`);
  return h.pubs.length > 0 && h.pubs[0].snap === true;
}

test("awareness: a peer's state arrives; when its connection drops the cursor goes at once and the name after the grace period", { timeout: 30_000 }, async () => {
  const srv = await server();
  const proxy = await startProxy(srv.port);
  cleanups.push(() => proxy.close());
  const name = "doc:aw";
  const roamer = clients.make(proxy.url, { token: mintToken({ sub: "roamer" }), minReconnectDelay: 5000, maxReconnectDelay: 5000 });
  const a = provider(roamer, name);
  const b = provider(await clients.connected(srv.wsUrl, "watcher"), name);
  await Promise.all([a.whenSynced(), b.whenSynced()]);
  a.awareness.setLocalStateField("user", { name: "Roamer", color: "#f00" });
  a.awareness.setLocalStateField("cursor", { anchor: 3, head: 5 });
  const ya = a.doc.clientID;
  await until(b.awareness, "change", () => b.awareness.getStates().get(ya)?.cursor?.head === 5, 5000, "cursor seen");
  await until(b.stream.presence, "change", () => b.stream.presence.get("roamer")?.state?.user?.name === "Roamer", 5000, "name in presence");
  assert.deepEqual(b.awareness.getStates().get(ya).user, { name: "Roamer", color: "#f00" });

  proxy.cut();
  await until(b.awareness, "change", () => b.awareness.getStates().get(ya)?.cursor === undefined, 5000, "cursor gone");
  assert.deepEqual(b.awareness.getStates().get(ya), { user: { name: "Roamer", color: "#f00" } }, "the name stays through the grace period");
  await until(b.awareness, "change", () => !b.awareness.getStates().has(ya), 8000, "name gone after the grace period");
});

test("a late joiner sees the awareness of those already there", { timeout: 20_000 }, async () => {
  const srv = await server();
  const name = "doc:aw-late";
  const a = provider(await clients.connected(srv.wsUrl, "early"), name);
  await a.whenSynced();
  a.awareness.setLocalStateField("user", { name: "Early" });
  await delay(200);
  const b = provider(await clients.connected(srv.wsUrl, "late"), name);
  await b.whenSynced();
  await until(b.awareness, "change", () => b.awareness.getStates().get(a.doc.clientID)?.user?.name === "Early", 5000, "early's awareness");
});

test("a server that lost the document (memory node restarted) gets it back from its clients", { timeout: 30_000 }, async () => {
  const srv = await server();
  const name = "doc:lost";
  const a = provider(clients.make(srv.wsUrl, { token: mintToken({ sub: "keeper" }), minReconnectDelay: 50, maxReconnectDelay: 200 }), name);
  await a.whenSynced();
  a.doc.getText("t").insert(0, "precious");
  await converged([a], "precious");
  const subs = [];
  a.stream.on("subscribed", (e) => subs.push(e));
  await srv.restart();
  await until(a.stream, "subscribed", () => subs.some((e) => e.recovered === false), 10_000, "recovered: false after the restart");
  // The publish's echo may come before its ack: poll rather than wait for
  // an event.
  for (let i = 0; a.unsynced; i++) {
    assert.ok(i < 250, "republished within 5 s");
    await delay(20);
  }
  const j = provider(await clients.connected(srv.wsUrl, "newcomer"), name);
  await j.whenSynced();
  await converged([a, j], "precious");
});
