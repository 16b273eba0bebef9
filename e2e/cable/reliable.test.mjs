// @anycable/core 1.1 with actioncable-v1-ext-json: a session id in the
// welcome, broadcasts with stream/epoch/offset, and a connection cut by a TCP
// proxy while messages are published: after the reconnect the session is
// restored (or the client resubscribes with history) and the missed messages
// arrive in order, exactly once.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { requires, startServer } from "./helpers/server.mjs";
import { anycable, historyAnswer, subscribed } from "./helpers/cable.mjs";
import { nextEvent, sleep, startProxy, uniq, waitFor } from "./helpers/util.mjs";

let server;
const cleanup = [];
before(async () => { server = await startServer(); });
after(async () => { for (const f of cleanup.reverse()) await f(); await server?.stop(); });

function collect(channel) {
  const got = [];
  channel.on("message", (msg, meta) => got.push({ msg, meta }));
  return got;
}

test("ext-json: sid in welcome; broadcasts carry stream, epoch and increasing offsets", { timeout: 15000 }, async () => {
  const cable = anycable(server.ws);
  cleanup.push(() => cable.disconnect());
  await cable.connect();
  assert.equal(cable.state, "connected");
  assert.equal(typeof cable.sessionId, "string");
  assert.ok(cable.sessionId.length >= 8, `a session id in the welcome, got ${JSON.stringify(cable.sessionId)}`);

  const stream = uniq("rel");
  const ch = cable.streamFrom(stream);
  const got = collect(ch);
  await subscribed(cable, ch);
  for (let i = 1; i <= 5; i++) await server.publish(stream, { seq: i });
  await waitFor(() => got.length >= 5, { what: "5 messages" });
  await sleep(200);
  assert.deepEqual(got.map((g) => g.msg), [1, 2, 3, 4, 5].map((seq) => ({ seq })));
  for (const { meta } of got) {
    assert.equal(meta?.stream, stream, "stream_id names the stream");
    assert.equal(typeof meta.epoch, "string");
    assert.ok(meta.epoch.length > 0);
    assert.equal(meta.epoch, got[0].meta.epoch, "one epoch");
    assert.ok(Number.isInteger(meta.offset) && meta.offset > 0, `offset ${meta.offset}`);
  }
  const offs = got.map((g) => g.meta.offset);
  for (let i = 1; i < offs.length; i++) assert.equal(offs[i], offs[i - 1] + 1, `consecutive offsets: ${offs}`);

  // A second session gets a different id.
  const other = anycable(server.ws);
  cleanup.push(() => other.disconnect());
  await other.connect();
  assert.notEqual(other.sessionId, cable.sessionId);
});

test("reconnect through a proxy that cuts the TCP connection: missed messages arrive in order, exactly once", { timeout: 30000 }, async () => {
  const proxy = await startProxy(server.port);
  cleanup.push(() => proxy.close());
  const cable = anycable(proxy.ws);
  cleanup.push(() => cable.disconnect());
  await cable.connect();
  const sid1 = cable.sessionId;
  assert.ok(sid1, "a session id");

  const stream = uniq("rel-cut");
  const ch = cable.streamFrom(stream);
  const got = collect(ch);
  await subscribed(cable, ch);
  // A second channel on the same connection, also restored.
  const stream2 = uniq("rel-cut2");
  const ch2 = cable.streamFrom(stream2);
  const got2 = collect(ch2);
  await subscribed(cable, ch2);

  for (let i = 1; i <= 3; i++) await server.publish(stream, { seq: i });
  await waitFor(() => got.length >= 3, { what: "the first 3 messages" });

  const disconnected = nextEvent(cable, "disconnect", { ms: 8000 });
  proxy.cut();
  await disconnected;
  assert.notEqual(cable.state, "connected");

  // Published while the client cannot reach the server.
  for (let i = 4; i <= 8; i++) await server.publish(stream, { seq: i });
  await server.publish(stream2, { seq: "b1" });
  await sleep(400); // let the client fail a reconnect attempt or two against the closed proxy

  const reconnected = nextEvent(cable, "connect", { ms: 10000 });
  proxy.restore();
  const ev = await reconnected;
  assert.equal(cable.state, "connected");
  assert.equal(ev.reconnect, true, "a reconnect");
  // Either the server restored the session (restored: true, the client asks
  // for the history of each restored subscription) or the client
  // resubscribed asking for history since its last offsets. Both must
  // deliver 4..8 exactly once.
  console.log(`# reconnect: restored=${!!ev.restored} sid ${sid1} -> ${cable.sessionId}`);

  await waitFor(() => got.length >= 8 && got2.length >= 1, { ms: 8000, what: `messages 4..8 after the reconnect (have ${got.length})` });
  assert.equal(await historyAnswer(cable, ch), "confirm_history");
  assert.equal(await historyAnswer(cable, ch2), "confirm_history");
  await server.publish(stream, { seq: 9 }); // live again
  await waitFor(() => got.length >= 9, { what: "message 9" });
  await sleep(300);
  assert.deepEqual(got.map((g) => g.msg.seq), [1, 2, 3, 4, 5, 6, 7, 8, 9], "in order, exactly once");
  assert.deepEqual(got2.map((g) => g.msg), [{ seq: "b1" }]);
  const offs = got.map((g) => g.meta.offset);
  for (let i = 1; i < offs.length; i++) assert.equal(offs[i], offs[i - 1] + 1, `consecutive offsets ${offs}`);
  assert.equal(new Set(got.map((g) => g.meta.epoch)).size, 1, "one epoch");
});

test("session restore: the server restores the session by sid (no resubscribe)", { timeout: 30000, skip: requires("session-restore") }, async () => {
  const proxy = await startProxy(server.port);
  cleanup.push(() => proxy.close());
  const cable = anycable(proxy.ws);
  cleanup.push(() => cable.disconnect());
  const stream = uniq("restore");
  const ch = cable.streamFrom(stream);
  const got = collect(ch);
  await subscribed(cable, ch);
  await server.publish(stream, { seq: 1 });
  await waitFor(() => got.length >= 1, { what: "message 1" });

  // Count the subscribe commands the client sends from now on.
  const sent = [];
  const origSend = cable.send.bind(cable);
  cable.send = (msg) => { sent.push(msg); return origSend(msg); };

  const disconnected = nextEvent(cable, "disconnect", { ms: 8000 });
  proxy.cut();
  await disconnected;
  await server.publish(stream, { seq: 2 });
  await server.publish(stream, { seq: 3 });
  const reconnected = nextEvent(cable, "connect", { ms: 10000 });
  proxy.restore();
  const ev = await reconnected;
  assert.equal(ev.restored, true, "welcome with restored: true");
  await waitFor(() => got.length >= 3, { what: "messages 2 and 3 from history" });
  assert.equal(await historyAnswer(cable, ch), "confirm_history");
  await sleep(300);
  assert.deepEqual(got.map((g) => g.msg.seq), [1, 2, 3]);
  assert.deepEqual(sent.filter((m) => m.command === "subscribe"), [], "restored, not resubscribed");
  assert.ok(sent.some((m) => m.command === "history" && m.identifier === ch.identifier), "asked for the history of the restored subscription");
});

test("history that cannot be served (unknown epoch) is rejected, the subscription stays live", { timeout: 15000 }, async () => {
  const cable = anycable(server.ws);
  cleanup.push(() => cable.disconnect());
  await cable.connect();
  // The answer is read off the wire (cable.wire): the client maps
  // reject_history to a channel 'info' event only once the confirmation has
  // been processed, which races with a reject_history in the same read.
  const stream = uniq("badepoch");
  // Pretend we saw offset 1 in an epoch the server never had: the ext
  // protocol's subscribe then carries history.streams[stream] = {epoch, offset}.
  const ch = cable.streamFrom(stream);
  cable.protocol.subscriptionStreams[ch.identifier] = new Set([stream]);
  cable.protocol.streamsPositions[stream] = { epoch: "no-such-epoch", offset: 1 };
  const got = collect(ch);
  assert.equal(await subscribed(cable, ch), "reject_history");
  await server.publish(stream, { seq: 1 });
  await waitFor(() => got.length >= 1, { what: "a live message" });
  assert.deepEqual(got[0].msg, { seq: 1 });
});

test("no session restore (client opts out): resubscribe with history from the last offset fills the gap exactly once", { timeout: 30000 }, async () => {
  const proxy = await startProxy(server.port);
  cleanup.push(() => proxy.close());
  const cable = anycable(proxy.ws, { protocolOptions: { disableSessionRecovery: true } });
  cleanup.push(() => cable.disconnect());
  const stream = uniq("resub");
  const ch = cable.streamFrom(stream);
  const got = collect(ch);
  await subscribed(cable, ch);
  for (let i = 1; i <= 2; i++) await server.publish(stream, { seq: i });
  await waitFor(() => got.length >= 2, { what: "messages 1, 2" });

  const sent = [];
  const origSend = cable.send.bind(cable);
  cable.send = (msg) => { sent.push(msg); return origSend(msg); };
  const disconnected = nextEvent(cable, "disconnect", { ms: 8000 });
  proxy.cut();
  await disconnected;
  for (let i = 3; i <= 6; i++) await server.publish(stream, { seq: i });
  const reconnected = nextEvent(cable, "connect", { ms: 10000 });
  proxy.restore();
  const ev = await reconnected;
  assert.equal(!!ev.restored, false, "a fresh session");
  await waitFor(() => got.length >= 6, { what: `messages 3..6 from history (have ${got.length})` });
  assert.equal(await historyAnswer(cable, ch), "confirm_history");
  await server.publish(stream, { seq: 7 });
  await waitFor(() => got.length >= 7, { what: "message 7" });
  await sleep(300);
  assert.deepEqual(got.map((g) => g.msg.seq), [1, 2, 3, 4, 5, 6, 7]);
  const sub = sent.find((m) => m.command === "subscribe" && m.identifier === ch.identifier);
  assert.ok(sub, "the client resubscribed");
  assert.equal(sub.history?.streams?.[stream]?.offset, got[1].meta.offset, "asking for history after the last offset seen");
});

test("broadcasts racing a subscription's history replay are delivered exactly once, in order", { timeout: 30000, skip: requires("ordered-history-handoff") }, async () => {
  // The ext-json subscribe asks for history since the client started; a
  // broadcast published between the subscription going live and the replay
  // must come once, either live or from history, not both. Several
  // subscribers join while a publisher keeps publishing.
  const stream = uniq("race");
  let sent = 0;
  let stop = false;
  const publisher = (async () => { while (!stop && sent < 2000) await server.publish(stream, { seq: ++sent }); })();
  const subs = [];
  try {
    for (let i = 0; i < 8; i++) {
      await sleep(40);
      const cable = anycable(server.ws);
      cleanup.push(() => cable.disconnect());
      const ch = cable.streamFrom(stream);
      const got = collect(ch);
      subs.push({ cable, ch, got });
      await subscribed(cable, ch);
    }
    await sleep(100);
  } finally {
    stop = true;
    await publisher;
  }
  await waitFor(() => subs.every((s) => s.got.at(-1)?.msg.seq === sent), { ms: 8000, what: `every subscriber reaching seq ${sent}` });
  await sleep(200);
  for (const [i, { got }] of subs.entries()) {
    const seqs = got.map((g) => g.msg.seq);
    const dups = seqs.filter((v, j) => seqs.indexOf(v) !== j);
    assert.deepEqual(dups, [], `subscriber ${i}: duplicates`);
    for (let j = 1; j < seqs.length; j++) assert.equal(seqs[j], seqs[j - 1] + 1, `subscriber ${i}: in order without gaps at ${j}: ${seqs.slice(Math.max(0, j - 3), j + 3)}`);
  }
});
