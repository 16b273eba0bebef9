// What the node suites that drive @anycable/core (e2e/cable, e2e/rpc) need
// beyond its API: every cable records the frames it receives (cable.wire),
// so a test can wait for protocol answers the client does not surface
// reliably and check what did (not) arrive. No dependencies: each suite
// passes in the cable it created with its own @anycable/core.
import { waitFor, within } from "./wait.mjs";

/**
 * Records every frame `cable` receives in `cable.wire` (decoded with
 * `decode`, JSON by default) and returns the cable.
 */
export function recordWire(cable, decode = (d) => JSON.parse(typeof d === "string" ? d : Buffer.from(d).toString())) {
  cable.wire = [];
  cable.transport.on("data", (d) => {
    try {
      const msg = decode(d);
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

/** Frames on the wire that carry a message for `identifier`. */
export const messagesOnWire = (cable, identifier) =>
  cable.wire.filter((m) => m.identifier === identifier && m.message !== undefined && !m.type).map((m) => m.message);
