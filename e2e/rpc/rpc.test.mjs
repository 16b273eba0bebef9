// /cable with an AnyCable RPC backend: a real @anycable/serverless-js
// application (helpers/backend.mjs) answers the server's HTTP RPC
// (connect / command / disconnect); @anycable/core clients talk to /cable.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { startServer, secrets } from "./helpers/server.mjs";
import { startBackend } from "./helpers/backend.mjs";
import { anycable, subscribed, messagesOnWire } from "./helpers/cable.mjs";
import { nextEvent, sleep, uniq, waitFor, within } from "./helpers/util.mjs";

let server, backend;
const cables = [];
before(async () => {
  backend = await startBackend({ secret: secrets.rpc, broadcastKey: secrets.broadcastKey });
  server = await startServer({ rpcUrl: backend.url });
  backend.setBroadcast(server.broadcastURL);
});
after(async () => {
  for (const c of cables) { try { c.disconnect(); } catch {} }
  await server?.stop();
  await backend?.stop();
});

/** A client for `user` (token tok-<user> in the URL); `token: null` sends none. */
function client(user, { token = user && `tok-${user}`, query, ...opts } = {}) {
  const url = query !== undefined ? `${server.ws}${query}` : token ? `${server.ws}?token=${encodeURIComponent(token)}` : server.ws;
  const c = anycable(url, opts);
  cables.push(c);
  return c;
}

/** Connects `user`, subscribes ChatChannel {room}, records its messages in ch.got. */
async function join(user, room, opts) {
  const cable = opts?.cable || client(user, opts);
  if (!opts?.cable) await within(cable.connect(), 5000, `${user} connecting`);
  const ch = cable.subscribeTo("ChatChannel", { room });
  ch.got = [];
  ch.on("message", (m) => ch.got.push(m));
  await subscribed(cable, ch);
  return { cable, ch };
}

/** Performs whoami and resolves with the caller's reply (n > after). */
async function whoami(ch, data = {}) {
  const before = ch.got.length;
  await ch.perform("whoami", data);
  return waitFor(() => ch.got.slice(before).find((m) => m.whoami !== undefined), { what: "the whoami reply" });
}

const rejectedConnects = (pred) => backend.state.exchanges.filter((e) => e.method === "connect" && pred(e.request?.env?.url || ""));

test("connect: no token or a bad token is refused by the app: disconnect 'unauthorized', never welcomed, socket closed", { timeout: 20000 }, async () => {
  const cases = [["no token", ""], ["bad token", "?token=bad"], ["malformed token", "?token=nope-1"]];
  for (const [what, query] of cases) {
    // @anycable/core: connect() fails with reason "unauthorized". The app's
    // {"type":"disconnect","reason":"unauthorized"} has no reconnect:false,
    // so the client reports a 'disconnect' (not a 'close'); monitor: false
    // keeps it from retrying.
    const cable = client(null, { query, monitor: false });
    const gone = Promise.race([nextEvent(cable, "disconnect", { ms: 8000 }), nextEvent(cable, "close", { ms: 8000 })]);
    const err = await within(cable.connect(), 8000, `${what} connect`).then(() => null, (e) => e);
    assert.ok(err, `${what}: connect() must fail`);
    assert.equal(err?.reason, "unauthorized", what);
    assert.equal((await gone)?.reason, "unauthorized", what);
    assert.ok(!cable.wire.some((m) => m.type === "welcome"), `${what}: no welcome on the wire`);
    assert.notEqual(cable.state, "connected", what);
  }
  // Raw WebSocket, both protocols: exactly the app's disconnect frame, then the server closes the socket.
  for (const proto of ["actioncable-v1-ext-json", "actioncable-v1-json"]) {
    for (const [what, query] of cases) {
      const ws = new WebSocket(`${server.ws}${query}`, [proto]);
      const frames = [];
      ws.on("message", (d) => frames.push(JSON.parse(d.toString())));
      ws.on("error", () => {});
      const closed = await within(new Promise((r) => ws.on("close", (code) => r(code))), 5000, `the server closing a refused socket (${what}, ${proto})`)
        .catch((e) => { ws.terminate(); throw e; });
      assert.ok(closed >= 1000, `${what} ${proto}: close code ${closed}`);
      assert.deepEqual(frames.map(({ type, reason }) => ({ type, reason })), [{ type: "disconnect", reason: "unauthorized" }], `${what} ${proto}`);
    }
  }
  // The server asked the backend each time (and the backend said FAILURE).
  const asked = rejectedConnects((u) => /[?&]token=(bad|nope-1)\b/.test(u));
  assert.ok(asked.length >= 6, `connect RPCs for the bad tokens reached the backend (${asked.length})`);
  for (const e of asked) assert.equal(e.response.status, 2);
  // A refused connection is not handed to the app's Disconnect.
  await sleep(300);
  assert.ok(!backend.state.exchanges.some((e) => e.method === "disconnect" && !e.request?.identifiers), "no Disconnect for refused connections");
});

test("connect: the token may come in a Cookie header (env.headers.cookie)", { timeout: 15000 }, async () => {
  class CookieWS extends WebSocket {
    constructor(url, protocols) { super(url, protocols, { headers: { cookie: "theme=dark; token=tok-cookiemonster" } }); }
  }
  const { cable, ch } = await join(null, uniq("cookie"), { token: null, websocketImplementation: CookieWS });
  assert.equal(cable.state, "connected");
  assert.equal((await whoami(ch)).whoami, "cookiemonster");
});

test("identifiers from connect reach commands: whoami answers each caller with its own user id", { timeout: 15000 }, async () => {
  const room = uniq("ids");
  const alice = await join("alice", room);
  const bob = await join("bob", room);
  assert.equal((await whoami(alice.ch, { echo: "a1" })).whoami, "alice");
  assert.equal((await whoami(bob.ch, { echo: "b1" })).whoami, "bob");
  const a = await whoami(alice.ch, { echo: "a2" });
  assert.deepEqual({ whoami: a.whoami, echo: a.echo }, { whoami: "alice", echo: "a2" });
});

test("channel state set in subscribe is seen by later actions, per subscription, also for pipelined actions", { timeout: 15000 }, async () => {
  const roomA = uniq("state-a"), roomB = uniq("state-b");
  const { cable, ch: a } = await join("carol", roomA);
  const { ch: b } = await join("carol", roomB, { cable });
  // Sequential round-trips: the state written by each command comes back on the next one.
  assert.deepEqual(await whoami(a), { whoami: "carol", room: roomA, n: 1, echo: null });
  assert.deepEqual(await whoami(a), { whoami: "carol", room: roomA, n: 2, echo: null });
  assert.deepEqual(await whoami(b), { whoami: "carol", room: roomB, n: 1, echo: null }, "the other subscription has its own state");
  // Five actions sent back to back: each sees the state the previous one left.
  const before = a.got.length;
  for (let i = 0; i < 5; i++) a.perform("whoami", { echo: i });
  await waitFor(() => a.got.length - before >= 5, { what: "5 pipelined whoami replies" });
  assert.deepEqual(a.got.slice(before).map((m) => [m.n, m.echo]), [[3, 0], [4, 1], [5, 2], [6, 3], [7, 4]]);
  // Another connection of the same user starts from the subscribe state.
  const other = await join("carol", roomA);
  assert.equal((await whoami(other.ch)).n, 1);
});

for (const protocol of ["actioncable-v1-ext-json", "actioncable-v1-json"]) {
  test(`perform speak -> broadcast reaches every subscriber of the room (speaker included), in order, only that room [${protocol}]`, { timeout: 15000 }, async () => {
    const room = uniq("speak");
    const alice = await join("alice", room, { protocol });
    const bob = await join("bob", room, { protocol });
    const dan = await join("dan", room, { protocol });
    const elsewhere = await join("eve", uniq("other-room"), { protocol });
    const N = 10;
    for (let i = 0; i < N; i++) alice.ch.perform("speak", { text: `m${i}` });
    const want = Array.from({ length: N }, (_, i) => ({ user: "alice", text: `m${i}` }));
    for (const [name, s] of [["alice", alice], ["bob", bob], ["dan", dan]]) {
      await waitFor(() => s.ch.got.length >= N, { what: `${N} messages at ${name} (${protocol})` });
    }
    await bob.ch.perform("speak", { text: "from-bob" });
    for (const [name, s] of [["alice", alice], ["bob", bob], ["dan", dan]]) {
      await waitFor(() => s.ch.got.length >= N + 1, { what: `bob's message at ${name}` });
    }
    await sleep(150);
    for (const [name, s] of [["alice", alice], ["bob", bob], ["dan", dan]]) {
      assert.deepEqual(s.ch.got, [...want, { user: "bob", text: "from-bob" }], `${name} (${protocol})`);
    }
    assert.deepEqual(elsewhere.ch.got, [], "another room gets nothing");
  });
}

test("two channels of one connection following the same stream both receive it; after one leaves, the other still does", { timeout: 15000 }, async () => {
  const room = uniq("shared");
  const alice = await join("alice", room);
  const tab2 = alice.cable.subscribeTo("ChatChannel", { room, tab: 2 }); // another identifier, the same chat:<room> stream
  tab2.got = [];
  tab2.on("message", (m) => tab2.got.push(m));
  await subscribed(alice.cable, tab2);
  const bob = await join("bob", room);
  await bob.ch.perform("speak", { text: "both" });
  await waitFor(() => alice.ch.got.length >= 1 && tab2.got.length >= 1, { what: "the broadcast on both of alice's channels" });
  assert.deepEqual(alice.ch.got, [{ user: "bob", text: "both" }]);
  assert.deepEqual(tab2.got, [{ user: "bob", text: "both" }]);
  await alice.ch.disconnect();
  await waitFor(() => backend.state.unsubscribed.some((u) => u.user === "alice" && u.room === room), { what: "the app's unsubscribed" });
  await bob.ch.perform("speak", { text: "one" });
  await waitFor(() => tab2.got.length >= 2, { what: "the second broadcast on the channel left" });
  await sleep(150);
  assert.deepEqual(tab2.got, [{ user: "bob", text: "both" }, { user: "bob", text: "one" }]);
  assert.deepEqual(alice.ch.got, [{ user: "bob", text: "both" }], "the channel that left gets nothing more");
});

test("transmit goes to the caller only: the room's other subscribers get nothing", { timeout: 15000 }, async () => {
  const room = uniq("transmit");
  const alice = await join("alice", room);
  const bob = await join("bob", room);
  const alice2 = await join("alice", room); // the same user on another connection
  const reply = await whoami(alice.ch, { echo: "secret" });
  assert.equal(reply.echo, "secret");
  // A broadcast after the transmit is the sync point: once it arrived, an
  // earlier transmit to the wrong connection would have arrived too.
  await alice.ch.perform("speak", { text: "sync" });
  for (const s of [bob, alice2]) await waitFor(() => s.ch.got.length >= 1, { what: "the sync broadcast" });
  await sleep(100);
  for (const [name, s] of [["bob", bob], ["alice's other connection", alice2]]) {
    assert.deepEqual(s.ch.got, [{ user: "alice", text: "sync" }], name);
    assert.ok(!messagesOnWire(s.cable, s.ch.identifier).some((m) => m.whoami !== undefined), `${name}: no whoami reply on the wire`);
  }
});

test("subscribe to room 'forbidden' is rejected; the connection stays usable", { timeout: 15000 }, async () => {
  const cable = client("frank");
  await cable.connect();
  const ch = cable.subscribeTo("ChatChannel", { room: "forbidden" });
  const got = [];
  ch.on("message", (m) => got.push(m));
  await assert.rejects(within(ch.ensureSubscribed(), 5000, "forbidden subscribe"));
  assert.ok(cable.wire.some((m) => m.type === "reject_subscription" && m.identifier === ch.identifier), "reject_subscription on the wire");
  assert.ok(!cable.wire.some((m) => m.type === "confirm_subscription" && m.identifier === ch.identifier), "never confirmed");
  // No stream was attached: a broadcast to chat:forbidden does not arrive.
  const ok = await join("frank", uniq("after-forbidden"), { cable });
  await postBroadcast("chat:forbidden", { user: "x", text: "leak" });
  await ok.ch.perform("speak", { text: "still-here" });
  await waitFor(() => ok.ch.got.length === 1, { what: "a broadcast on the allowed room" });
  await sleep(150);
  assert.deepEqual(got, []);
  assert.ok(!cable.wire.some((m) => m.message?.text === "leak"), "nothing from chat:forbidden on the wire");
  assert.equal(cable.state, "connected");
});

test("stopStreamFrom: after 'leave', the room's broadcasts no longer arrive (other streams still do)", { timeout: 15000 }, async () => {
  const room = uniq("leave"), other = uniq("leave-other");
  const alice = await join("alice", room);
  const bob = await join("bob", room);
  const bobOther = await join("bob", other, { cable: bob.cable });
  await alice.ch.perform("speak", { text: "before" });
  await waitFor(() => bob.ch.got.length === 1, { what: "'before' at bob" });
  await bob.ch.perform("leave");
  await waitFor(() => bob.ch.got.some((m) => m.left === room), { what: "the leave acknowledgement" });
  await alice.ch.perform("speak", { text: "after" });
  await waitFor(() => alice.ch.got.some((m) => m.text === "after"), { what: "'after' at alice" });
  await bobOther.ch.perform("speak", { text: "other-room" });
  await waitFor(() => bobOther.ch.got.length === 1, { what: "bob's other room still streaming" });
  await sleep(200);
  assert.deepEqual(bob.ch.got, [{ user: "alice", text: "before" }, { left: room }]);
  assert.ok(!messagesOnWire(bob.cable, bob.ch.identifier).some((m) => m.text === "after"), "'after' not on bob's wire");
  assert.deepEqual(bobOther.ch.got, [{ user: "bob", text: "other-room" }]);
});

test("disconnect: the app's Disconnect sees the user id after the client goes away", { timeout: 15000 }, async () => {
  const user = `gone${Math.random().toString(36).slice(2, 8)}`;
  const room = uniq("bye");
  const { cable } = await join(user, room);
  assert.ok(!(await backend.disconnected()).includes(user));
  cable.disconnect();
  await waitFor(async () => (await backend.disconnected()).includes(user), { ms: 5000, what: `Disconnect for ${user}` });
  await sleep(300);
  assert.equal((await backend.disconnected()).filter((u) => u === user).length, 1, "Disconnect called once");
  assert.ok(backend.state.unsubscribed.some((u) => u.user === user && u.room === room), "its subscription was passed to Disconnect (unsubscribed hook ran)");
});

test("50 concurrent clients connect, subscribe and each receives a broadcast", { timeout: 30000 }, async () => {
  const room = uniq("crowd");
  const n = 50;
  const all = await within(Promise.all(Array.from({ length: n }, (_, i) => join(`u${i}`, room))), 20000, `${n} joins`);
  await all[0].ch.perform("speak", { text: "hello crowd" });
  await waitFor(() => all.every((s) => s.ch.got.length >= 1), { ms: 10000, what: `the broadcast at all ${n} clients` });
  await sleep(100);
  for (const [i, s] of all.entries()) assert.deepEqual(s.ch.got, [{ user: "u0", text: "hello crowd" }], `client u${i}`);
  for (const s of all) s.cable.disconnect();
});

test("the backend saw only authenticated RPC requests and raised no errors", () => {
  assert.equal(backend.state.unauthorized, 0, "RPC requests without Authorization: Bearer <rpc secret>");
  assert.deepEqual(backend.state.errors, []);
  const methods = new Set(backend.state.exchanges.map((e) => e.method));
  assert.deepEqual([...methods].sort(), ["command", "connect", "disconnect"]);
});

/** POST /_broadcast directly (not through the app). */
async function postBroadcast(stream, data) {
  const res = await fetch(server.broadcastURL, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${secrets.broadcastKey}` },
    body: JSON.stringify({ stream, data: JSON.stringify(data) }),
    signal: AbortSignal.timeout(5000),
  });
  assert.ok(res.ok, `POST /_broadcast: ${res.status}`);
}
