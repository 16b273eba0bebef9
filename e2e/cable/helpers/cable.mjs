// @anycable/core in node: ws as the WebSocket, fast reconnects, bounded;
// every cable records the frames it receives (cable.wire, see
// e2e/shared/cable-wire.mjs) so tests can synchronise on protocol answers
// the client API does not surface reliably.
import WebSocket from "ws";
import { createCable } from "@anycable/core";
import { recordWire } from "../../shared/cable-wire.mjs";

export { historyAnswer, subscribed } from "../../shared/cable-wire.mjs";

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
  return opts.encoder ? recordWire(cable, (d) => opts.encoder.decode(d)) : recordWire(cable);
}
