// Signed stream names (signed_stream_name, Rails MessageVerifier format),
// rejected subscriptions, and JWT identification (?jid=, HS256, `ext` claim)
// with token expiry and @anycable/core's tokenRefresher.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { startServer, secrets } from "./helpers/server.mjs";
import { anycable, subscribed } from "./helpers/cable.mjs";
import { jwt, nextEvent, signStream, sleep, uniq, waitFor } from "./helpers/util.mjs";

let server;
const cables = [];
before(async () => { server = await startServer(); });
after(async () => { for (const c of cables) c.disconnect(); await server?.stop(); });

function cableFor(url = server.ws, opts) {
  const c = anycable(url, opts);
  cables.push(c);
  return c;
}

/** Subscribes and resolves "confirmed" or "rejected" (never hangs). */
async function outcome(cable, ch) {
  try { await subscribed(cable, ch); return "confirmed"; } catch (e) {
    if (/reject|forbidden|unauthorized/i.test(`${e?.reason} ${e?.message}`) || ch.state === "closed") return "rejected";
    throw e;
  }
}

test("signed stream: a valid signature subscribes and receives broadcasts (ext-json and the plain protocol)", { timeout: 15000 }, async () => {
  for (const protocol of ["actioncable-v1-ext-json", "actioncable-v1-json"]) {
    const name = uniq("signed-room");
    const cable = cableFor(server.ws, { protocol });
    const ch = cable.streamFromSigned(signStream(name, secrets.streams));
    const got = [];
    ch.on("message", (m) => got.push(m));
    assert.equal(await outcome(cable, ch), "confirmed", protocol);
    await server.publish(name, { n: 1 });
    await server.publish(name, { n: 2 });
    await waitFor(() => got.length >= 2, { what: `2 messages on the signed stream (${protocol})` });
    await sleep(200);
    assert.deepEqual(got, [{ n: 1 }, { n: 2 }]);
  }
});

test("signed stream: bad signatures, another secret, a tampered name and an unsigned name are rejected", { timeout: 15000 }, async () => {
  const name = uniq("signed-bad");
  const good = signStream(name, secrets.streams);
  const [data, digest] = good.split("--");
  const otherName = Buffer.from(JSON.stringify(name + "-x")).toString("base64");
  const bads = {
    "flipped digest": `${data}--${digest.slice(0, -1)}${digest.at(-1) === "0" ? "1" : "0"}`,
    "another secret": signStream(name, "not-the-secret-0123456789abcdef-0123"),
    "tampered name, old digest": `${otherName}--${digest}`,
    "no digest": data,
    "plain name": name,
    "empty": "",
  };
  const cable = cableFor();
  const receivedOnBad = [];
  for (const [why, signed] of Object.entries(bads)) {
    const ch = cable.streamFromSigned(signed);
    ch.on("message", (m) => receivedOnBad.push(m));
    assert.equal(await outcome(cable, ch), "rejected", why);
  }
  // The connection is still fine: a good one works on it.
  const ch = cable.streamFromSigned(good);
  const got = [];
  ch.on("message", (m) => got.push(m));
  assert.equal(await outcome(cable, ch), "confirmed");
  await server.publish(name, "hello");
  await waitFor(() => got.length >= 1, { what: "the message on the good subscription" });
  await sleep(200);
  assert.deepEqual(got, ["hello"]);
  assert.deepEqual(receivedOnBad, []);
});

test("an unknown channel is rejected (no application backend serves it)", { timeout: 10000 }, async () => {
  const cable = cableFor();
  assert.equal(await outcome(cable, cable.subscribeTo("ChatChannel", { room: "1" })), "rejected");
  assert.equal(await outcome(cable, cable.subscribeTo("$pubsub", {})), "rejected", "$pubsub without a stream");
  assert.equal(cable.state, "connected", "the connection survives the rejections");
});

// --- JWT identification ---------------------------------------------------

const ids = (user) => JSON.stringify({ current_user: user });
const now = () => Math.floor(Date.now() / 1000);

test("JWT: a valid ?jid= token connects; a token with a bad signature is refused as unauthorized", { timeout: 15000 }, async () => {
  const good = jwt({ ext: ids("alice"), exp: now() + 60 }, secrets.jwt);
  const cable = cableFor(`${server.ws}?jid=${good}`);
  await cable.connect();
  assert.equal(cable.state, "connected");
  const stream = uniq("jwt-room");
  const ch = cable.streamFrom(stream);
  const got = [];
  ch.on("message", (m) => got.push(m));
  await subscribed(cable, ch);
  await server.publish(stream, { ok: 1 });
  await waitFor(() => got.length === 1, { what: "a broadcast on the JWT connection" });

  // Also through the client's auth option (same ?jid= parameter).
  const viaAuth = cableFor(server.ws, { auth: { token: jwt({ ext: ids("bob"), exp: now() + 60 }, secrets.jwt) } });
  await viaAuth.connect();
  assert.match(viaAuth.transport.url, /[?&]jid=/);

  const forged = jwt({ ext: ids("mallory"), exp: now() + 60 }, "some-other-secret-0123456789abcdef0123");
  const bad = cableFor(`${server.ws}?jid=${forged}`, { monitor: false });
  const closed = nextEvent(bad, "close", { ms: 8000 });
  await assert.rejects(bad.connect());
  const ev = await closed;
  assert.equal(ev?.reason, "unauthorized");
  assert.equal(bad.state, "closed", "a refused connection does not reconnect");

  const garbage = cableFor(`${server.ws}?jid=not.a.jwt`, { monitor: false });
  const closed2 = nextEvent(garbage, "close", { ms: 8000 });
  await assert.rejects(garbage.connect());
  assert.equal((await closed2)?.reason, "unauthorized");
});

test("JWT: an expired token is refused with token_expired; the tokenRefresher renews it and the client reconnects", { timeout: 15000 }, async () => {
  const expired = jwt({ ext: ids("alice"), iat: now() - 120, exp: now() - 60 }, secrets.jwt);
  let refreshed = 0;
  const cable = cableFor(`${server.ws}?jid=${expired}`, {
    tokenRefresher: async (transport) => {
      refreshed++;
      transport.setToken(jwt({ ext: ids("alice"), exp: now() + 60 }, secrets.jwt), "jid");
    },
  });
  const closed = nextEvent(cable, "close", { ms: 8000 });
  const connected = nextEvent(cable, "connect", { ms: 10000 });
  cable.connect().catch(() => {}); // the first attempt fails with token_expired
  const ev = await closed;
  assert.equal(ev?.reason, "token_expired");
  await connected;
  assert.equal(refreshed, 1, "the refresher ran once");
  assert.equal(cable.state, "connected");
  assert.doesNotMatch(cable.transport.url, new RegExp(expired.split(".")[2]), "the new token is in use");

  // Subscriptions work on the renewed connection.
  const stream = uniq("jwt-renewed");
  const ch = cable.streamFrom(stream);
  const got = [];
  ch.on("message", (m) => got.push(m));
  await subscribed(cable, ch);
  await server.publish(stream, "after-refresh");
  await waitFor(() => got.length === 1, { what: "a broadcast after the refresh" });
});

test("JWT: a token without an ext claim is not accepted", { timeout: 10000 }, async () => {
  const tok = jwt({ sub: "alice", exp: now() + 60 }, secrets.jwt);
  const cable = cableFor(`${server.ws}?jid=${tok}`, { monitor: false });
  await assert.rejects(cable.connect());
  assert.notEqual(cable.state, "connected");
});
