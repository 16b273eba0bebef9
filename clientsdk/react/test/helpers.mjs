// Helpers of the React tests: the SDK's test helpers (the real server
// binary, tokens), provider options, a WebSocket that counts what the
// client sends, and the server's /metrics.
import { before, after, afterEach } from "node:test";
import { cleanup } from "@testing-library/react";
import { decodeClientFrame } from "@huddle/client";
import { API_KEY, WebSocket, mintToken, startServer } from "../../ts/test/server.mjs";
import { closeDom } from "./dom.mjs";

export * from "../../ts/test/server.mjs";

/** options returns HuddleProvider options for user sub on srv (fast reconnects, ws's WebSocket). */
export function options(srv, sub, extra = {}) {
  return {
    url: srv.wsUrl,
    token: mintToken({ sub, name: extra.name ?? sub }),
    WebSocket,
    minReconnectDelay: 20,
    maxReconnectDelay: 300,
    requestTimeout: 5000,
    ...extra,
  };
}

/**
 * countingWebSocket returns a WebSocket class that records every message the
 * client sends (decoded), in sent, and counts the sockets made, in opened.
 */
export function countingWebSocket() {
  const log = { sent: [], opened: 0 };
  class CountingWebSocket extends WebSocket {
    constructor(url, protocols) {
      super(url, protocols);
      log.opened++;
    }
    send(data, ...rest) {
      const codec = this.protocol.includes("json") ? "json" : "msgpack";
      try {
        log.sent.push(...decodeClientFrame(codec, data).messages);
      } catch {}
      return super.send(data, ...rest);
    }
  }
  return {
    WebSocket: CountingWebSocket,
    log,
    /** count returns how many messages of type t (on stream s, if given) were sent. */
    count(t, s) {
      return log.sent.filter((m) => m.t === t && (s === undefined || m.s === s)).length;
    },
  };
}

/** metrics returns the server's /metrics as { "name{labels}": value }. */
export async function metrics(srv) {
  const r = await fetch(srv.http + "/metrics", { headers: { authorization: `Bearer ${API_KEY}` } });
  if (!r.ok) throw new Error(`/metrics: HTTP ${r.status}`);
  const out = {};
  for (const line of (await r.text()).split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const i = line.lastIndexOf(" ");
    out[line.slice(0, i)] = Number(line.slice(i + 1));
  }
  return out;
}

/** messagesIn returns how many messages of type t the server received, by /metrics. */
export async function messagesIn(srv, t) {
  const m = await metrics(srv);
  let n = 0;
  for (const [k, v] of Object.entries(m)) {
    if (k.startsWith("huddle_messages_in") && k.includes(`type="${t}"`)) n += v;
  }
  return n;
}

/** stats returns the server's /api/stats (connections, clients, streams, subscriptions...). */
export function stats(srv) {
  return srv.api("GET", "/api/stats");
}

/** idle waits (up to ms) until the server has no clients left, so that one test's leftovers do not count in the next one's numbers. */
export async function idle(srv, ms = 8000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const s = await stats(srv);
    if (s.clients === 0 && s.subscriptions === 0) return;
    if (Date.now() > deadline) throw new Error(`the server still has ${s.clients} clients and ${s.subscriptions} subscriptions after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * serverForFile starts one real server for a test file (with args) and
 * hands it to set; after each test the DOM is cleaned, sdk's clients are
 * closed and the server is let go idle; at the end the server stops and
 * the DOM goes.
 */
export function serverForFile(sdk, set, args = []) {
  let srv;
  before(async () => {
    srv = await startServer({ args });
    set(srv);
  });
  afterEach(async () => {
    cleanup();
    sdk.closeAll();
    await idle(srv);
  });
  after(async () => {
    cleanup();
    await srv?.stop();
    closeDom();
  });
}
