// Test helpers: the real Huddle server binary, HS256 tokens, a cuttable TCP
// proxy (a "bad network" between client and server) and event waiting with
// bounded timeouts.
//
// The binary is HUDDLE_BIN when set, else built once per `node --test` run
// with `go build ./cmd/huddle` from the repository root (GO when set, else
// /usr/local/go/bin/go when it exists, else go on PATH).

import { spawn, execFile } from "node:child_process";
import { createHmac } from "node:crypto";
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";
import { Huddle } from "../dist/index.js";
import { startTCPProxy } from "../../../e2e/shared/tcp-proxy.mjs";

export { Huddle, WebSocket };

const here = dirname(fileURLToPath(import.meta.url));
export const repoRoot = resolve(here, "../../..");
export const SECRET = "sdk-test-secret-0123456789abcdef0123456789";
export const API_KEY = "sdk-test-api-key";

/** Every op on every stream. */
export const ALL_OPS = { "*": ["sub", "pub", "whisper", "presence", "history"] };

// ---- the binary ----
//
// `node --test` runs each test file in its own process, all children of the
// runner. They share one build: the first one to take the lock builds into a
// directory named after the runner process, the others wait for it. Such
// directories of runners that are gone are removed at the next run. A test
// file run directly with `node` builds its own copy and removes it at exit.

let binPromise;
const running = new Set();

function goBinary() {
  if (process.env.GO) return process.env.GO;
  if (existsSync("/usr/local/go/bin/go")) return "/usr/local/go/bin/go";
  return "go";
}

/** huddleBin resolves to the path of the server binary (built on first use). */
export function huddleBin() {
  if (process.env.HUDDLE_BIN) return Promise.resolve(process.env.HUDDLE_BIN);
  binPromise ??= sharedBuild();
  return binPromise;
}

const PREFIX = "huddle-sdk-test-";

function processKey(pid) {
  try {
    // Linux: the start time tells a reused pid apart.
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return `${pid}-${stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19]}`;
  } catch {
    return String(pid);
  }
}

function removeStale() {
  for (const name of readdirSync(tmpdir())) {
    if (!name.startsWith(PREFIX)) continue;
    const pid = Number(name.slice(PREFIX.length).split("-")[0]);
    if (!Number.isInteger(pid) || pid <= 0 || pid === process.ppid) continue;
    try {
      process.kill(pid, 0);
      continue; // still running
    } catch (err) {
      if (err.code === "EPERM") continue;
    }
    rmSync(join(tmpdir(), name), { recursive: true, force: true });
  }
}

async function sharedBuild() {
  try { removeStale(); } catch {}
  // Shared only under the test runner (NODE_TEST_CONTEXT is set in its
  // children): a file run on its own builds afresh into its own directory.
  const shared = process.env.NODE_TEST_CONTEXT !== undefined;
  const dir = shared ? join(tmpdir(), PREFIX + processKey(process.ppid)) : mkdtempSync(join(tmpdir(), PREFIX + process.pid + "-"));
  if (!shared) process.on("exit", () => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(dir, { recursive: true });
  const out = join(dir, "huddle");
  const done = join(dir, "done");
  const failed = join(dir, "failed");
  let fd;
  try {
    fd = openSync(join(dir, "lock"), "wx");
  } catch (err) {
    if (err.code !== "EEXIST") throw err;
  }
  if (fd === undefined) {
    // Another test process builds it.
    const deadline = Date.now() + 240_000;
    while (Date.now() < deadline) {
      if (existsSync(done)) return out;
      if (existsSync(failed)) throw new Error(readFileSync(failed, "utf8"));
      await delay(50);
    }
    throw new Error(`timed out waiting for another test process to build ${out}`);
  }
  closeSync(fd);
  try {
    await new Promise((ok, fail) => {
      execFile(goBinary(), ["build", "-o", out + ".tmp", "./cmd/huddle"], { cwd: repoRoot, timeout: 180_000 }, (err, _stdout, stderr) => {
        if (err) fail(new Error(`go build ./cmd/huddle failed: ${err.message}\n${stderr}`));
        else ok();
      });
    });
    renameSync(out + ".tmp", out);
    writeFileSync(done, "");
    return out;
  } catch (err) {
    writeFileSync(failed, String(err.message));
    throw err;
  }
}

process.on("exit", () => {
  for (const proc of running) proc.kill("SIGKILL");
});

export function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.on("error", fail);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

// ---- the server ----

/**
 * startServer starts the real server on a free loopback port (or `port`) and
 * resolves once /readyz answers 200. `args` are extra flags.
 */
export async function startServer({ args = [], port } = {}) {
  const bin = await huddleBin();
  port ??= await freePort();
  const srv = new HuddleServer(bin, port, args);
  await srv.start();
  return srv;
}

export class HuddleServer {
  constructor(bin, port, args) {
    this.bin = bin;
    this.port = port;
    this.args = args;
    this.proc = null;
    this.stderr = "";
    this.http = `http://127.0.0.1:${port}`;
    this.wsUrl = `ws://127.0.0.1:${port}/ws`;
  }

  async start() {
    const argv = ["--addr", `127.0.0.1:${this.port}`, "--secret", SECRET, "--api-key", API_KEY,
      "--log-level", "warn", ...this.args];
    const proc = spawn(this.bin, argv, { stdio: ["ignore", "ignore", "pipe"] });
    this.proc = proc;
    running.add(proc);
    proc.once("exit", () => running.delete(proc));
    proc.stderr.setEncoding("utf8");
    proc.stderr.on("data", (d) => { this.stderr = (this.stderr + d).slice(-8000); });
    this.exited = new Promise((ok) => proc.once("exit", (code, signal) => ok({ code, signal })));
    const deadline = Date.now() + 15_000;
    for (;;) {
      if (proc.exitCode !== null || proc.signalCode !== null) {
        throw new Error(`huddle exited at start (${proc.exitCode ?? proc.signalCode}):\n${this.stderr}`);
      }
      try {
        const r = await fetch(this.http + "/readyz");
        if (r.status === 200) return;
      } catch {}
      if (Date.now() > deadline) throw new Error(`huddle not ready on ${this.http} within 15 s:\n${this.stderr}`);
      await delay(25);
    }
  }

  /** stop kills the process (SIGKILL: a crash, no drain) and waits for it. */
  async stop(signal = "SIGKILL") {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    proc.kill(signal);
    await withTimeout(this.exited, 12_000, "huddle to exit");
  }

  /** restart stops the server and starts it again on the same port (a memory node loses its history). */
  async restart() {
    await this.stop();
    await this.start();
  }

  async api(method, path, body) {
    const r = await fetch(this.http + path, {
      method,
      headers: { authorization: `Bearer ${API_KEY}`, "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await r.text();
    if (!r.ok) throw new Error(`${method} ${path}: HTTP ${r.status}: ${text}`);
    return JSON.parse(text);
  }

  /** publish sends datas (an array) to stream through POST /api/publish in one batch; resolves to the results. */
  async publish(stream, datas) {
    const body = datas.map((data) => ({ stream, data }));
    const { results } = await this.api("POST", "/api/publish", body);
    if (results.length !== datas.length) throw new Error(`publish: ${results.length} results for ${datas.length}`);
    return results;
  }

  presence(stream) {
    return this.api("GET", `/api/presence/${encodeURIComponent(stream)}`);
  }
}

// ---- tokens ----

const b64url = (v) => Buffer.from(typeof v === "string" ? v : JSON.stringify(v)).toString("base64url");

/**
 * mintToken signs an HS256 JWT. `ttl` is seconds from now (exp); `exp` sets
 * it absolutely (unix seconds).
 */
export function mintToken({ sub, name = sub, ttl = 3600, exp, streams = ALL_OPS, info, secret = SECRET } = {}) {
  const claims = { sub, exp: exp ?? Math.floor(Date.now() / 1000) + ttl, info: info ?? { name }, streams };
  const head = b64url({ alg: "HS256", typ: "JWT" });
  const body = b64url(claims);
  const sig = createHmac("sha256", secret).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}

// ---- clients ----

/**
 * Clients creates Huddle clients with test defaults (ws WebSocket, fast
 * backoff) and closes them all at the end.
 */
export class Clients {
  constructor() {
    this.all = [];
  }

  make(url, opts = {}) {
    const c = new Huddle({
      url,
      WebSocket,
      minReconnectDelay: 20,
      maxReconnectDelay: 300,
      requestTimeout: 5000,
      ...opts,
    });
    this.all.push(c);
    return c;
  }

  /** connected makes a client for user `sub` (a token with every op unless given) and waits until it is connected. */
  async connected(url, sub, opts = {}) {
    const c = this.make(url, { token: mintToken({ sub }), ...opts });
    await withTimeout(c.ready(), 5000, `${sub} to connect`);
    return c;
  }

  closeAll() {
    for (const c of this.all.splice(0)) {
      try { c.disconnect(); } catch {}
    }
  }
}

// ---- waiting ----

export const delay = (ms) => new Promise((ok) => setTimeout(ok, ms));

/** withTimeout rejects when p has not settled within ms. */
export function withTimeout(p, ms, what) {
  let timer;
  const t = new Promise((_, fail) => {
    timer = setTimeout(() => fail(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/**
 * waitFor resolves with the payload of the next `event` of emitter (anything
 * with `on(name, fn) -> off`) for which pred is true, or rejects after ms.
 */
export function waitFor(emitter, event, pred = () => true, ms = 5000, what = event) {
  let off;
  const p = new Promise((ok, fail) => {
    off = emitter.on(event, (...args) => {
      let hit;
      try {
        hit = pred(...args);
      } catch (err) {
        fail(err);
        return;
      }
      if (hit) ok(args[0]);
    });
  });
  return withTimeout(p, ms, what).finally(() => off?.());
}

/**
 * until resolves once cond() is true, checking it now and after every
 * `event` of emitter; it rejects after ms with describe() in the message.
 */
export function until(emitter, event, cond, ms = 5000, what = `${event} condition`, describe = () => "") {
  if (cond()) return Promise.resolve();
  let off;
  const p = new Promise((ok, fail) => {
    off = emitter.on(event, () => {
      try {
        if (cond()) ok();
      } catch (err) {
        fail(err);
      }
    });
  });
  return withTimeout(p, ms, what).catch((err) => {
    const d = describe();
    throw d ? new Error(`${err.message} (${d})`) : err;
  }).finally(() => off?.());
}

/** record collects the payloads of an event in an array (with a remover on `.off`). */
export function record(emitter, event) {
  const got = [];
  Object.defineProperty(got, "off", { value: emitter.on(event, (p) => got.push(p)), enumerable: false });
  return got;
}

/**
 * subscribed makes client.stream(name, opts), records its publications from
 * the start, and waits for its first `subscribed` event.
 */
export async function subscribe(client, name, opts = {}, ms = 5000) {
  const s = client.stream(name, opts);
  const pubs = record(s, "publication");
  const subs = record(s, "subscribed");
  if (s.state !== "subscribed") await waitFor(s, "subscribed", () => true, ms, `${name} subscribed`);
  return { s, pubs, subs };
}

// ---- the cuttable proxy ----

/** startProxy is startTCPProxy (e2e/shared/tcp-proxy.mjs) with url the proxied WebSocket URL. */
export async function startProxy(targetPort) {
  const proxy = await startTCPProxy(targetPort);
  proxy.url = proxy.wsUrl;
  return proxy;
}

/** range(a, b) is [a, a+1, ..., b]. */
export const range = (a, b) => Array.from({ length: Math.max(0, b - a + 1) }, (_, i) => a + i);

// ---- a proxy that breaks WebSockets ----

export { startHTTPProxy } from "../../../e2e/shared/http-proxy.mjs";
