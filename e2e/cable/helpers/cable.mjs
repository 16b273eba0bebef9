// @anycable/core in node: ws as the WebSocket, fast reconnects, bounded;
// every cable records the frames it receives (cable.wire) so tests can
// synchronise on protocol answers the client API does not surface reliably.
import WebSocket from "ws";
import { createCable } from "@anycable/core";
import { waitFor, within } from "./util.mjs";

/** createCable with ws and test-friendly timings; extra options override. */
export function anycable(url, opts = {}) {
  const cable = createCable(url, {
    protocol: "actioncable-v1-ext-json",
    websocketImplementation: WebSocket,
    logLevel: process.env.CABLE_DEBUG ? "debug" : "error",
    reconnectStrategy: () => 150,
    maxReconnectAttempts: 100,
    ...opts,
  });
  cable.wire = [];
  cable.transport.on("data", (d) => {
    try {
      const msg = opts.encoder ? opts.encoder.decode(d) : JSON.parse(typeof d === "string" ? d : Buffer.from(d).toString());
      if (msg) cable.wire.push(msg);
    } catch {}
  });
  return cable;
}

const isExt = (cable) => typeof cable.protocol.historyRequestFor === "function";
const lastIndex = (arr, pred, from = 0) => { for (let i = arr.length - 1; i >= from; i--) if (pred(arr[i])) return i; return -1; };

/**
 * Waits for the subscription to be confirmed and, on the extended protocol
 * (whose subscribe asks for history), for the history answer
 * (confirm_history / reject_history) that follows it: only then is the
 * subscription settled. Returns the history answer's type (or undefined).
 */
export async function subscribed(cable, ch, { ms = 5000 } = {}) {
  await within(ch.ensureSubscribed(), ms, `subscribing ${ch.identifier}`);
  if (!isExt(cable)) return undefined;
  return historyAnswer(cable, ch, { ms, after: (m) => m.type === "confirm_subscription" && m.identifier === ch.identifier });
}

/**
 * The history answer for `ch` that came after the last frame matching
 * `after` (default: the last welcome, i.e. the current connection).
 */
export async function historyAnswer(cable, ch, { ms = 5000, after = (m) => m.type === "welcome" } = {}) {
  const hit = await waitFor(() => {
    const from = lastIndex(cable.wire, after);
    if (from < 0) return null;
    const i = lastIndex(cable.wire, (m) => m.identifier === ch.identifier && /^(confirm|reject)_history$/.test(m.type), from);
    return i >= 0 ? cable.wire[i] : null;
  }, { ms, what: `the history answer for ${ch.identifier}` });
  return hit.type;
}
