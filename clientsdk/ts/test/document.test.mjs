// Document streams (rule document=on): a late joiner gets the whole
// document, snapshot first; compact() answers the server's request for a
// snapshot; a client that was away recovers through a snapshot taken
// meanwhile; over the HTTP transports the same.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, startProxy, Clients, mintToken, waitFor, until, subscribe, range } from "./server.mjs";

const clients = new Clients();
const cleanups = [];
after(async () => {
  clients.closeAll();
  for (const f of cleanups.reverse()) await f();
});

async function server(args = []) {
  const srv = await startServer({ args: ["--rule", "doc:*=;document=on", "--history-size", "10", ...args] });
  cleanups.push(() => srv.stop());
  return srv;
}

const describe = (pubs) => () => `got ${pubs.length}: ${pubs.map((p) => (p.snapshot ? "S" : "") + p.offset).join(",")}`;

for (const transports of [["websocket"], ["sse"], ["longpoll"]]) {
  test(`a late joiner gets every publication of a document, past the history bound (${transports[0]})`, { timeout: 20_000 }, async () => {
    const srv = await server();
    const name = `doc:late:${transports[0]}`;
    for (let i = 1; i <= 1200; i += 400) await srv.publish(name, range(i, i + 399).map((n) => ({ n })));
    const c = await clients.connected(srv.wsUrl, "late", { transports });
    const { s, pubs, subs } = await subscribe(c, name);
    await until(s, "publication", () => pubs.length >= 1200, 10_000, "the whole document", describe(pubs));
    assert.equal(subs[0].document, true);
    assert.equal(s.document, true);
    assert.deepEqual(pubs.map((p) => p.data.n), range(1, 1200));
    assert.ok(pubs.every((p) => p.recovered && !p.snapshot));
    // Live ones continue.
    await srv.publish(name, [{ n: 1201 }]);
    await until(s, "publication", () => pubs.length === 1201, 5000, "a live one", describe(pubs));
    assert.equal(pubs[1200].recovered, false);
  });
}

test("the server asks for a snapshot; compact() stores it; joiners get it first, then the tail", { timeout: 20_000 }, async () => {
  const srv = await server(["--document-compact-every", "50"]);
  const name = "doc:compact";
  const w = await clients.connected(srv.wsUrl, "writer");
  const { s: ws, pubs: seen } = await subscribe(w, name);
  const asked = [];
  ws.on("compact", (e) => asked.push(e));
  let state = [];
  ws.on("publication", (p) => { state = p.snapshot ? [...p.data] : [...state, p.data]; });
  for (let i = 1; i <= 120; i++) await ws.publish(i);
  await until(ws, "publication", () => seen.length >= 120, 5000, "own publications", describe(seen));
  assert.deepEqual(asked.map((a) => a.offset), [50, 100]);
  const at = await ws.compact(state);
  assert.equal(at.offset, 120);
  await ws.publish(121);

  const j = await clients.connected(srv.wsUrl, "joiner");
  const { s, pubs } = await subscribe(j, name);
  await until(s, "publication", () => pubs.length >= 2, 5000, "snapshot and tail", describe(pubs));
  assert.equal(pubs[0].snapshot, true);
  assert.equal(pubs[0].offset, 120);
  assert.deepEqual(pubs[0].data, range(1, 120));
  assert.equal(pubs[1].offset, 121);
  assert.equal(pubs[1].data, 121);

  // compact on an ordinary stream is refused with 4004.
  const { s: plain } = await subscribe(w, "chat:plain");
  await plain.publish(1);
  await until(plain, "publication", () => plain.position?.offset === 1, 5000, "one publication");
  await assert.rejects(plain.compact([1]), (e) => e.code === 4004);
});

test("a client that was away recovers through a snapshot taken meanwhile", { timeout: 20_000 }, async () => {
  const srv = await server();
  const proxy = await startProxy(srv.port);
  cleanups.push(() => proxy.close());
  const name = "doc:away";
  const roamer = clients.make(proxy.url, { token: mintToken({ sub: "roamer" }), minReconnectDelay: 50, maxReconnectDelay: 200 });
  const { s, pubs, subs } = await subscribe(roamer, name);
  await srv.publish(name, range(1, 5));
  await until(s, "publication", () => pubs.length >= 5, 5000, "5 live", describe(pubs));

  proxy.cut();
  const w = await clients.connected(srv.wsUrl, "writer");
  const { s: ws } = await subscribe(w, name);
  await srv.publish(name, range(6, 30));
  await until(ws, "publication", () => ws.position?.offset === 30, 5000, "writer at 30");
  await ws.compact(range(1, 30));
  await srv.publish(name, [31, 32]);
  proxy.restore();

  await until(s, "publication", () => pubs.at(-1)?.offset === 32, 10_000, "caught up", describe(pubs));
  assert.equal(subs.at(-1).recovered, true);
  const after = pubs.slice(5);
  assert.equal(after[0].snapshot, true);
  assert.equal(after[0].offset, 30);
  assert.deepEqual(after[0].data, range(1, 30));
  assert.deepEqual(after.slice(1).map((p) => p.data), [31, 32]);
});
