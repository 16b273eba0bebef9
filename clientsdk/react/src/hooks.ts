import { useCallback, useEffect, useMemo, useRef, useState, useSyncExternalStore } from "react";
import type {
  ConnectionState,
  Cursor,
  Cursors as CursorsHelper,
  Huddle,
  PresenceState,
  PresenceUser,
  Publication,
  Stream,
  StreamState,
  WhisperEvent,
} from "@huddle/client";
import { useHuddleContext, useStreamName } from "./context.js";
import type { UseStreamOptions } from "./registry.js";

const noSubscribe = (): (() => void) => () => {};
const EMPTY: readonly never[] = Object.freeze([]);
const NO_USERS: ReadonlyMap<string, PresenceUser<never>> = new Map();

/** useHuddle returns the provider's client: null on the server and until the provider made it. */
export function useHuddle(): Huddle | null {
  return useHuddleContext("useHuddle").client;
}

/**
 * useConnectionState returns the client's connection state and re-renders on
 * every change. "disconnected" on the server and before the client exists.
 */
export function useConnectionState(): ConnectionState {
  const client = useHuddleContext("useConnectionState").client;
  const subscribe = useCallback((fn: () => void) => (client ? client.on("state", fn) : () => {}), [client]);
  return useSyncExternalStore(
    subscribe,
    () => client?.state ?? "disconnected",
    () => "disconnected",
  );
}

// The SDK forgets client.user while reconnecting, but keeps the stream's
// presence: the last user seen keeps "me" out of useOthers meanwhile.
const lastUser = new WeakMap<Huddle, string>();

function userOf(client: Huddle | null): string | undefined {
  if (!client) return undefined;
  const u = client.user;
  if (u !== undefined) {
    lastUser.set(client, u);
    return u;
  }
  return lastUser.get(client);
}

/** @internal useMyUser is the client's user id: the current one, else the last one seen. */
export function useMyUser(client: Huddle | null): string | undefined {
  const subscribe = useCallback((fn: () => void) => (client ? client.on("state", fn) : () => {}), [client]);
  return useSyncExternalStore(
    subscribe,
    () => userOf(client),
    () => undefined,
  );
}

/**
 * useStream subscribes to the stream called name (or the nearest
 * StreamProvider's) while the component is mounted, and returns it: null on
 * the server and until the subscription is set up. Every component of one
 * provider that uses the same stream shares one subscription; it ends when
 * the last of them unmounts. The first user's options count, except that
 * presence is added (by resubscribing, with recovery) when a later user
 * asks for it, and join joins when not joined yet.
 *
 * T is a publication's data, S a presence state, C a cursor's value; they
 * are compile-time only.
 */
export function useStream<T = unknown, S extends PresenceState = PresenceState, C = unknown>(
  name?: string,
  options: UseStreamOptions<S> = {},
): Stream<T, S, C> | null {
  const { registry } = useHuddleContext("useStream");
  const n = useStreamName(name, "useStream");
  const presence = options.presence === true || options.join !== undefined;
  // The rest of the options count when the effect runs (the first time for
  // this stream and provider); they need no re-run when their identity changes.
  const opts = useRef(options);
  opts.current = options;
  useEffect(() => {
    if (!registry) return;
    const o = opts.current;
    const a: UseStreamOptions = { presence };
    if (o.join !== undefined) a.join = o.join;
    if (o.recover !== undefined) a.recover = o.recover;
    if (o.since !== undefined) a.since = o.since;
    registry.acquire(n, a);
    return () => registry.release(n);
  }, [registry, n, presence]);
  const stream = useSyncExternalStore(
    registry ? registry.subscribe : noSubscribe,
    () => registry?.get(n) ?? null,
    () => null,
  );
  return stream as Stream<T, S, C> | null;
}

/**
 * useStreamState returns the state of this provider's subscription to a
 * stream ("unsubscribed" | "subscribing" | "subscribed") and re-renders when
 * it changes. It holds the subscription like useStream. "unsubscribed" on the
 * server.
 */
export function useStreamState(name?: string, options: UseStreamOptions = {}): StreamState {
  const { client } = useHuddleContext("useStreamState");
  const s = useStream(name, options);
  const subscribe = useCallback(
    (fn: () => void) => {
      if (!s || !client) return () => {};
      const offs = [s.on("subscribed", fn), s.on("unsubscribed", fn), client.on("state", fn)];
      return () => {
        for (const off of offs) off();
      };
    },
    [s, client],
  );
  return useSyncExternalStore(
    subscribe,
    () => s?.state ?? "unsubscribed",
    () => "unsubscribed",
  );
}

/** Options of {@link usePublications}. */
export interface UsePublicationsOptions {
  /** limit is how many of the latest publications are kept. Default 50. */
  limit?: number;
  /**
   * history loads the latest `limit` publications from the stream's history
   * when it is first subscribed, and again after a reconnect that could not
   * recover what was missed. Default false: only publications that arrive
   * while mounted.
   */
  history?: boolean;
}

/**
 * usePublications returns the latest publications of a stream, oldest first,
 * in offset order and each once (as the SDK delivers them). Empty on the
 * server.
 */
export function usePublications<T = unknown>(stream?: string, options: UsePublicationsOptions = {}): readonly Publication<T>[] {
  const n = useStreamName(stream, "usePublications");
  const s = useStream<T>(n);
  const limit = Math.max(1, options.limit ?? 50);
  const history = options.history === true;
  const [state, setState] = useState<{ name: string; pubs: readonly Publication<T>[] }>({ name: n, pubs: EMPTY });
  useEffect(() => {
    if (!s) return;
    let live = true;
    const add = (list: readonly Publication<T>[]): void => {
      if (!live || list.length === 0) return;
      setState((prev) => {
        const base = prev.name === n ? prev.pubs : EMPTY;
        const pubs = mergePublications(base, list, limit);
        return pubs === base && prev.name === n ? prev : { name: n, pubs };
      });
    };
    const offs = [s.on("publication", (p) => add([p]))];
    if (history) {
      const load = (): void => {
        s.history({ limit, reverse: true }).then(
          (page) => add(page.pubs.slice().reverse()),
          () => {
            // A failed read leaves the live publications; the next
            // resubscribe that cannot recover reads again.
          },
        );
      };
      offs.push(
        s.on("subscribed", (e) => {
          if (e.recovered !== true) load();
        }),
      );
      if (s.state === "subscribed") load();
    }
    return () => {
      live = false;
      for (const off of offs) off();
    };
  }, [s, n, limit, history]);
  return state.name === n ? state.pubs : EMPTY;
}

/**
 * mergePublications adds pubs to list (sorted by offset, one epoch), keeping
 * the last limit. A publication of another epoch (the stream's history was
 * lost and started again) replaces the list.
 */
export function mergePublications<T>(list: readonly Publication<T>[], pubs: readonly Publication<T>[], limit: number): readonly Publication<T>[] {
  let out: Publication<T>[] | null = null;
  for (const p of pubs) {
    const cur: readonly Publication<T>[] = out ?? list;
    const last = cur[cur.length - 1];
    if (last && last.epoch !== p.epoch) {
      out = [p];
      continue;
    }
    if (!last || p.offset > last.offset) {
      out ??= list.slice();
      out.push(p);
      continue;
    }
    // Older than the newest: insert in order unless present already.
    let i = cur.length - 1;
    while (i >= 0 && cur[i]!.offset > p.offset) i--;
    if (i >= 0 && cur[i]!.offset === p.offset) continue;
    out ??= list.slice();
    out.splice(i + 1, 0, p);
  }
  if (!out) return list;
  return out.length > limit ? out.slice(out.length - limit) : out;
}

function usePresenceUsers<S extends PresenceState>(stream: string | undefined, hook: string): {
  users: ReadonlyMap<string, PresenceUser<S>>;
  client: Huddle | null;
} {
  const { client } = useHuddleContext(hook);
  const n = useStreamName(stream, hook);
  const s = useStream<unknown, S>(n, { presence: true });
  const subscribe = useCallback((fn: () => void) => (s ? s.presence.on("change", fn) : () => {}), [s]);
  const users = useSyncExternalStore(
    subscribe,
    () => (s ? s.presence.users : (NO_USERS as ReadonlyMap<string, PresenceUser<S>>)),
    () => NO_USERS as ReadonlyMap<string, PresenceUser<S>>,
  );
  return { users, client };
}

/**
 * usePresence returns everyone present in a stream (this user included), one
 * entry per user in join order. Empty on the server.
 */
export function usePresence<S extends PresenceState = PresenceState>(stream?: string): readonly PresenceUser<S>[] {
  const { users } = usePresenceUsers<S>(stream, "usePresence");
  return useMemo(() => (users.size === 0 ? EMPTY : Array.from(users.values())), [users]);
}

/**
 * useOthers returns the users present in a stream other than this client's
 * user (this user's other tabs count as this user). Empty on the server.
 */
export function useOthers<S extends PresenceState = PresenceState>(stream?: string): readonly PresenceUser<S>[] {
  const { users, client } = usePresenceUsers<S>(stream, "useOthers");
  const me = useMyUser(client);
  return useMemo(() => {
    if (users.size === 0) return EMPTY;
    const out: PresenceUser<S>[] = [];
    for (const u of users.values()) if (u.user !== me) out.push(u);
    return out;
  }, [users, me]);
}

/** A patch of a presence state: a shallow merge where null deletes a key. */
export type PresencePatch<S extends PresenceState> = Partial<{ [K in keyof S]: S[K] | null }>;

/**
 * useMyPresence returns this client's presence state in a stream and a
 * function that patches it (a shallow merge, null deletes a key; the first
 * patch joins). With initial, the stream is joined with it on subscribe when
 * not joined already. The state is undefined on the server and before
 * joining.
 */
export function useMyPresence<S extends PresenceState = PresenceState>(
  stream?: string,
  initial?: S,
): [S | undefined, (patch: PresencePatch<S>) => void] {
  const { registry } = useHuddleContext("useMyPresence");
  const n = useStreamName(stream, "useMyPresence");
  const s = useStream<unknown, S>(n, initial !== undefined ? { presence: true, join: initial } : { presence: true });
  const subscribe = useCallback(
    (fn: () => void) => {
      if (!registry) return () => {};
      const offs = [registry.subscribe(fn)];
      if (s) offs.push(s.presence.on("change", fn));
      return () => {
        for (const off of offs) off();
      };
    },
    [registry, s],
  );
  const state = useSyncExternalStore(
    subscribe,
    () => registry?.myState(n) as S | undefined,
    () => undefined,
  );
  const update = useCallback(
    (patch: PresencePatch<S>) => {
      registry?.updatePresence(n, patch as Record<string, unknown>);
    },
    [registry, n],
  );
  return [state, update];
}

/** Options of {@link useCursors}. */
export interface UseCursorsOptions {
  /** ev is the whisper event carrying the cursors. Default "cursor". */
  ev?: string;
  /** interval is the least time between two sends, in ms (the SDK's; the first user's counts). Default 33. */
  interval?: number;
  /**
   * join makes the first move join the stream's presence (with an empty
   * state) when this client has not joined it yet. Others learn the mover's
   * name from presence, and drop its cursor when it leaves presence, so a
   * cursor sent without joining stays on the others' screens until it is
   * hidden. Default true.
   */
  join?: boolean;
}

/** What {@link useCursors} returns. */
export interface CursorsState<C> {
  /** others are the other connections' latest cursors, in the order they first moved. */
  others: readonly Cursor<C>[];
  /** move sets this client's cursor (sent at most once per frame / interval). */
  move: (value: C) => void;
  /** hide removes this client's cursor for the others. */
  hide: () => void;
}

interface Snapshot<V> {
  subscribe(fn: () => void): () => void;
  get(): V;
}

const cursorSnapshots = new WeakMap<object, Snapshot<readonly Cursor<unknown>[]>>();

/** cursorSnapshot keeps an immutable copy of a Cursors helper's others, renewed on its change event. */
function cursorSnapshot<C>(c: CursorsHelper<C>): Snapshot<readonly Cursor<C>[]> {
  let snap = cursorSnapshots.get(c) as Snapshot<readonly Cursor<C>[]> | undefined;
  if (!snap) {
    let value: readonly Cursor<C>[] = c.others.size === 0 ? EMPTY : Array.from(c.others.values());
    const fns = new Set<() => void>();
    c.on("change", (others) => {
      value = others.size === 0 ? EMPTY : Array.from(others.values());
      for (const fn of Array.from(fns)) fn();
    });
    snap = {
      subscribe(fn) {
        fns.add(fn);
        return () => {
          fns.delete(fn);
        };
      },
      get: () => value,
    };
    cursorSnapshots.set(c, snap as Snapshot<readonly Cursor<unknown>[]>);
  }
  return snap;
}

/**
 * useCursors shares a cursor over whispers with the SDK's cursor helper:
 * others are the other connections' cursors (dropped when they hide them or
 * leave presence), move and hide set this client's. The stream is
 * subscribed with presence, which tells when a connection leaves, and the
 * first move joins presence (see UseCursorsOptions.join). A component that
 * moved its cursor hides it when it unmounts.
 */
export function useCursors<C = unknown>(stream?: string, options: UseCursorsOptions = {}): CursorsState<C> {
  const { registry } = useHuddleContext("useCursors");
  const n = useStreamName(stream, "useCursors");
  const s = useStream<unknown, PresenceState, C>(n, { presence: true });
  const ev = options.ev ?? "cursor";
  const interval = options.interval;
  // The SDK keeps one helper per stream and event: asking again is cheap
  // and returns the same one.
  const helper = useMemo(() => (s ? s.cursors(interval !== undefined ? { ev, interval } : { ev }) : null), [s, ev, interval]);
  const snap = helper ? cursorSnapshot(helper) : null;
  const others = useSyncExternalStore(
    snap ? snap.subscribe : noSubscribe,
    () => (snap ? snap.get() : EMPTY),
    () => EMPTY,
  );
  const moved = useRef(false);
  useEffect(() => {
    if (!helper) return;
    return () => {
      if (moved.current) {
        moved.current = false;
        helper.hide();
      }
    };
  }, [helper]);
  const join = options.join !== false;
  const move = useCallback(
    (value: C) => {
      if (!helper || !s) return;
      if (join && !s.presence.joined) registry?.updatePresence(n, {});
      moved.current = true;
      helper.move(value);
    },
    [helper, s, join, registry, n],
  );
  const hide = useCallback(() => {
    moved.current = false;
    helper?.hide();
  }, [helper]);
  return useMemo(() => ({ others, move, hide }), [others, move, hide]);
}

/** A whisper whose data is typed. */
export type Whisper<T> = Omit<WhisperEvent, "data"> & { data: T };

/** Options of {@link useWhisper}. */
export interface UseWhisperOptions {
  /** ev passes only whispers of this event to the handler. */
  ev?: string;
}

/**
 * useWhisper calls handler (the latest one given) with the whispers of other
 * connections on a stream, and returns a function that whispers: send(ev,
 * data) returns false, sending nothing, while the stream is not subscribed.
 */
export function useWhisper<T = unknown>(
  stream?: string,
  handler?: (w: Whisper<T>) => void,
  options: UseWhisperOptions = {},
): (ev: string, data: T) => boolean {
  const n = useStreamName(stream, "useWhisper");
  const s = useStream(n);
  const ref = useRef(handler);
  useEffect(() => {
    ref.current = handler;
  });
  const ev = options.ev;
  useEffect(() => {
    if (!s) return;
    return s.on("whisper", (w) => {
      if (ev !== undefined && w.ev !== ev) return;
      ref.current?.(w as Whisper<T>);
    });
  }, [s, ev]);
  return useCallback((e: string, data: T) => (s ? s.whisper(e, data) : false), [s]);
}
