// Starts the server under test on a free loopback port and stops it again.
// The server is chosen by CABLE_SERVER:
//   huddle (default)  $HUDDLE_BIN, Huddle's binary
//   anycable          $ANYCABLE_BIN or /work/ext/bin/anycable-go (the reference)
// THE COMMAND LINES LIVE HERE AND NOWHERE ELSE: adjust `servers` below when
// Huddle's flags change.
import { spawn } from "node:child_process";
import { createServer } from "node:net";

export const kind = process.env.CABLE_SERVER || "huddle";

// Fixed test secrets (the tests sign stream names and JWTs with them).
export const secrets = {
  streams: "streams-secret-for-tests-0123456789abcdef", // signed stream names (HMAC-SHA256)
  jwt: "jwt-secret-for-tests-0123456789abcdef",         // HS256 JWTs (?jid=)
  broadcastKey: "broadcast-key-for-tests", // POST /_broadcast, Authorization: Bearer <key>
};

const servers = {
  huddle: {
    bin: () => process.env.HUDDLE_BIN,
    missing: "set HUDDLE_BIN to a built cmd/huddle (or CABLE_SERVER=anycable)",
    args: (port) => ["--dev", "--addr", `127.0.0.1:${port}`, "--public",
      "--streams-secret", secrets.streams, "--secret", secrets.jwt, "--api-key", secrets.broadcastKey,
      "--log-level", process.env.CABLE_DEBUG ? "debug" : "warn"],
    readyPath: "/readyz",
  },
  anycable: {
    bin: () => process.env.ANYCABLE_BIN || "/work/ext/bin/anycable-go",
    missing: "no anycable-go binary (set ANYCABLE_BIN)",
    // No RPC backend: --norpc + --noauth (every connection is accepted unless
    // it carries a bad/expired JWT), public $pubsub streams (with whispers and
    // presence), signed streams with whispers/presence, Turbo::StreamsChannel
    // with the same secret, an in-memory broker (history, session restore,
    // presence), and HTTP broadcast on the server port behind the key.
    // (--public would also make broadcasting unauthenticated, so it is not used.)
    args: (port) => ["--host", "127.0.0.1", "--port", String(port), "--path", "/cable",
      "--norpc", "--noauth", "--public_streams",
      "--streams_secret", secrets.streams, "--streams_whisper", "--streams_presence",
      "--turbo_streams", "--turbo_streams_secret", secrets.streams,
      "--jwt_secret", secrets.jwt,
      "--broadcast_adapter", "http", "--broadcast_key", secrets.broadcastKey,
      "--broker", "memory", "--presence_ttl", "2", "--pubsub", "none", "--presets", "none",
      "--disable_disconnect", "--ping_interval", "3",
      "--log_level", process.env.CABLE_DEBUG ? "debug" : "warn"],
    readyPath: "/health",
  },
};

// Behaviour a server lacks: tests tagged with it are skipped there (see
// README.md). CABLE_RUN_ALL=1 runs them anyway.
const lacks = {
  huddle: new Set(),
  anycable: new Set([
    // Binary formats are AnyCable Pro's; the open-source build serves JSON.
    "msgpack",
    // anycable-go 1.6.16 (memory broker) lets live broadcasts through while
    // it replays a new subscription's history: seen 79,80,81,123,124,82,...
    // and offsets delivered twice (live and from history).
    "ordered-history-handoff",
  ]),
};

/** For node:test: `test(name, { skip: requires("x") }, fn)`. */
export function requires(...features) {
  if (process.env.CABLE_RUN_ALL) return false;
  const missing = features.filter((f) => lacks[kind]?.has(f));
  return missing.length ? `${kind} lacks ${missing.join(", ")}` : false;
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => { const { port } = s.address(); s.close(() => resolve(port)); });
    s.on("error", reject);
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const running = new Set();
process.on("exit", () => { for (const p of running) p.kill("SIGKILL"); });

/**
 * Starts the server; resolves when it answers its readiness URL.
 * Returns { kind, port, http, ws, publish(stream, data), stop() }.
 */
export async function startServer({ readyMs = 15000 } = {}) {
  const conf = servers[kind];
  if (!conf) throw new Error(`unknown CABLE_SERVER=${kind} (huddle|anycable)`);
  const bin = conf.bin();
  if (!bin) throw new Error(conf.missing);
  const port = await freePort();
  const http = `http://127.0.0.1:${port}`;
  const proc = spawn(bin, conf.args(port), {
    stdio: ["ignore", process.env.CABLE_DEBUG ? "inherit" : "ignore", "inherit"],
  });
  running.add(proc);
  let exited = null;
  proc.on("exit", (code, sig) => { exited = `exited (${code ?? sig})`; running.delete(proc); });
  const deadline = Date.now() + readyMs;
  for (;;) {
    if (exited) throw new Error(`${kind} server ${exited} before it was ready: ${bin} ${conf.args(port).join(" ")}`);
    try { if ((await fetch(http + conf.readyPath, { signal: AbortSignal.timeout(1000) })).ok) break; } catch {}
    if (Date.now() > deadline) { proc.kill("SIGKILL"); throw new Error(`${kind} server not ready at ${http}${conf.readyPath} within ${readyMs} ms`); }
    await sleep(50);
  }
  return {
    kind, port, http,
    ws: `ws://127.0.0.1:${port}/cable`,
    /** Publishes `data` (any JSON value; sent as a JSON string) to `stream`. */
    publish: (stream, data) => publish(http, stream, data),
    async stop() {
      if (exited) return;
      const gone = new Promise((r) => proc.once("exit", r));
      proc.kill("SIGTERM");
      const t = setTimeout(() => proc.kill("SIGKILL"), 3000);
      await gone;
      clearTimeout(t);
    },
  };
}

/**
 * POST /_broadcast {"stream","data":"<JSON string>"} with the broadcast key.
 * Both Huddle and anycable-go (--broadcast_key) take `Authorization: Bearer <key>`.
 * `items` may be an array of {stream, data} for a batch.
 */
export async function publish(http, stream, data, { key = secrets.broadcastKey } = {}) {
  const body = Array.isArray(stream)
    ? stream.map((m) => ({ stream: m.stream, data: JSON.stringify(m.data) }))
    : { stream, data: JSON.stringify(data) };
  const res = await fetch(http + "/_broadcast", {
    method: "POST",
    headers: { "content-type": "application/json", ...(key ? { authorization: `Bearer ${key}` } : {}) },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(5000),
  });
  if (!res.ok) throw new Error(`POST /_broadcast: HTTP ${res.status} ${await res.text()}`);
  return res.status;
}

/** The same request, returning the status (for the auth check). */
export async function publishStatus(http, stream, data, opts) {
  try { return await publish(http, stream, data, opts); } catch (e) {
    const m = /HTTP (\d+)/.exec(e.message); if (m) return Number(m[1]); throw e;
  }
}
