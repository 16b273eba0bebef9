// The msgpack dialects with a client encoder built on @msgpack/msgpack (the
// npm @anycable/msgpack-encoder is not served here): @anycable/core on
// actioncable-v1-ext-msgpack and actioncable-v1-msgpack receives broadcasts
// in order with their positions, and whispers travel between them.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { encode, decode } from "@msgpack/msgpack";
import { requires, startServer } from "./helpers/server.mjs";
import { anycable, subscribed } from "./helpers/cable.mjs";
import { uniq, waitFor } from "./helpers/util.mjs";

let server;
const cables = [];
before(async () => { server = await startServer(); });
after(async () => { for (const c of cables) c.disconnect(); await server?.stop(); });

const msgpackEncoder = {
  encode: (msg) => encode(msg),
  decode: (raw) => { try { return decode(raw instanceof ArrayBuffer ? new Uint8Array(raw) : raw); } catch { return undefined; } },
};

async function connect(protocol) {
  const cable = anycable(server.ws, { protocol, encoder: msgpackEncoder });
  cables.push(cable);
  await cable.connect();
  return cable;
}

for (const protocol of ["actioncable-v1-ext-msgpack", "actioncable-v1-msgpack"]) {
  test(`${protocol}: broadcasts in order, exactly once; whispers to the others`, { timeout: 15000, skip: requires("msgpack") }, async () => {
    const stream = uniq("mp");
    const a = await connect(protocol);
    const b = await connect(protocol);
    const chA = a.streamFrom(stream);
    const chB = b.streamFrom(stream);
    const gotA = [];
    const gotB = [];
    chA.on("message", (m, meta) => gotA.push({ m, meta }));
    chB.on("message", (m, meta) => gotB.push({ m, meta }));
    await subscribed(a, chA);
    await subscribed(b, chB);
    for (let i = 1; i <= 10; i++) await server.publish(stream, { seq: i, big: 2 ** 40 + i, s: "é" });
    await waitFor(() => gotA.length >= 10 && gotB.length >= 10, { what: "10 broadcasts on both" });
    assert.deepEqual(gotA.map((g) => g.m.seq), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    assert.equal(gotA[9].m.big, 2 ** 40 + 10, "large integers stay exact");
    assert.equal(gotA[0].m.s, "é");
    if (protocol.includes("ext")) {
      assert.deepEqual(gotA.map((g) => g.meta?.offset), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], "ext broadcasts carry offsets");
    }
    await chA.whisper({ event: "typing", from: "a" });
    await waitFor(() => gotB.length >= 11, { what: "a's whisper at b" });
    assert.deepEqual(gotB[10].m, { event: "typing", from: "a" });
    assert.equal(gotA.length, 10, "never echoed to the sender");
  });
}
