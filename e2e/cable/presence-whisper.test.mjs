// Presence (join / leave / info) and whispers through @anycable/core's
// channel API (actioncable-v1-ext-json) on $pubsub streams.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { requires, startServer, secrets } from "./helpers/server.mjs";
import { anycable, subscribed } from "./helpers/cable.mjs";
import { nextEvent, signStream, sleep, uniq, waitFor } from "./helpers/util.mjs";

let server;
const cables = [];
before(async () => { server = await startServer(); });
after(async () => { for (const c of cables) c.disconnect(); await server?.stop(); });

async function join(stream, { signed = false } = {}) {
  const cable = anycable(server.ws);
  cables.push(cable);
  await cable.connect();
  const ch = signed ? cable.streamFromSigned(signStream(stream, secrets.streams)) : cable.streamFrom(stream);
  const messages = [];
  const presence = [];
  ch.on("message", (m) => messages.push(m));
  ch.on("presence", (e) => presence.push(e));
  await subscribed(cable, ch);
  return { cable, ch, messages, presence };
}

for (const signed of [false, true]) {
  const kindName = signed ? "signed stream" : "public stream";

  test(`whispers (${kindName}) reach the others, never the sender`, { timeout: 15000 }, async () => {
    const stream = uniq("wh");
    const [alice, bob, carol] = [await join(stream, { signed }), await join(stream, { signed }), await join(stream, { signed })];
    const elsewhere = await join(uniq("wh-other"), { signed });
    await alice.ch.whisper({ event: "typing", user: "alice" });
    // Whispers from two connections have no mutual order: wait for the first.
    await waitFor(() => carol.messages.length >= 1, { what: "alice's whisper at carol" });
    await bob.ch.whisper({ event: "typing", user: "bob" });
    await waitFor(() => carol.messages.length >= 2 && alice.messages.length >= 1 && bob.messages.length >= 1, { what: "whispers delivered" });
    await sleep(300);
    assert.deepEqual(carol.messages, [{ event: "typing", user: "alice" }, { event: "typing", user: "bob" }]);
    assert.deepEqual(bob.messages, [{ event: "typing", user: "alice" }], "bob gets alice's, not his own");
    assert.deepEqual(alice.messages, [{ event: "typing", user: "bob" }], "alice gets bob's, not her own");
    assert.deepEqual(elsewhere.messages, [], "another stream hears nothing");
    // Broadcasts still reach everyone, the whisperer included.
    await server.publish(stream, { from: "server" });
    await waitFor(() => [alice, bob, carol].every((u) => u.messages.some((m) => m.from === "server")), { what: "a broadcast to all three" });
  });

  test(`presence (${kindName}): join, info, leave; a closed connection leaves`, { timeout: 20000 }, async () => {
    const stream = uniq("pr");
    const alice = await join(stream, { signed });
    const bob = await join(stream, { signed });
    assert.deepEqual(await bob.ch.presence.info(), {}, "nobody there yet");
    bob.ch.presence.reset();

    await alice.ch.presence.join("user-a", { name: "Alice" });
    const j = await waitFor(() => bob.presence.find((e) => e.type === "join"), { what: "bob sees alice join" });
    assert.deepEqual({ id: j.id, info: j.info }, { id: "user-a", info: { name: "Alice" } });
    assert.deepEqual(await bob.ch.presence.info(), { "user-a": { name: "Alice" } });
    bob.ch.presence.reset();

    await bob.ch.presence.join("user-b", { name: "Bob" });
    await waitFor(() => alice.presence.some((e) => e.type === "join" && e.id === "user-b"), { what: "alice sees bob join" });
    const info = await alice.ch.presence.info();
    assert.deepEqual(info, { "user-a": { name: "Alice" }, "user-b": { name: "Bob" } });

    await alice.ch.presence.leave();
    const l = await waitFor(() => bob.presence.find((e) => e.type === "leave" && e.id === "user-a"), { what: "bob sees alice leave" });
    assert.equal(l.id, "user-a");
    bob.ch.presence.reset();
    assert.deepEqual(await bob.ch.presence.info(), { "user-b": { name: "Bob" } });

    // Bob's connection closes: alice sees him leave (a server may wait a
    // short while for the session to come back: anycable-go waits
    // --presence_ttl, 2 s here).
    const left = nextEvent(alice.ch, "presence", { ms: 10000, filter: (e) => e.type === "leave" && e.id === "user-b" });
    bob.cable.disconnect();
    await left;
    alice.ch.presence.reset();
    assert.deepEqual(await alice.ch.presence.info(), {});
  });

  test(`presence (${kindName}): the same id on two connections is one member until both leave`, { timeout: 20000, skip: requires("presence-id-dedupe") }, async () => {
    const stream = uniq("pr2");
    const alice = await join(stream, { signed });
    const bob = await join(stream, { signed });
    await alice.ch.presence.join("user-a", { name: "Alice" });
    await waitFor(() => bob.presence.some((e) => e.type === "join" && e.id === "user-a"), { what: "bob sees alice join" });
    const alice2 = await join(stream, { signed });
    await alice2.ch.presence.join("user-a", { name: "Alice" });
    await sleep(300);
    bob.ch.presence.reset();
    assert.deepEqual(Object.keys(await bob.ch.presence.info()).sort(), ["user-a"]);
    bob.presence.length = 0;
    await alice2.ch.presence.leave();
    await sleep(300);
    assert.ok(!bob.presence.some((e) => e.type === "leave"), "user-a is still there on the first connection");
  });
}
