// Starts the server under test (the /cable endpoint, with an AnyCable RPC
// backend) on a free loopback port and stops it again.
// The server is chosen by CABLE_SERVER:
//   huddle (default)  $HUDDLE_BIN, Huddle's binary
//   anycable          $ANYCABLE_BIN or /work/ext/bin/anycable-go (the reference)
// THE COMMAND LINES LIVE HERE AND NOWHERE ELSE: adjust `servers` below when
// Huddle's flags change.
import { spawn } from "node:child_process";
import { createServer } from "node:net";

export const kind = process.env.CABLE_SERVER || "huddle";

// Fixed test secrets.
export const secrets = {
  rpc: "rpc-secret-for-tests-0123456789abcdef",       // Authorization: Bearer <rpc> on every RPC request
  server: "server-secret-for-tests-0123456789abcdef", // Huddle --secret (>= 32 bytes)
  broadcastKey: "broadcast-key-for-tests",            // POST /_broadcast, Authorization: Bearer <key>
};

const debug = !!process.env.CABLE_DEBUG;

const servers = {
  huddle: {
    bin: () => process.env.HUDDLE_BIN,
    missing: "set HUDDLE_BIN to a built cmd/huddle (or CABLE_SERVER=anycable)",
    args: (port, rpcUrl) => ["--dev", "--addr", `127.0.0.1:${port}`,
      "--secret", secrets.server, "--api-key", secrets.broadcastKey,
      "--rpc-url", rpcUrl, "--rpc-secret", secrets.rpc,
      "--log-level", debug ? "debug" : "warn"],
    readyPath: "/readyz",
  },
  anycable: {
    bin: () => process.env.ANYCABLE_BIN || "/work/ext/bin/anycable-go",
    missing: "no anycable-go binary (set ANYCABLE_BIN)",
    // HTTP RPC: --rpc_host is the full URL (it POSTs to <url>/connect,
    // /command, /disconnect) and --http_rpc_secret is sent as
    // "Authorization: Bearer <secret>". Headers forwarded in env.headers:
    // cookie only (the default of --headers).
    // HTTP broadcast on the server port behind the key; an in-memory broker
    // so the ext protocol's history request on subscribe gets answered.
    args: (port, rpcUrl) => ["--host", "127.0.0.1", "--port", String(port), "--path", "/cable",
      "--rpc_host", rpcUrl, "--http_rpc_secret", secrets.rpc,
      "--broadcast_adapter", "http", "--broadcast_key", secrets.broadcastKey,
      "--broker", "memory", "--pubsub", "none", "--presets", "none",
      "--log_level", debug ? "debug" : "warn"],
    env: { ANYCABLE_DISABLE_TELEMETRY: "true" },
    readyPath: "/health",
  },
};

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => { const { port } = s.address(); s.close(() => resolve(port)); });
    s.on("error", reject);
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const running = new Set();
process.on("exit", () => { for (const p of running) p.kill("SIGKILL"); });

/**
 * Starts the server with `rpcUrl` (e.g. http://127.0.0.1:PORT/_anycable) as
 * its RPC backend; resolves when it answers its readiness URL.
 * Returns { kind, port, http, ws, broadcastURL, stop() }.
 */
export async function startServer({ rpcUrl, readyMs = 15000 } = {}) {
  const conf = servers[kind];
  if (!conf) throw new Error(`unknown CABLE_SERVER=${kind} (huddle|anycable)`);
  const bin = conf.bin();
  if (!bin) throw new Error(conf.missing);
  if (!rpcUrl) throw new Error("startServer: rpcUrl is required");
  const port = await freePort();
  const http = `http://127.0.0.1:${port}`;
  const args = conf.args(port, rpcUrl);
  const proc = spawn(bin, args, {
    env: { ...process.env, ...(conf.env || {}) },
    stdio: ["ignore", debug ? "inherit" : "ignore", "inherit"],
  });
  running.add(proc);
  let exited = null;
  proc.on("exit", (code, sig) => { exited = `exited (${code ?? sig})`; running.delete(proc); });
  const deadline = Date.now() + readyMs;
  for (;;) {
    if (exited) throw new Error(`${kind} server ${exited} before it was ready: ${bin} ${args.join(" ")}`);
    try { if ((await fetch(http + conf.readyPath, { signal: AbortSignal.timeout(1000) })).ok) break; } catch {}
    if (Date.now() > deadline) { proc.kill("SIGKILL"); throw new Error(`${kind} server not ready at ${http}${conf.readyPath} within ${readyMs} ms`); }
    await sleep(50);
  }
  return {
    kind, port, http,
    ws: `ws://127.0.0.1:${port}/cable`,
    broadcastURL: `${http}/_broadcast`,
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
