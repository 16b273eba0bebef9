// Measures how fast the SDK decodes and validates frames from the server
// (decodeServerFrame), for frames of 1 and 50 pubs of a 100-byte payload, in
// both codecs. Run after `npm run build`: npm run bench
import { encode } from "@msgpack/msgpack";
import { decodeServerFrame } from "../dist/index.js";

const payload = { text: "x".repeat(80), n: 1 };
function frame(codec, n, from) {
  const msgs = [];
  for (let i = 0; i < n; i++) {
    msgs.push({ t: "pub", s: "bench", offset: from + i, epoch: "e1", data: payload, ts: 1764100000000, from: { user: "ann", client: "c1" } });
  }
  if (codec === "json") return msgs.map((m) => JSON.stringify(m)).join("\n");
  const parts = msgs.map((m) => encode(m));
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}

function run(codec, perFrame) {
  const frames = [];
  for (let i = 0; i < 200; i++) frames.push(frame(codec, perFrame, i * perFrame + 1));
  let msgs = 0;
  const rounds = Math.ceil(200000 / (perFrame * frames.length));
  const t0 = process.hrtime.bigint();
  for (let r = 0; r < rounds; r++) {
    for (const f of frames) msgs += decodeServerFrame(codec, f).messages.length;
  }
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  return Math.round(msgs / s);
}

for (const codec of ["msgpack", "json"]) {
  for (const n of [1, 50]) {
    const rates = [run(codec, n), run(codec, n), run(codec, n)].sort((a, b) => a - b);
    console.log(`${codec.padEnd(7)} ${String(n).padStart(2)} pubs/frame: ${rates[1].toLocaleString("en")} pubs/s (median of 3)`);
  }
}
