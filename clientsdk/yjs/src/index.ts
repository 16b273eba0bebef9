/**
 * @huddle/yjs connects a Yjs document to a Huddle document stream.
 *
 * - Document updates are publications on the stream (a rule with
 *   `document=on` makes the server keep a snapshot plus every update since,
 *   so a joiner at any age gets the whole document). Local updates are
 *   published one batch at a time: what is typed while a publish is in
 *   flight, or while offline, is merged into the next one, so nothing is
 *   lost and the publish rate follows the round trip.
 * - When the server asks for a snapshot (every so many updates), the
 *   provider answers with the document's state, so the stream stays short.
 * - Awareness (cursors, selections, names) travels as a whisper (conflated
 *   by the server for slow receivers, cached for late joiners, null when the
 *   sender's connection drops) and as presence (held through the server's
 *   grace period): a dropped peer's cursor goes at once, its name stays
 *   until presence says it left.
 *
 * Usable with any Yjs binding: y-prosemirror/TipTap, y-codemirror.next, a
 * plain Y.Text.
 */
import * as Y from "yjs";
import * as awarenessProtocol from "y-protocols/awareness";
import type { Huddle, Publication, Stream, WhisperEvent } from "@huddle/client";

/** The presence state the provider joins with. */
export interface YPresence {
  [key: string]: unknown;
  /** y is the Yjs client id of the member's document. */
  y: number;
  /** user is the `user` field of the member's awareness state (name, colour), if any. */
  user?: unknown;
}

/** Options of a {@link HuddleYjsProvider}. */
export interface HuddleYjsOptions {
  /** awareness to share; default a new Awareness of the document. Pass null for none. */
  awareness?: awarenessProtocol.Awareness | null;
  /** awarenessInterval is the least time between two awareness whispers, in ms. Default 50. */
  awarenessInterval?: number;
  /** compact answers the server's requests for a snapshot. Default true. */
  compact?: boolean;
  /**
   * binary sends updates as bytes (Uint8Array): msgpack carries them as
   * binary, JSON (and the HTTP transports) as base64 strings, which the
   * server hands to msgpack readers as strings too. false always sends
   * base64 strings. Receivers accept both. Default true.
   */
  binary?: boolean;
}

/** The events of a {@link HuddleYjsProvider}. */
export type ProviderEvent = "synced" | "status";

type Listener = (arg: unknown) => void;

const ORIGIN_REMOTE = Symbol("huddle-yjs remote");
const AWARENESS_EV = "y-awareness";

/**
 * HuddleYjsProvider keeps doc in sync with the document stream `name`
 * through client, and shares awareness with its other subscribers.
 */
export class HuddleYjsProvider {
  readonly doc: Y.Doc;
  readonly awareness: awarenessProtocol.Awareness | null;
  readonly stream: Stream<unknown, YPresence>;
  /** synced is true once the whole document the server holds has been applied, after each (re)subscribe. */
  synced = false;

  private readonly client: Huddle;
  private readonly opts: Required<Omit<HuddleYjsOptions, "awareness">>;
  private readonly listeners = new Map<ProviderEvent, Set<Listener>>();
  private readonly offs: (() => void)[] = [];
  private pending: Uint8Array | null = null; // local updates not yet acknowledged
  private inFlight = false;
  private destroyed = false;
  private syncTarget = -1; // the offset that completes the sync, -1 when synced
  private republish = false; // publish the whole state once synced
  private compacting = false;
  // Huddle client id -> Yjs client id of the peers we know of.
  private readonly peers = new Map<string, number>();
  private awarenessTimer: unknown;
  private awarenessDue = 0;
  private readonly ownAwareness: boolean; // created here, so destroyed here

  constructor(client: Huddle, name: string, doc: Y.Doc, opts: HuddleYjsOptions = {}) {
    this.client = client;
    this.doc = doc;
    this.ownAwareness = opts.awareness === undefined;
    this.awareness = opts.awareness === null ? null : (opts.awareness ?? new awarenessProtocol.Awareness(doc));
    this.opts = {
      awarenessInterval: opts.awarenessInterval ?? 50,
      compact: opts.compact ?? true,
      binary: opts.binary ?? true,
    };
    // A document that already holds something (loaded from local storage)
    // may hold what the server lacks: it is published once, merged.
    this.republish = Y.encodeStateVector(doc).length > 1;
    this.stream = client.stream<unknown, YPresence>(name, {
      presence: this.awareness !== null,
      join: this.awareness ? this.presenceState() : undefined,
    });
    const s = this.stream;
    this.offs.push(
      s.on("subscribed", (e) => this.onSubscribed(e.offset, e.recovered)),
      s.on("publication", (p) => this.onPublication(p)),
      s.on("compact", () => this.onCompactAsked()),
      client.on("disconnected", () => this.setSynced(false)),
    );
    const onUpdate = (update: Uint8Array, origin: unknown) => {
      if (origin !== ORIGIN_REMOTE) this.queue(update);
    };
    doc.on("update", onUpdate);
    this.offs.push(() => doc.off("update", onUpdate));
    if (this.awareness) this.wireAwareness(this.awareness);
    if (s.state === "subscribed" && s.position) this.onSubscribed(s.position.offset, undefined);
  }

  /** on registers fn for event: "synced" (a boolean) or "status" ({ status: "connected" | "disconnected" }). It returns a function that removes it. */
  on(event: ProviderEvent, fn: Listener): () => void {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(fn);
    return () => set.delete(fn);
  }

  /** whenSynced resolves once the provider is synced. */
  whenSynced(): Promise<void> {
    if (this.synced) return Promise.resolve();
    return new Promise((ok) => {
      const off = this.on("synced", (v) => {
        if (v) {
          off();
          ok();
        }
      });
    });
  }

  /** unsynced reports whether local updates wait to be acknowledged by the server. */
  get unsynced(): boolean {
    return this.pending !== null || this.inFlight;
  }

  /**
   * destroy stops syncing: leaves the stream and its presence, stops
   * listening to the document, and destroys the awareness if the provider
   * made it (one passed in stays the caller's).
   */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    clearTimeout(this.awarenessTimer);
    for (const off of this.offs.splice(0)) off();
    if (this.awareness) awarenessProtocol.removeAwarenessStates(this.awareness, [...this.peers.values()], ORIGIN_REMOTE);
    // An Awareness runs a timer until destroyed: one made here must not
    // outlive the provider (it would keep a Node process alive).
    if (this.ownAwareness) this.awareness?.destroy();
    this.stream.unsubscribe();
  }

  // ---- document ----

  private onSubscribed(top: number, recovered: boolean | undefined): void {
    this.emit("status", { status: "connected" });
    if (recovered === false) {
      // The server lost the document (a new epoch): what we hold restores it.
      this.republish = true;
    }
    const at = this.stream.position?.offset ?? 0;
    this.syncTarget = top;
    if (at >= top) this.setSynced(true);
    this.flush();
  }

  private onPublication(p: Publication<unknown>): void {
    if (p.from?.client !== this.client.clientId || p.snapshot) {
      const update = decode(p.data);
      if (update) Y.applyUpdate(this.doc, update, ORIGIN_REMOTE);
    }
    if (!this.synced && this.syncTarget >= 0 && p.offset >= this.syncTarget) this.setSynced(true);
  }

  private setSynced(v: boolean): void {
    if (this.synced === v) return;
    this.synced = v;
    if (v) {
      this.syncTarget = -1;
      if (this.republish) {
        this.republish = false;
        this.queue(Y.encodeStateAsUpdate(this.doc));
      }
    } else {
      this.emit("status", { status: "disconnected" });
    }
    this.emit("synced", v);
  }

  private queue(update: Uint8Array): void {
    this.pending = this.pending ? Y.mergeUpdates([this.pending, update]) : update;
    this.flush();
  }

  // flush publishes the pending updates as one, one publish at a time. A
  // publish that fails (offline, a timeout) goes back into pending: the
  // server may have stored it, and applying an update twice is harmless.
  private flush(): void {
    if (this.inFlight || !this.pending || this.destroyed || this.stream.state !== "subscribed") return;
    const update = this.pending;
    this.pending = null;
    this.inFlight = true;
    this.stream.publish(this.encode(update)).then(
      () => {
        this.inFlight = false;
        this.flush();
      },
      () => {
        this.inFlight = false;
        this.pending = this.pending ? Y.mergeUpdates([update, this.pending]) : update;
        // The next subscribed event flushes again; if still subscribed, retry soon.
        setTimeout(() => this.flush(), 200);
      },
    );
  }

  private onCompactAsked(): void {
    if (!this.opts.compact || this.compacting || !this.synced) return;
    const at = this.stream.position;
    if (!at) return;
    // Everything up to at has been applied, so the state covers it (and
    // perhaps more, which the server's next readers apply harmlessly).
    this.compacting = true;
    this.stream.compact(this.encode(Y.encodeStateAsUpdate(this.doc)), at).then(
      () => (this.compacting = false),
      () => (this.compacting = false), // someone else will be asked next time
    );
  }

  private encode(update: Uint8Array): Uint8Array | string {
    return this.opts.binary ? update : toBase64(update);
  }

  // ---- awareness ----

  private presenceState(): YPresence {
    const st: YPresence = { y: this.doc.clientID };
    const user = (this.awareness?.getLocalState() as { user?: unknown } | null)?.user;
    if (user !== undefined) st.user = user;
    return st;
  }

  private wireAwareness(aw: awarenessProtocol.Awareness): void {
    const s = this.stream;
    const onLocal = ({ added, updated, removed }: { added: number[]; updated: number[]; removed: number[] }, origin: unknown) => {
      if (origin === ORIGIN_REMOTE) return;
      const me = this.doc.clientID;
      if (![...added, ...updated, ...removed].includes(me)) return;
      this.scheduleAwareness();
      const user = (aw.getLocalState() as { user?: unknown } | null)?.user;
      const joined = s.presence.state as YPresence | undefined;
      if (JSON.stringify(joined?.user) !== JSON.stringify(user)) void s.presence.join(this.presenceState()).catch(() => {});
    };
    aw.on("update", onLocal);
    this.offs.push(() => aw.off("update", onLocal));
    this.offs.push(
      s.on("subscribed", () => this.scheduleAwareness()),
      s.on("whisper", (w) => this.onWhisper(aw, w)),
      s.presence.on("diff", (d) => {
        // Left after the grace period: the peer is gone for good.
        const gone: number[] = [];
        for (const c of d.left) {
          const y = this.peers.get(c.client);
          if (y !== undefined) {
            gone.push(y);
            this.peers.delete(c.client);
          }
        }
        if (gone.length) awarenessProtocol.removeAwarenessStates(aw, gone, ORIGIN_REMOTE);
      }),
    );
  }

  private scheduleAwareness(): void {
    if (this.awarenessTimer !== undefined || this.destroyed) return;
    const wait = Math.max(0, this.awarenessDue - Date.now());
    this.awarenessTimer = setTimeout(() => {
      this.awarenessTimer = undefined;
      const aw = this.awareness;
      if (!aw || this.destroyed) return;
      this.awarenessDue = Date.now() + this.opts.awarenessInterval;
      const update = awarenessProtocol.encodeAwarenessUpdate(aw, [this.doc.clientID]);
      this.stream.whisper(AWARENESS_EV, { y: this.doc.clientID, u: this.encode(update) });
    }, wait);
  }

  private onWhisper(aw: awarenessProtocol.Awareness, w: WhisperEvent): void {
    if (w.ev !== AWARENESS_EV) return;
    const data = w.data as { y?: unknown; u?: unknown } | null;
    if (data === null || data === undefined) {
      // The peer's connection dropped: its cursor goes now; its name stays
      // while presence holds it (the grace period), then goes too.
      const y = this.peers.get(w.from.client);
      if (y === undefined) return;
      const member = this.stream.presence.connection(w.from.client);
      const user = member?.state?.user ?? (aw.getStates().get(y) as { user?: unknown } | undefined)?.user;
      if (member && user !== undefined) setRemoteState(aw, y, { user });
      else {
        awarenessProtocol.removeAwarenessStates(aw, [y], ORIGIN_REMOTE);
        this.peers.delete(w.from.client);
      }
      return;
    }
    const update = decode(data.u);
    if (typeof data.y !== "number" || !update) return;
    this.peers.set(w.from.client, data.y);
    awarenessProtocol.applyAwarenessUpdate(aw, update, ORIGIN_REMOTE);
  }

  private emit(event: ProviderEvent, arg: unknown): void {
    for (const fn of [...(this.listeners.get(event) ?? [])]) fn(arg);
  }
}

// setRemoteState replaces a peer's awareness state in place, as an update
// from that peer would: a newer clock, and a change event for bindings.
function setRemoteState(aw: awarenessProtocol.Awareness, y: number, state: Record<string, unknown>): void {
  const meta = aw.meta.get(y);
  aw.states.set(y, state);
  aw.meta.set(y, { clock: (meta?.clock ?? 0) + 1, lastUpdated: Date.now() });
  const change = { added: [], updated: [y], removed: [] };
  aw.emit("change", [change, ORIGIN_REMOTE]);
  aw.emit("update", [change, ORIGIN_REMOTE]);
}

/** decode reads an update sent as msgpack binary or as a base64 string. */
export function decode(data: unknown): Uint8Array | null {
  if (data instanceof Uint8Array) return data;
  if (typeof data === "string") return fromBase64(data);
  return null;
}

const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const B64_INDEX = (() => {
  const t = new Int16Array(128).fill(-1);
  for (let i = 0; i < B64.length; i++) t[B64.charCodeAt(i)] = i;
  return t;
})();

/** toBase64 encodes bytes in standard base64 with padding (no btoa: it is not everywhere). */
export function toBase64(b: Uint8Array): string {
  let out = "";
  let i = 0;
  for (; i + 2 < b.length; i += 3) {
    const n = (b[i]! << 16) | (b[i + 1]! << 8) | b[i + 2]!;
    out += B64[n >> 18]! + B64[(n >> 12) & 63]! + B64[(n >> 6) & 63]! + B64[n & 63]!;
  }
  if (i < b.length) {
    const n = (b[i]! << 16) | ((b[i + 1] ?? 0) << 8);
    out += B64[n >> 18]! + B64[(n >> 12) & 63]! + (i + 1 < b.length ? B64[(n >> 6) & 63]! : "=") + "=";
  }
  return out;
}

/** fromBase64 decodes standard base64 (padding optional); null if it is not base64. */
export function fromBase64(s: string): Uint8Array | null {
  const clean = s.replace(/=+$/, "");
  if (clean.length % 4 === 1) return null;
  const out = new Uint8Array(Math.floor((clean.length * 3) / 4));
  let bits = 0;
  let acc = 0;
  let j = 0;
  for (let i = 0; i < clean.length; i++) {
    const c = clean.charCodeAt(i);
    const v = c < 128 ? B64_INDEX[c]! : -1;
    if (v < 0) return null;
    acc = (acc << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[j++] = (acc >> bits) & 255;
    }
  }
  return out;
}
