// Rails' own client, @rails/actioncable 8.x (subprotocol actioncable-v1-json),
// against /cable: connect, subscribe to a public $pubsub stream, receive
// broadcasts in order and exactly once; unsubscribe stops delivery.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import ActionCable from "@rails/actioncable";
import { startServer } from "./helpers/server.mjs";
import { sleep, uniq, waitFor, within } from "./helpers/util.mjs";

// Node has no browser globals: the client takes its WebSocket from
// adapters and its monitor listens for visibilitychange on the global.
// The WebSocket records every frame it receives, so the tests can check the
// wire too (Rails' client silently drops messages for identifiers it no
// longer knows).
const frames = [];
class RecordingWebSocket extends WebSocket {
  constructor(...args) {
    super(...args);
    this.on("message", (data) => frames.push({ ws: this, msg: JSON.parse(String(data)) }));
  }
}
ActionCable.adapters.WebSocket = RecordingWebSocket;
globalThis.addEventListener ??= () => {};
globalThis.removeEventListener ??= () => {};

let server;
const consumers = [];
before(async () => { server = await startServer(); });
after(async () => { for (const c of consumers) c.disconnect(); await server?.stop(); });

function consumer() {
  const c = ActionCable.createConsumer(server.ws);
  consumers.push(c);
  return c;
}

function subscribe(c, params) {
  const got = [];
  let state = "pending";
  const sub = c.subscriptions.create(params, {
    connected() { state = "connected"; },
    rejected() { state = "rejected"; },
    received(data) { got.push(data); },
  });
  return { sub, got, state: () => state };
}

test("plain Action Cable: subscribe $pubsub, broadcasts in order exactly once, unsubscribe stops delivery", { timeout: 20000 }, async () => {
  const stream = uniq("ac-room");
  const c = consumer();
  // Two subscribers on one connection and one on another: each gets every message once.
  const a = subscribe(c, { channel: "$pubsub", stream_name: stream });
  const other = subscribe(c, { channel: "$pubsub", stream_name: uniq("ac-other") });
  const c2 = consumer();
  const b = subscribe(c2, { channel: "$pubsub", stream_name: stream });
  await waitFor(() => [a, b, other].every((s) => s.state() === "connected"), { what: "confirm_subscription" });
  assert.equal(c.connection.getProtocol(), "actioncable-v1-json");

  const N = 20;
  for (let i = 1; i <= N; i++) await server.publish(stream, { seq: i, text: `m${i}` });
  const want = Array.from({ length: N }, (_, i) => ({ seq: i + 1, text: `m${i + 1}` }));
  await waitFor(() => a.got.length >= N && b.got.length >= N, { what: `${N} messages on both connections` });
  await sleep(300); // anything extra (a duplicate) would show up here
  assert.deepEqual(a.got, want);
  assert.deepEqual(b.got, want);
  assert.deepEqual(other.got, [], "a different stream receives nothing");

  // Unsubscribe a: b still receives, a does not. Action Cable does not
  // acknowledge an unsubscribe; a subscribe sent after it on the same
  // connection and confirmed is the sync point.
  a.sub.unsubscribe();
  const marker = subscribe(c, { channel: "$pubsub", stream_name: uniq("ac-marker") });
  await waitFor(() => marker.state() === "connected", { what: "the marker subscription" });
  const mark = frames.length;
  await server.publish(stream, { seq: N + 1 });
  await waitFor(() => b.got.length === N + 1, { what: "the message after a's unsubscribe on b" });
  await sleep(300);
  assert.equal(a.got.length, N, "no delivery after unsubscribe");
  const ws = c.connection.webSocket;
  const forA = (f) => f.ws === ws && f.msg.identifier === a.sub.identifier && f.msg.message !== undefined;
  assert.equal(frames.slice(0, mark).filter(forA).length, N, "the wire carried a's messages once each");
  const late = frames.slice(mark).filter(forA);
  assert.deepEqual(late, [], "the server sent nothing for the unsubscribed identifier");
  assert.deepEqual(b.got.at(-1), { seq: N + 1 });
});

test("plain Action Cable: data is delivered as sent (strings, numbers, nested objects)", { timeout: 10000 }, async () => {
  const stream = uniq("ac-types");
  const c = consumer();
  const s = subscribe(c, { channel: "$pubsub", stream_name: stream });
  await waitFor(() => s.state() === "connected", { what: "confirm_subscription" });
  const values = ["plain text", 42, { nested: { list: [1, "two", null], ok: true } }, "ünïcødé ✓"];
  for (const v of values) await server.publish(stream, v);
  await waitFor(() => s.got.length >= values.length, { what: "all values" });
  await sleep(200);
  assert.deepEqual(s.got, values);
});

test("plain Action Cable: an unknown channel is rejected", { timeout: 10000 }, async () => {
  const c = consumer();
  const s = subscribe(c, { channel: "NoSuchChannel", room: "x" });
  await within(waitFor(() => s.state() !== "pending", { what: "an answer to the subscribe" }), 8000);
  assert.equal(s.state(), "rejected");
});

test("POST /_broadcast needs the broadcast key", { timeout: 10000 }, async () => {
  const { publishStatus, secrets } = await import("./helpers/server.mjs");
  assert.ok([401, 403].includes(await publishStatus(server.http, "x", 1, { key: null })), "no key");
  assert.ok([401, 403].includes(await publishStatus(server.http, "x", 1, { key: secrets.broadcastKey + "x" })), "wrong key");
  assert.ok([200, 201, 202, 204].includes(await publishStatus(server.http, "x", 1)), "right key");
});
