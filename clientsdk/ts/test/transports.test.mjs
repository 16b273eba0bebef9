// Transports: behind a proxy that refuses WebSocket upgrades the client
// connects over server-sent events, behind one that buffers responses over
// long polling, and when the WebSocket works again it moves back; its
// stream gets every publication exactly once, in order, through all of it,
// and presence and whispers keep working on each transport.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, startHTTPProxy, Clients, mintToken, waitFor, until, record, subscribe, range, delay } from "./server.mjs";

const clients = new Clients();
const cleanups = [];

after(async () => {
  clients.closeAll();
  for (const f of cleanups.reverse()) await f();
});

const offsets = (pubs) => pubs.map((p) => p.offset).join(",");

test("falls back to sse, then longpoll, moves back to the websocket; nothing lost or repeated", { timeout: 60_000 }, async () => {
  const srv = await startServer({});
  cleanups.push(() => srv.stop());
  const proxy = await startHTTPProxy(srv.port, "no-upgrade");
  cleanups.push(() => proxy.close());

  const c = clients.make(proxy.wsUrl, { token: mintToken({ sub: "ann" }), openTimeout: 1500, upgradeInterval: 500 });
  const seen = record(c, "connected");
  const name = "tr:doc";
  const { s, pubs } = await subscribe(c, name, { presence: true, join: {} }, 10_000);
  assert.equal(c.transport, "sse");
  assert.equal(seen.at(-1).transport, "sse");

  // Another user, straight to the server on a WebSocket.
  const bob = await clients.connected(srv.wsUrl, "bob");
  const bs = bob.stream(name, { presence: true, join: {} });
  await waitFor(bs, "subscribed", () => true, 5000, "bob subscribed");

  let next = 1;
  const publish = async (n) => {
    await srv.publish(name, range(next, next + n - 1).map((i) => ({ i })));
    next += n;
  };
  const allArrived = () => until(s, "publication", () => pubs.length >= next - 1, 15_000, `${next - 1} publications`, () => offsets(pubs));

  // Over sse: publications, presence and whispers.
  await publish(10);
  await allArrived();
  await until(s.presence, "change", () => s.presence.users.has("bob"), 5000, "bob present (over sse)");
  const whispers = record(s, "whisper");
  bs.whisper("cursor", { x: 1 });
  await until(s, "whisper", () => whispers.length >= 1, 5000, "a whisper over sse");
  const bobWhispers = record(bs, "whisper");
  s.whisper("cursor", { x: 2 });
  await until(bs, "whisper", () => bobWhispers.length >= 1, 5000, "a whisper from sse");

  // Publications keep coming while the client changes transports.
  const publishWhile = async () => {
    for (let k = 0; k < 10; k++) {
      await publish(3);
      await delay(100);
    }
  };

  // The proxy starts buffering: the event stream never arrives, long polls do.
  const publishing = publishWhile();
  proxy.setMode("buffered");
  await until(c, "connected", () => c.transport === "longpoll" && c.state === "connected", 20_000, "connected over longpoll");
  await publishing;
  await allArrived();
  whispers.length = 0;
  bs.whisper("cursor", { x: 3 });
  await until(s, "whisper", () => whispers.length >= 1, 5000, "a whisper over longpoll");
  assert.ok(s.presence.users.has("bob"), "bob still present over longpoll");

  // The WebSocket works again: the client moves back by itself.
  const publishing2 = publishWhile();
  proxy.setMode("open");
  await until(c, "connected", () => c.transport === "websocket" && c.state === "connected", 20_000, "moved back to the websocket");
  await publishing2;
  await publish(5);
  await allArrived();

  assert.deepEqual(pubs.map((p) => p.data.i), range(1, next - 1), "every publication once, in order");
  assert.deepEqual([...new Set(seen.map((e) => e.transport))], ["sse", "longpoll", "websocket"]);
  assert.ok(proxy.counts.refused > 0 && proxy.counts.upgrades > 0);
  // Bob saw ann throughout: the grace covered each move.
  assert.ok(bs.presence.users.has("ann"), "ann present for bob at the end");
});

test("transports: [\"longpoll\"] alone works on an open network", { timeout: 20_000 }, async () => {
  const srv = await startServer({});
  cleanups.push(() => srv.stop());
  const c = clients.make(srv.wsUrl, { token: mintToken({ sub: "lp" }), transports: ["longpoll"] });
  const { pubs, s } = await subscribe(c, "lp:1", {}, 10_000);
  assert.equal(c.transport, "longpoll");
  await srv.publish("lp:1", range(1, 20).map((i) => ({ i })));
  await until(s, "publication", () => pubs.length >= 20, 10_000, "20 publications", () => offsets(pubs));
  assert.deepEqual(pubs.map((p) => p.data.i), range(1, 20));
  // Publishing from the client goes up as a POST.
  await s.publish({ i: 21 });
  await until(s, "publication", () => pubs.length >= 21, 5000, "own publication");
});
