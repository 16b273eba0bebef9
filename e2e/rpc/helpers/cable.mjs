// @anycable/core in node: ws as the WebSocket, fast reconnects, bounded;
// every cable records the frames it receives (cable.wire, see
// e2e/shared/cable-wire.mjs) so tests can check what did (not) arrive on
// the wire, not only what the client surfaces.
import WebSocket from "ws";
import { createCable } from "@anycable/core";
import { recordWire } from "../../shared/cable-wire.mjs";

export { messagesOnWire, subscribed } from "../../shared/cable-wire.mjs";

/** createCable with ws and test-friendly timings; extra options override. */
export function anycable(url, opts = {}) {
  return recordWire(createCable(url, {
    protocol: "actioncable-v1-ext-json",
    websocketImplementation: WebSocket,
    logLevel: process.env.CABLE_DEBUG ? "debug" : "error",
    reconnectStrategy: () => 150,
    maxReconnectAttempts: 100,
    ...opts,
  }));
}
