import type { Huddle, Position, PresenceState, Stream, StreamOptions } from "@huddle/client";

/** Options of {@link useStream}. The first component to ask for a stream sets them (see the README). */
export interface UseStreamOptions<S extends PresenceState = PresenceState> {
  /**
   * presence receives the stream's presence (who is there). Default false;
   * the presence and cursor hooks ask for it themselves. When a component
   * asks for presence on a stream that is already subscribed without it,
   * the stream is subscribed again with presence, recovering from its
   * position so that no publication is lost or repeated.
   */
  presence?: boolean;
  /** join enters presence with this state (implies presence). */
  join?: S;
  /** recover resubscribes from the last position seen after a reconnect. Default true. */
  recover?: boolean;
  /** since is a position saved earlier to recover from on the first subscribe. */
  since?: Position;
}

interface Entry {
  readonly name: string;
  /** mounted users: components whose effect acquired the stream and has not released it. */
  refs: number;
  /** what the users asked for, merged */
  presence: boolean;
  join: PresenceState | undefined;
  recover: boolean | undefined;
  since: Position | undefined;
  /** the SDK stream, once made (on the microtask after the first acquire) */
  stream: Stream | null;
  /** whether stream was made with presence */
  streamPresence: boolean;
  /** whether the registry made stream (and so unsubscribes it); false for one the app made with client.stream() */
  owned: boolean;
  scheduled: boolean;
  releaseTimer: ReturnType<typeof setTimeout> | undefined;
}

/**
 * StreamRegistry counts the mounted users of each stream of one client. The
 * first user makes the stream (client.stream, which subscribes), the last
 * one to unmount unsubscribes it. Both are deferred a little:
 *
 * - making it waits for a microtask, so that all the components mounted in
 *   one commit merge their options (presence, join) into one subscribe;
 * - releasing it waits for a macrotask, so that StrictMode's
 *   mount -> unmount -> mount (all in one commit) and a component that
 *   moves in the tree keep the one subscription instead of sub, unsub, sub.
 *
 * It is an external store for useSyncExternalStore: subscribe is told when a
 * stream is made, replaced or dropped and when the own presence changes.
 */
export class StreamRegistry {
  readonly client: Huddle;
  private readonly entries = new Map<string, Entry>();
  private readonly listeners = new Set<() => void>();

  constructor(client: Huddle) {
    this.client = client;
  }

  /** subscribe calls fn after every change; returns its remover. */
  readonly subscribe = (fn: () => void): (() => void) => {
    this.listeners.add(fn);
    return () => {
      this.listeners.delete(fn);
    };
  };

  /** get returns the stream called name, once made. */
  get(name: string): Stream | null {
    return this.entries.get(name)?.stream ?? null;
  }

  /** refs returns the count of mounted users of name (for tests and devtools). */
  refs(name: string): number {
    return this.entries.get(name)?.refs ?? 0;
  }

  /** acquire adds a user of the stream called name. Pair it with release. */
  acquire<S extends PresenceState>(name: string, opts: UseStreamOptions<S> = {}): void {
    let e = this.entries.get(name);
    if (!e) {
      e = {
        name,
        refs: 0,
        presence: false,
        join: undefined,
        recover: undefined,
        since: undefined,
        stream: null,
        streamPresence: false,
        owned: false,
        scheduled: false,
        releaseTimer: undefined,
      };
      this.entries.set(name, e);
    }
    if (e.releaseTimer !== undefined) {
      clearTimeout(e.releaseTimer);
      e.releaseTimer = undefined;
    }
    e.refs++;
    if (opts.presence === true || opts.join !== undefined) e.presence = true;
    if (opts.recover !== undefined && e.recover === undefined) e.recover = opts.recover;
    if (opts.since !== undefined && e.since === undefined) e.since = { ...opts.since };
    if (opts.join !== undefined) {
      const s = this.alive(e);
      if (s && !s.presence.joined) {
        s.presence.join({ ...opts.join }).catch((err: unknown) => this.report(err));
      } else if (!s && e.join === undefined) {
        e.join = { ...opts.join };
      }
    }
    if (!this.alive(e) || (e.owned && e.presence && !e.streamPresence)) this.schedule(e);
    // The own presence state may have changed (a pending join).
    this.emit();
  }

  /** release removes a user; the last one's release unsubscribes the stream (a macrotask later). */
  release(name: string): void {
    const e = this.entries.get(name);
    if (!e || e.refs <= 0) return;
    e.refs--;
    if (e.refs > 0) return;
    clearTimeout(e.releaseTimer);
    e.releaseTimer = setTimeout(() => {
      e.releaseTimer = undefined;
      if (e.refs > 0 || this.entries.get(name) !== e) return;
      this.entries.delete(name);
      const s = e.stream;
      e.stream = null;
      if (s && e.owned) s.unsubscribe();
      this.emit();
    }, 0);
  }

  /**
   * updatePresence patches the own presence state on name (a shallow merge;
   * null deletes a key), joining with it if not joined yet. Before the
   * stream exists the patch is kept and sent with its subscribe.
   */
  updatePresence(name: string, patch: Record<string, unknown>): void {
    const e = this.entries.get(name);
    if (!e) return;
    const s = this.alive(e);
    if (s) {
      s.presence.update(patch as Partial<Record<string, unknown>>);
    } else {
      e.join = merge(e.join ?? {}, patch);
      e.presence = true;
    }
    this.emit();
  }

  /** myState is the own presence state on name (the pending one before the stream exists). */
  myState(name: string): PresenceState | undefined {
    const e = this.entries.get(name);
    if (!e) return undefined;
    const s = this.alive(e);
    return s ? s.presence.state : e.join;
  }

  /** alive returns e's stream while the client still has it (the server may have ended it). */
  private alive(e: Entry): Stream | null {
    const s = e.stream;
    return s && this.client.streams.get(e.name) === s ? s : null;
  }

  private schedule(e: Entry): void {
    if (e.scheduled) return;
    e.scheduled = true;
    queueMicrotask(() => {
      e.scheduled = false;
      this.materialize(e);
    });
  }

  private materialize(e: Entry): void {
    if (this.entries.get(e.name) !== e || e.refs === 0) return;
    const cur = e.stream;
    const alive = this.alive(e);
    if (alive && (!e.owned || !e.presence || e.streamPresence)) return;
    let since = e.since;
    let join = e.join;
    if (cur && e.recover !== false && cur.position) since = { ...cur.position };
    if (alive) {
      // Upgrade: subscribed without presence, and now a component wants it.
      // The SDK keeps a stream's options for its life, so it is replaced:
      // unsub and sub go out in one frame, and the new subscribe recovers
      // from the old position.
      if (alive.presence.joined) join = alive.presence.state ?? {};
      alive.unsubscribe();
    }
    const existing = this.client.streams.get(e.name);
    if (existing) {
      // Made by the app with client.stream(): share it, never unsubscribe it.
      e.stream = existing;
      e.owned = false;
      e.streamPresence = true; // not known; it is not ours to replace
      if (join !== undefined && !existing.presence.joined) {
        existing.presence.join(join).catch((err: unknown) => this.report(err));
      }
    } else {
      const opts: StreamOptions = {};
      if (e.presence) opts.presence = true;
      if (join !== undefined) opts.join = join;
      if (e.recover !== undefined) opts.recover = e.recover;
      if (since !== undefined) opts.since = since;
      e.stream = this.client.stream(e.name, opts);
      e.owned = true;
      e.streamPresence = e.presence;
    }
    e.join = undefined;
    this.emit();
  }

  private report(err: unknown): void {
    // The SDK reports a failed join on the client's error event itself when
    // it is sent by update(); a direct join() rejects instead: pass it on.
    (this.client as unknown as { _emitError?: (e: unknown) => void })._emitError?.(err);
  }

  private emit(): void {
    for (const fn of Array.from(this.listeners)) fn();
  }
}

function merge(state: PresenceState, patch: Record<string, unknown>): PresenceState {
  const out: PresenceState = { ...state };
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = v;
  }
  return out;
}
