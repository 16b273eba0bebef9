// Document streams under load, with the real Yjs provider and the real
// server binary (bench/RESULTS.md, "Document streams and the Yjs provider").
//
//   node bench/documents.mjs [--updates 100000] [--typists 20] [--cps 5,20] [--seconds 20] [--runs 5]
//
// The server runs on CPU 0 with GOMAXPROCS=1 (taskset), this process on
// CPU 1. HUDDLE_BIN names the binary; otherwise it is built with go build.
//
// 1. A document of --updates single-keystroke Yjs updates (typing: mostly
//    at the caret, which jumps every 50 keys; 5% deletes), published through
//    POST /api/publish in batches of 1,000, so each update is one
//    publication. Reported: the ingest rate, what the server holds
//    (huddle_documents_bytes and its RSS growth), and the time a late
//    joiner's provider takes from `new Huddle` to synced, as the median of
//    --runs joiners; then the same after a snapshot at the top.
// 2. --typists providers, each on its own connection, type --cps keys a
//    second each for --seconds. Every keystroke is timed from the local
//    insert to its arrival in each other typist's document (matched by Yjs
//    item id), so the figures include the provider's batching, the server
//    and the decode and apply at the receiver.
import { spawn, execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import * as Y from "yjs";
import WebSocket from "ws";
import { Huddle } from "@huddle/client";
import { HuddleYjsProvider, toBase64 } from "../dist/index.js";
import { huddleBin, freePort, mintToken, delay } from "../../ts/test/server.mjs";

const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), []));
const UPDATES = Number(args.updates ?? 100_000);
const TYPISTS = Number(args.typists ?? 20);
const CPS = String(args.cps ?? "5,20").split(",").map(Number);
const SECONDS = Number(args.seconds ?? 20);
const RUNS = Number(args.runs ?? 5);
const API_KEY = "bench-api-key";
const SECRET = "sdk-test-secret-0123456789abcdef0123456789";

try { execFileSync("taskset", ["-p", "-c", "1", String(process.pid)], { stdio: "ignore" }); } catch {}

const bin = await huddleBin();
const port = await freePort();
const srv = spawn("taskset", ["-c", "0", bin, "--addr", `127.0.0.1:${port}`, "--secret", SECRET, "--api-key", API_KEY,
  "--rule", "doc:*=;document=on", "--log-level", "error", "--message-rate", "100000"], {
  stdio: ["ignore", "ignore", "inherit"], env: { ...process.env, GOMAXPROCS: "1" },
});
const http = `http://127.0.0.1:${port}`;
const wsUrl = `ws://127.0.0.1:${port}/ws`;
process.on("exit", () => srv.kill("SIGKILL"));
for (let i = 0; ; i++) {
  try { if ((await fetch(http + "/readyz")).ok) break; } catch {}
  if (i > 300) throw new Error("server did not start");
  await delay(20);
}
const serverPid = srv.pid; // taskset execs the binary in place

const api = async (method, path, body) => {
  const r = await fetch(http + path, { method, headers: { authorization: `Bearer ${API_KEY}`, "content-type": "application/json" }, body: body && JSON.stringify(body) });
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${await r.text()}`);
  return path === "/metrics" ? r.text() : r.json();
};
const metric = async (name) => Number((await api("GET", "/metrics")).match(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)`, "m"))?.[1] ?? NaN);
const rssKiB = () => Number(readFileSync(`/proc/${serverPid}/status`, "utf8").match(/VmRSS:\s+(\d+)/)[1]);
const cpuTicks = (pid) => { const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" "); return Number(f[11]) + Number(f[12]); };
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };
const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]; };
const client = (sub) => new Huddle({ url: wsUrl, WebSocket, token: mintToken({ sub, secret: SECRET }), requestTimeout: 30_000 });
const out = (...a) => console.log(...a);

out(`server: ${bin} pid ${serverPid} on CPU 0 (GOMAXPROCS=1); bench on CPU 1; node ${process.version}`);

// ---- 1. a document of UPDATES updates ----
{
  const name = "doc:big";
  const scratch = new Y.Doc();
  const t = scratch.getText("t");
  const updates = [];
  scratch.on("update", (u) => updates.push(u));
  let caret = 0;
  let seed = 42;
  const rand = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  for (let i = 0; i < UPDATES; i++) {
    if (i % 50 === 0) caret = Math.floor(rand() * (t.length + 1));
    if (rand() < 0.05 && caret > 0) {
      t.delete(caret - 1, 1);
      caret--;
    } else {
      t.insert(caret, "abcdefghijklmnopqrstuvwxyz "[Math.floor(rand() * 27)]);
      caret++;
    }
  }
  const updateBytes = updates.reduce((n, u) => n + u.length, 0);
  const rss0 = rssKiB();
  const t0 = performance.now();
  for (let i = 0; i < updates.length; i += 1000) {
    await api("POST", "/api/publish", updates.slice(i, i + 1000).map((u) => ({ stream: name, data: toBase64(u) })));
  }
  const ingest = performance.now() - t0;
  await delay(2500); // a metrics scrape interval
  const held = await metric("huddle_documents_bytes");
  const rss1 = rssKiB();
  out(`\n## a document of ${UPDATES.toLocaleString()} updates`);
  out(`text: ${t.length.toLocaleString()} characters; updates: ${(updateBytes / 1024).toFixed(0)} KiB binary, ${(updates.reduce((n, u) => n + toBase64(u).length, 0) / 1024).toFixed(0)} KiB as published (base64)`);
  out(`ingest through POST /api/publish (batches of 1,000): ${(UPDATES / (ingest / 1000)).toFixed(0)} publications/s`);
  out(`server holds: huddle_documents_bytes ${(held / 1048576).toFixed(1)} MiB; RSS ${(rss0 / 1024).toFixed(0)} -> ${(rss1 / 1024).toFixed(0)} MiB`);

  const join = async (label) => {
    const times = [];
    for (let r = 0; r < RUNS; r++) {
      const start = performance.now();
      const c = client(`joiner${r}`);
      const p = new HuddleYjsProvider(c, name, new Y.Doc(), { awareness: null });
      await p.whenSynced();
      times.push(performance.now() - start);
      if (p.doc.getText("t").toString() !== t.toString()) throw new Error(`${label}: the joiner's text differs`);
      p.destroy();
      c.disconnect();
    }
    out(`late joiner, ${label}: median ${median(times).toFixed(0)} ms (runs: ${times.map((x) => x.toFixed(0)).join(", ")} ms)`);
  };
  await join("all updates in the tail, no snapshot");

  // A snapshot at the top, as a typing client writes when the server asks.
  const w = client("compactor");
  const wp = new HuddleYjsProvider(w, name, new Y.Doc(), { awareness: null });
  await wp.whenSynced();
  const snap = Y.encodeStateAsUpdate(wp.doc);
  await wp.stream.compact(snap);
  wp.destroy();
  w.disconnect();
  await delay(2500);
  out(`snapshot: ${(snap.length / 1024).toFixed(0)} KiB binary; server holds after it: ${((await metric("huddle_documents_bytes")) / 1024).toFixed(0)} KiB; RSS ${(rssKiB() / 1024).toFixed(0)} MiB`);
  await join("from the snapshot");
}

// ---- 2. TYPISTS typing at once ----
for (const cps of CPS) {
  const name = `doc:typing:${cps}`;
  const clients = [], providers = [];
  for (let i = 0; i < TYPISTS; i++) {
    const c = client(`typist${i}`);
    clients.push(c);
    providers.push(new HuddleYjsProvider(c, name, new Y.Doc(), { awareness: null }));
  }
  await Promise.all(providers.map((p) => p.whenSynced()));
  const sentAt = new Map(); // "client:clock" -> ms
  const lat = [];
  for (const p of providers) {
    p.doc.on("update", (u, origin) => {
      if (origin === null || origin === undefined) return; // local typing
      const now = performance.now();
      for (const s of Y.decodeUpdate(u).structs) {
        for (let k = 0; k < (s.length ?? 1); k++) {
          const t = sentAt.get(s.id.client + ":" + (s.id.clock + k));
          if (t !== undefined) lat.push(now - t);
        }
      }
    });
  }
  const pubs0 = await metric('huddle_messages_in_total\\{[^}]*type="pub"[^}]*\\}') || 0;
  const srvCpu0 = cpuTicks(serverPid), ownCpu0 = cpuTicks(process.pid);
  const start = performance.now();
  let keys = 0;
  const timers = providers.map((p, i) => {
    const text = p.doc.getText("t");
    const step = () => {
      if (performance.now() - start > SECONDS * 1000) return;
      const clock = Y.getState(p.doc.store, p.doc.clientID);
      sentAt.set(p.doc.clientID + ":" + clock, performance.now());
      text.insert(Math.min(text.length, Math.floor(Math.random() * (text.length + 1))), String.fromCharCode(97 + (i % 26)));
      keys++;
      return setTimeout(step, (1000 / cps) * (0.5 + Math.random()));
    };
    return setTimeout(step, Math.random() * (1000 / cps));
  });
  await delay(SECONDS * 1000 + 3000);
  for (const t of timers) clearTimeout(t);
  const wall = (performance.now() - start) / 1000;
  const srvCpu = (cpuTicks(serverPid) - srvCpu0) / 100 / wall, ownCpu = (cpuTicks(process.pid) - ownCpu0) / 100 / wall;
  const pubs = (await metric('huddle_messages_in_total\\{[^}]*type="pub"[^}]*\\}')) - pubs0;
  const texts = providers.map((p) => p.doc.getText("t").toString());
  const converged = texts.every((x) => x === texts[0]);
  const expected = keys * (TYPISTS - 1);
  out(`\n## ${TYPISTS} typists at ${cps} keys/s each, ${SECONDS} s`);
  out(`keystrokes ${keys} (${(keys / SECONDS).toFixed(0)}/s); publications ${pubs} (${(pubs / SECONDS).toFixed(0)}/s: the provider merges what is typed during a round trip)`);
  out(`keystroke -> applied at each other typist: ${lat.length} of ${expected} measured; p50 ${pct(lat, 50).toFixed(1)} ms, p95 ${pct(lat, 95).toFixed(1)} ms, p99 ${pct(lat, 99).toFixed(1)} ms, max ${lat.reduce((a, b) => Math.max(a, b), 0).toFixed(1)} ms`);
  out(`converged: ${converged} (${texts[0].length} characters); server CPU ${(srvCpu * 100).toFixed(0)}% of a core, this process ${(ownCpu * 100).toFixed(0)}%`);
  for (const p of providers) p.destroy();
  for (const c of clients) c.disconnect();
}
srv.kill("SIGKILL");
process.exit(0);
