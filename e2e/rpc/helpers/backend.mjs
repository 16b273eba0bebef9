// The AnyCable RPC backend the server under test calls: a plain node http
// server running an @anycable/serverless-js Application at /_anycable
// (POST /_anycable/connect, /_anycable/command, /_anycable/disconnect),
// checking "Authorization: Bearer <rpc secret>" on every request.
//
// The app:
//   connect     token from ?token=..., else a `token=` cookie
//               (env.headers.cookie); "tok-<user>" identifies
//               {user_id: <user>}; missing or anything else -> rejected
//               (FAILURE + {"type":"disconnect","reason":"unauthorized"}).
//   ChatChannel {room}
//     subscribed  rejects room "forbidden" (and no room); streamFrom("chat:<room>");
//                 channel state {room, user, n: 0}
//     speak       {text} -> broadcast {user, text} to "chat:<room>" (HTTP /_broadcast)
//     whoami      {echo?} -> transmit to the caller only
//                 {whoami: <identifiers.user_id>, room: state.room, n: ++state.n, echo}
//     leave       stopStreamFrom("chat:<room>"), transmit {left: <room>}
//     unsubscribed / disconnect hooks record the user ids
// Test-only endpoints on the same server:
//   GET /_test/disconnected   -> ["alice", ...] (user ids, in order of Disconnect calls)
//   GET /_test/unsubscribed   -> [{user, room}, ...]
import { createServer } from "node:http";
import { register } from "node:module";

// @anycable/serverless-js's dist uses directory imports node's ESM loader
// refuses; esm-dirs.mjs resolves them (see there). Hence the dynamic import.
register(new URL("./esm-dirs.mjs", import.meta.url));
const { Application, Channel, Status, broadcaster, handler } = await import("@anycable/serverless-js");

const debug = !!process.env.CABLE_DEBUG;
const logRpc = !!process.env.RPC_LOG;

function tokenFrom(env) {
  const headers = env?.headers || {};
  try {
    const q = new URL(env.url).searchParams.get("token");
    if (q !== null) return q;
  } catch {}
  const cookie = headers.cookie || headers.Cookie || "";
  const m = /(?:^|;\s*)token=([^;]*)/.exec(cookie);
  return m ? decodeURIComponent(m[1]) : null;
}

/**
 * Starts the backend on a free port. `broadcastURL`/`broadcastKey` may be set
 * later with setBroadcast() (the server under test starts after the backend).
 */
export async function startBackend({ secret, broadcastKey } = {}) {
  const state = {
    disconnected: [],   // user ids
    unsubscribed: [],   // {user, room}
    errors: [],         // exceptions thrown by the app, and bad requests
    unauthorized: 0,    // RPC requests without the right bearer secret
    exchanges: [],      // {method, request, response} (kept for the report / RPC_LOG)
    broadcastTo: async () => { throw new Error("backend: no broadcast URL yet"); },
  };

  class ChatChannel extends Channel {
    async subscribed(handle, params) {
      const room = params?.room;
      if (!room || room === "forbidden") { handle.reject(); return; }
      handle.streamFrom(`chat:${room}`);
      handle.state = { room, user: handle.identifiers?.user_id, n: 0 };
    }
    async unsubscribed(handle, params) {
      state.unsubscribed.push({ user: handle.identifiers?.user_id, room: params?.room });
    }
    async speak(handle, params, data) {
      await state.broadcastTo(`chat:${params.room}`, { user: handle.identifiers.user_id, text: data.text });
    }
    async whoami(handle, params, data) {
      const st = handle.state;
      if (!st) { handle.transmit({ whoami: handle.identifiers?.user_id, error: "no channel state" }); return; }
      st.n += 1;
      handle.state = st;
      handle.transmit({ whoami: handle.identifiers.user_id, room: st.room, n: st.n, echo: data.echo ?? null });
    }
    async leave(handle, params) {
      handle.stopStreamFrom(`chat:${params.room}`);
      handle.transmit({ left: params.room });
    }
  }

  class ChatApp extends Application {
    async connect(handle) {
      const token = tokenFrom(handle.env);
      const m = typeof token === "string" ? /^tok-([\w-]+)$/.exec(token) : null;
      if (!m) { handle.reject(); return; }
      handle.identifiedBy({ user_id: m[1] });
    }
    async disconnect(handle) {
      state.disconnected.push(handle.identifiers?.user_id ?? null);
    }
  }

  const app = new ChatApp();
  app.registerChannel("ChatChannel", new ChatChannel());

  const json = (res, code, body) => {
    res.writeHead(code, { "content-type": "application/json" });
    res.end(JSON.stringify(body));
  };

  const srv = createServer(async (req, res) => {
    const url = new URL(req.url, "http://127.0.0.1");
    try {
      if (req.method === "GET" && url.pathname === "/_test/disconnected") return json(res, 200, state.disconnected);
      if (req.method === "GET" && url.pathname === "/_test/unsubscribed") return json(res, 200, state.unsubscribed);
      const rpc = /^\/_anycable\/(connect|command|disconnect)$/.exec(url.pathname);
      if (req.method !== "POST" || !rpc) return json(res, 404, { error: "not found" });
      if (req.headers.authorization !== `Bearer ${secret}`) {
        state.unauthorized++;
        return json(res, 401, { error: "unauthorized" });
      }
      const chunks = [];
      for await (const c of req) chunks.push(c);
      const body = Buffer.concat(chunks);
      const headers = new Headers();
      for (const [k, v] of Object.entries(req.headers)) headers.set(k, Array.isArray(v) ? v.join(", ") : v);
      const request = new Request(`http://127.0.0.1${req.url}`, { method: "POST", headers, body });
      let response;
      try {
        response = await handler(request, app);
      } catch (e) {
        state.errors.push(`${rpc[1]}: ${e?.stack || e}`);
        if (debug) console.error("backend error", e);
        response = { status: Status.ERROR, error_msg: String(e?.message || e) };
      }
      const entry = {
        method: rpc[1],
        headers: { authorization: req.headers.authorization, "content-type": req.headers["content-type"], "x-anycable-meta-sid": req.headers["x-anycable-meta-sid"] },
        request: JSON.parse(body.toString() || "null"),
        response,
      };
      state.exchanges.push(entry);
      if (logRpc) console.error(`RPC ${JSON.stringify(entry)}`);
      json(res, 200, response);
    } catch (e) {
      state.errors.push(`request: ${e?.stack || e}`);
      if (!res.headersSent) json(res, 500, { error: String(e) });
    }
  });
  srv.keepAliveTimeout = 30000;
  await new Promise((r) => srv.listen(0, "127.0.0.1", r));
  const { port } = srv.address();
  return {
    port,
    url: `http://127.0.0.1:${port}/_anycable`,
    http: `http://127.0.0.1:${port}`,
    state,
    setBroadcast(url, key = broadcastKey) { state.broadcastTo = broadcaster(url, key); },
    /** GET /_test/disconnected */
    async disconnected() {
      const r = await fetch(`http://127.0.0.1:${port}/_test/disconnected`, { signal: AbortSignal.timeout(2000) });
      return r.json();
    },
    stop() { srv.closeAllConnections?.(); return new Promise((r) => srv.close(() => r())); },
  };
}
