// @anycable/core in node: ws as the WebSocket, fast reconnects, bounded;
// every cable records the frames it receives (cable.wire) so tests can
// check what did (not) arrive on the wire, not only what the client surfaces.
// (Adapted from e2e/cable/helpers/cable.mjs.)
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
      const msg = JSON.parse(typeof d === "string" ? d : Buffer.from(d).toString());
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
 * subscription settled.
 */
export async function subscribed(cable, ch, { ms = 5000 } = {}) {
  await within(ch.ensureSubscribed(), ms, `subscribing ${ch.identifier}`);
  if (!isExt(cable)) return undefined;
  const hit = await waitFor(() => {
    const from = lastIndex(cable.wire, (m) => m.type === "confirm_subscription" && m.identifier === ch.identifier);
    if (from < 0) return null;
    const i = lastIndex(cable.wire, (m) => m.identifier === ch.identifier && /^(confirm|reject)_history$/.test(m.type), from);
    return i >= 0 ? cable.wire[i] : null;
  }, { ms, what: `the history answer for ${ch.identifier}` });
  return hit.type;
}

/** Frames on the wire that carry a message for `identifier`. */
export const messagesOnWire = (cable, identifier) =>
  cable.wire.filter((m) => m.identifier === identifier && m.message !== undefined && !m.type).map((m) => m.message);
