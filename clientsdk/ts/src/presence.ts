import type { Member, Presence as PresenceDiff } from "./gen/index.js";
import type { Huddle } from "./client.js";
import { Code } from "./gen/index.js";
import { HuddleError } from "./errors.js";
import { Events } from "./events.js";
import type { Stream } from "./stream.js";

/** PresenceConnection is one connection present in a stream. */
export interface PresenceConnection<S extends PresenceState = PresenceState> {
  user: string;
  client: string;
  /** info is the public user info from the connection's token. */
  info?: unknown;
  state?: S;
}

/** PresenceUser is one user present in a stream, with all its connections. */
export interface PresenceUser<S extends PresenceState = PresenceState> {
  user: string;
  info?: unknown;
  /** state is the state of the user's most recently changed connection. */
  state?: S;
  /** connections in the order they arrived. */
  connections: PresenceConnection<S>[];
}

/** The events of a {@link Presence}. */
export interface PresenceEvents<S extends PresenceState = PresenceState> {
  /** join: the user's first connection arrived. */
  join: PresenceUser<S>;
  /** leave: the user's last connection left. */
  leave: PresenceUser<S>;
  /** update: a state changed, or a further connection came or went. */
  update: PresenceUser<S>;
  /** change follows any of the above, with every user in join order. */
  change: PresenceUser<S>[];
  /** diff reports the same change per connection. */
  diff: { joined: PresenceConnection<S>[]; left: PresenceConnection<S>[]; updated: PresenceConnection<S>[] };
}

interface UserEntry<S extends PresenceState = PresenceState> {
  seq: number;
  last: string; // client changed most recently
  conns: Map<string, PresenceConnection<S>>;
}

type StateMap = Record<string, unknown>;

/** PresenceState is the shape of a presence state: a JSON object. */
export type PresenceState = Record<string, unknown>;

/**
 * Presence is who is in a stream, grouped by user: several tabs of one user
 * are one user with several connections. It also holds the own presence
 * state, which is rejoined after every reconnect.
 */
export class Presence<S extends PresenceState = PresenceState> extends Events<PresenceEvents<S>> {
  /** joined says whether this client is in the stream's presence (or will be after reconnecting). */
  joined = false;
  /** state is this client's own presence state. */
  state: S | undefined;

  private readonly client: Huddle;
  private readonly stream: Stream;
  private readonly entries = new Map<string, UserEntry<S>>();
  private seq = 0;
  private cache: Map<string, PresenceUser<S>> | undefined;

  /** @internal Use {@link Stream.presence}. */
  constructor(client: Huddle, stream: Stream) {
    super();
    this.client = client;
    this.stream = stream;
  }

  /** users maps each present user id to its entry. */
  get users(): ReadonlyMap<string, PresenceUser<S>> {
    if (!this.cache) {
      const m = new Map<string, PresenceUser<S>>();
      const sorted = Array.from(this.entries.entries()).sort((a, b) => a[1].seq - b[1].seq);
      for (const [user, e] of sorted) m.set(user, toUser<S>(user, e));
      this.cache = m;
    }
    return this.cache;
  }

  /** list returns the present users in join order. */
  list(): PresenceUser<S>[] {
    return Array.from(this.users.values());
  }

  /** get returns a user's entry. */
  get(user: string): PresenceUser<S> | undefined {
    return this.users.get(user);
  }

  /** count is the number of present users. */
  get count(): number {
    return this.entries.size;
  }

  /** me is this client's user entry, once present. */
  get me(): PresenceUser<S> | undefined {
    return this.client.user !== undefined ? this.users.get(this.client.user) : undefined;
  }

  /** connection returns a present connection by its client id. */
  connection(client: string): PresenceConnection<S> | undefined {
    for (const e of this.entries.values()) {
      const c = e.conns.get(client);
      if (c) return c;
    }
    return undefined;
  }

  /** join enters the stream's presence with state, or replaces the own state. */
  async join(state: S = {} as S): Promise<void> {
    this._remember(state);
    try {
      await this.client._call((id) => ({ t: "join", id, s: this.stream.name, state }), "ack");
    } catch (err) {
      // Refused (forbidden, too large, bad): do not rejoin it after a
      // reconnect. Other failures (timeout, dropped) keep it for the rejoin.
      const refused = err instanceof HuddleError && (err.code === Code.Forbidden || err.code === Code.BadRequest || err.code === Code.TooLarge);
      if (refused && sameValue(this.state, state)) {
        this.joined = false;
        this.state = undefined;
      }
      throw err;
    }
  }

  /**
   * update patches the own state: a shallow merge where null deletes a key.
   * Before join it joins with the patch as the state. Updates are
   * ephemeral: while disconnected only the merged state is kept, and it is
   * sent with the rejoin.
   */
  update(patch: Partial<{ [K in keyof S]: S[K] | null }>): void {
    if (!this.joined) {
      const state: StateMap = {};
      for (const [k, v] of Object.entries(patch)) if (v !== null) state[k] = v;
      this.join(state as S).catch((err) => this.client._emitError(err));
      return;
    }
    this.state = merge(this.state ?? {}, patch as StateMap) as S;
    this.client._send({ t: "update", s: this.stream.name, state: patch });
  }

  /** leave removes the own presence. */
  async leave(): Promise<void> {
    this.joined = false;
    this.state = undefined;
    await this.client._call((id) => ({ t: "leave", id, s: this.stream.name }), "ack");
  }

  // ---- driven by the stream ----

  /** @internal */
  _remember(state: S): void {
    this.joined = true;
    this.state = { ...state };
  }

  /** @internal _onSnapshot replaces the members with a subscribe's snapshot, announcing the difference. */
  _onSnapshot(members: Member[]): void {
    const next = new Map<string, Member>();
    for (const m of members) next.set(m.client, m);
    const joined: PresenceConnection<S>[] = [];
    const left: string[] = [];
    const updated: PresenceConnection<S>[] = [];
    for (const e of this.entries.values()) {
      for (const c of e.conns.keys()) if (!next.has(c)) left.push(c);
    }
    for (const m of next.values()) {
      const cur = this.connection(m.client);
      if (!cur) joined.push(toConn<S>(m));
      else if (!sameValue(cur.state, m.state) || !sameValue(cur.info, m.info)) updated.push(toConn<S>(m));
    }
    this.apply(joined, left, updated);
  }

  /** @internal */
  _onDiff(d: PresenceDiff): void {
    const joined: PresenceConnection<S>[] = [];
    const updated: PresenceConnection<S>[] = [];
    for (const m of d.joins ?? []) {
      if (this.connection(m.client)) updated.push(toConn<S>(m));
      else joined.push(toConn<S>(m));
    }
    for (const u of d.updates ?? []) {
      const cur = this.connection(u.client);
      if (!cur) continue;
      const patch = u.state;
      const state = isMap(patch) ? merge(isMap(cur.state) ? cur.state : {}, patch) : patch;
      updated.push({ ...cur, state: state as S });
    }
    this.apply(joined, (d.leaves ?? []).map((l) => l.client), updated);
  }

  /** @internal _clear removes every member, announcing their leave. */
  _clear(): void {
    const left: string[] = [];
    for (const e of this.entries.values()) left.push(...e.conns.keys());
    this.apply([], left, []);
  }

  private apply(joined: PresenceConnection<S>[], leftClients: string[], updated: PresenceConnection<S>[]): void {
    if (joined.length === 0 && leftClients.length === 0 && updated.length === 0) return;
    const before = new Map<string, PresenceUser<S> | undefined>();
    const touch = (user: string): void => {
      if (!before.has(user)) before.set(user, this.users.get(user));
    };
    const left: PresenceConnection<S>[] = [];
    for (const client of leftClients) {
      for (const [user, e] of this.entries) {
        const c = e.conns.get(client);
        if (!c) continue;
        touch(user);
        left.push(c);
        e.conns.delete(client);
        if (e.conns.size === 0) this.entries.delete(user);
        else if (e.last === client) e.last = Array.from(e.conns.keys()).pop()!;
        break;
      }
    }
    for (const c of [...joined, ...updated]) {
      touch(c.user);
      let e = this.entries.get(c.user);
      if (!e) {
        e = { seq: ++this.seq, last: c.client, conns: new Map() };
        this.entries.set(c.user, e);
      }
      e.conns.set(c.client, c);
      e.last = c.client;
    }
    this.cache = undefined;
    this.emit("diff", { joined, left, updated });
    for (const [user, was] of before) {
      const now = this.users.get(user);
      if (!was && now) this.emit("join", now);
      else if (was && !now) this.emit("leave", was);
      else if (now) this.emit("update", now);
    }
    this.emit("change", this.list());
  }
}

function toConn<S extends PresenceState>(m: Member): PresenceConnection<S> {
  const c: PresenceConnection<S> = { user: m.user, client: m.client };
  if (m.info !== undefined) c.info = m.info;
  if (m.state !== undefined) c.state = m.state as S;
  return c;
}

function toUser<S extends PresenceState>(user: string, e: UserEntry<S>): PresenceUser<S> {
  const connections = Array.from(e.conns.values());
  const last = e.conns.get(e.last) ?? connections[connections.length - 1];
  const u: PresenceUser<S> = { user, connections };
  const info = last?.info ?? connections.find((c) => c.info !== undefined)?.info;
  if (info !== undefined) u.info = info;
  if (last?.state !== undefined) u.state = last.state;
  return u;
}

function isMap(v: unknown): v is StateMap {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);
}

/** merge applies a shallow patch: null deletes a key. */
function merge(state: StateMap, patch: StateMap): StateMap {
  const out: StateMap = { ...state };
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = v;
  }
  return out;
}

function sameValue(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  try {
    return JSON.stringify(a) === JSON.stringify(b);
  } catch {
    return false;
  }
}
