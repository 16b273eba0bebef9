import type { ClientInfo, ClientMessage, Position, Pub, ServerMessage, Whisper } from "./gen/index.js";
import { Code } from "./gen/index.js";
import type { Huddle } from "./client.js";
import { Cursors, type CursorsOptions } from "./cursors.js";
import { HuddleError } from "./errors.js";
import { Events } from "./events.js";
import { Presence, type PresenceState } from "./presence.js";

/** Options of {@link Huddle.stream}. */
export interface StreamOptions<S extends PresenceState = PresenceState> {
  /** presence receives the stream's presence snapshot and diffs. Default false. */
  presence?: boolean;
  /** join joins presence with this state at once (implies presence). */
  join?: S;
  /** recover resubscribes with the last position seen, so nothing is missed. Default true. */
  recover?: boolean;
  /** since is a position saved earlier to recover from on the first subscribe. */
  since?: Position;
}

/** Publication is one publication of a stream. */
export interface Publication<T = unknown> {
  stream: string;
  /** offset numbers the publication within its epoch: previous + 1. */
  offset: number;
  epoch: string;
  data: T;
  /** from is the publishing connection; absent for server-side publishes. */
  from?: ClientInfo;
  /** ts is the publish time, unix ms. */
  ts: number;
  /**
   * recovered is true for publications missed while away and delivered on
   * resubscribe (in subscribed's reply or, for a large backlog, right after
   * the subscribed event), false for live ones. A document's publications
   * delivered at subscribe count as recovered too.
   */
  recovered: boolean;
  /**
   * snapshot marks a document's snapshot: data is the state of the
   * document through offset, replacing every publication up to it (see
   * {@link Stream.compact}). The next publication has offset + 1.
   */
  snapshot?: boolean;
}

/** WhisperEvent is an ephemeral event from another subscriber. */
export interface WhisperEvent {
  ev: string;
  data: unknown;
  from: ClientInfo;
}

/** The events of a {@link Stream}. */
export interface StreamEvents<T = unknown> {
  /**
   * subscribed follows every (re)subscribe. recovered is set when the
   * subscribe asked to recover: false means publications were missed and
   * could not be delivered, so reload the state (e.g. with history()).
   * missed counts the publications recovered (0 unless recovered is true).
   * A small backlog is delivered before this event; of a large one, only the
   * first part is, and the rest follows as publication events with
   * recovered: true, in order, before any live one.
   */
  subscribed: { epoch: string; offset: number; recovered?: boolean; missed: number; document?: boolean };
  /**
   * compact: the server asks for a snapshot of this document stream (every
   * so many publications, on the ack of one of ours). Answer with
   * {@link Stream.compact}.
   */
  compact: { epoch: string; offset: number };
  /** publication delivers publications in offset order, each once. */
  publication: Publication<T>;
  whisper: WhisperEvent;
  /** unsubscribed reports that the server refused or ended the subscription. */
  unsubscribed: { code: number; reason: string };
  error: HuddleError;
}

/** StreamState is the state of a stream's subscription. */
export type StreamState = "unsubscribed" | "subscribing" | "subscribed";

/**
 * HistoryOptions select publications for {@link Stream.history} (and,
 * without reverse, for {@link Stream.historyPages} and {@link Stream.historyAll}).
 */
export interface HistoryOptions {
  /** since returns publications after this position; by default from the oldest the server holds. */
  since?: Position;
  /** limit caps the count of a page (server default 100, max 1000); with historyPages and historyAll, of each page. */
  limit?: number;
  /** reverse returns the newest first (history only: paging goes forward). */
  reverse?: boolean;
}

/** HistoryPage is the answer of {@link Stream.history}. */
export interface HistoryPage<T = unknown> {
  pubs: Publication<T>[];
  /** epoch and offset are the stream's top. */
  epoch: string;
  offset: number;
  /**
   * more says that more publications match than were returned: the page
   * was cut by limit or by the server's byte budget per page. Ask again with
   * since at the last publication of the page (see historyPages).
   */
  more: boolean;
}

/**
 * Stream is a client's subscription to one stream: it delivers publications
 * in order exactly once across reconnects, and carries the stream's
 * presence, whispers and cursors.
 */
export class Stream<T = unknown, S extends PresenceState = PresenceState, C = unknown> extends Events<StreamEvents<T>> {
  readonly name: string;
  /** state is the subscription's state. */
  state: StreamState = "unsubscribed";
  /** position is the last publication seen (or the top at subscribe). Save it to resume later with `since`. */
  position: Position | undefined;
  /** presence is the stream's presence, grouped by user. */
  readonly presence: Presence<S>;

  private readonly client: Huddle;
  private readonly opts: StreamOptions<S>;
  private readonly cursorSets = new Map<string, Cursors<C>>();
  private readonly latestWhispers = new Map<string, WhisperEvent>(); // by ev + "\n" + client
  private closed = false;
  private subGen = 0;
  private retryTimer: unknown;
  private retries = 0; // failed subscribes in a row, for the backoff
  // The top that subscribed reported, while missed publications up to it may
  // still arrive as pub messages (a recovered backlog too large for the reply).
  private recoverTop: Position | undefined;
  private isDocument = false;

  /** @internal Use {@link Huddle.stream}. */
  constructor(client: Huddle, name: string, opts: StreamOptions<S>) {
    super();
    this.client = client;
    this.name = name;
    this.opts = { ...opts };
    this.position = opts.since ? { ...opts.since } : undefined;
    this.presence = new Presence<S>(client, this as unknown as Stream);
    if (opts.join) this.presence._remember(opts.join);
    this.presence.on("diff", (d) => {
      for (const c of d.left) {
        for (const [k, w] of this.latestWhispers) if (w.from.client === c.client) this.latestWhispers.delete(k);
      }
    });
  }

  /**
   * publish appends data to the stream and resolves with its offset and
   * epoch. On a document stream the server may ask, in the reply, for a
   * snapshot: the stream then emits "compact".
   */
  async publish(data: T): Promise<{ offset: number; epoch: string }> {
    const ack = await this.client._call((id) => ({ t: "pub", id, s: this.name, data }), "ack");
    const out = { offset: ack.offset ?? 0, epoch: ack.epoch ?? "" };
    if (ack.compact) this.emit("compact", out);
    return out;
  }

  /**
   * document is true once the server said the stream is a document (a rule
   * with document=on): it keeps a snapshot and every publication since, and
   * a subscribe without a position to recover from receives all of it.
   */
  get document(): boolean {
    return this.isDocument;
  }

  /**
   * compact stores data as the document's snapshot through the last
   * publication this stream delivered (or `at`): data must hold the effect
   * of every publication up to that offset (it may hold later ones too when
   * applying a publication twice is harmless, as with a CRDT). The server
   * then drops those publications; joiners get the snapshot first. Resolves
   * with the snapshot's position; rejects with 4010 when the epoch changed
   * meanwhile and 4004 on a stream that is not a document.
   */
  async compact(data: unknown, at?: Position): Promise<Position> {
    const pos = at ?? this.position;
    if (!pos || pos.offset <= 0) throw new HuddleError(Code.BadRequest, "compact: nothing delivered yet to take a snapshot of");
    const ack = await this.client._call((id) => ({ t: "compact", id, s: this.name, epoch: pos.epoch, offset: pos.offset, data }), "ack");
    return { epoch: ack.epoch ?? pos.epoch, offset: ack.offset ?? pos.offset };
  }

  /**
   * history reads one page of stored publications. A page holds at most
   * limit publications and at most the server's byte budget per page (at
   * least one); more: true says there are more. See historyPages to read
   * them all.
   */
  async history(opts: HistoryOptions = {}): Promise<HistoryPage<T>> {
    const h = await this.client._call((id) => {
      const m: ClientMessage = { t: "history", id, s: this.name };
      if (opts.since) m.since = opts.since;
      if (opts.limit !== undefined) m.limit = opts.limit;
      if (opts.reverse) m.reverse = true;
      return m;
    }, "history");
    return { pubs: h.pubs.map((p) => toPublication<T>(p, false)), epoch: h.epoch, offset: h.offset, more: h.more ?? false };
  }

  /**
   * historyPages reads the stored publications after since (oldest first),
   * page by page: it yields each page and, while the server says more, asks
   * for the next one after the last publication received. Stop iterating to
   * stop asking. It follows one epoch: if the stream's history is lost
   * meanwhile (a new epoch), the next page rejects with error 4010. Paging
   * goes forward only; for the newest publications first, use history with
   * reverse (one page).
   */
  async *historyPages(opts: Omit<HistoryOptions, "reverse"> = {}): AsyncGenerator<HistoryPage<T>, void, undefined> {
    if ((opts as HistoryOptions).reverse) throw new TypeError("Huddle: historyPages pages forward only; use history({ reverse: true }) for one page of the newest");
    let since = opts.since ? { ...opts.since } : undefined;
    for (;;) {
      const page = await this.history(since ? { since, limit: opts.limit } : { limit: opts.limit });
      yield page;
      const last = page.pubs[page.pubs.length - 1];
      if (!page.more || !last) return;
      if (since && last.epoch === since.epoch && last.offset <= since.offset) {
        throw new HuddleError(0, `history did not move past offset ${since.offset}`);
      }
      since = { epoch: last.epoch, offset: last.offset };
    }
  }

  /**
   * historyAll reads every stored publication after since (oldest first),
   * following more through as many pages as it takes (see historyPages).
   * All of it is held in memory: prefer historyPages for large histories.
   */
  async historyAll(opts: Omit<HistoryOptions, "reverse"> = {}): Promise<Publication<T>[]> {
    const out: Publication<T>[] = [];
    for await (const page of this.historyPages(opts)) out.push(...page.pubs);
    return out;
  }

  /**
   * whisper sends an ephemeral event to the stream's other subscribers. It
   * returns false, and sends nothing, while the stream is not subscribed
   * (e.g. while disconnected).
   */
  whisper(ev: string, data: unknown): boolean {
    if (this.state !== "subscribed") return false;
    return this.client._send({ t: "whisper", s: this.name, ev, data });
  }

  /**
   * latest returns the latest whisper of event ev from every other
   * connection, by client id: what the server's latest-value cache sent at
   * subscribe, updated by every whisper since. A connection's entries go
   * when it leaves presence (on streams with presence) or sends null.
   */
  latest(ev: string): Map<string, WhisperEvent> {
    const out = new Map<string, WhisperEvent>();
    for (const w of this.latestWhispers.values()) if (w.ev === ev) out.set(w.from.client, w);
    return out;
  }

  /** cursors returns the cursor helper for event ev (default "cursor"); the same ev returns the same helper. */
  cursors(opts: CursorsOptions = {}): Cursors<C> {
    const ev = opts.ev ?? "cursor";
    let c = this.cursorSets.get(ev);
    if (!c) {
      c = new Cursors<C>(this.client, this as unknown as Stream<unknown, PresenceState, C>, { ...opts, ev });
      this.cursorSets.set(ev, c);
    }
    return c;
  }

  /** unsubscribe leaves the stream (and its presence); the Stream is done. */
  unsubscribe(): void {
    if (this.closed) return;
    if (this.state !== "unsubscribed") this.client._send({ t: "unsub", s: this.name });
    this.close();
  }

  /** close ends the Stream: no more events, nothing resubscribes it. */
  private close(): void {
    this.closed = true;
    this.subGen++;
    this.recoverTop = undefined;
    clearTimeout(this.retryTimer);
    this.state = "unsubscribed";
    this.presence._clear();
    this.latestWhispers.clear();
    for (const c of this.cursorSets.values()) c._destroy();
    this.cursorSets.clear();
    this.client._forget(this as unknown as Stream);
  }

  // ---- driven by the client ----

  /** @internal _subscribe sends sub, with recover and join as they apply. */
  _subscribe(): void {
    if (this.closed) return;
    clearTimeout(this.retryTimer);
    const gen = ++this.subGen;
    this.state = "subscribing";
    this.recoverTop = undefined;
    const recover = this.opts.recover !== false && this.position ? { ...this.position } : undefined;
    const presence = this.opts.presence === true || this.opts.join !== undefined;
    this.client._request(
      (id) => {
        const m: ClientMessage = { t: "sub", id, s: this.name };
        if (recover) m.recover = recover;
        if (presence) m.presence = true;
        if (this.presence.joined) m.join = this.presence.state ?? {};
        return m;
      },
      (msg) => this.onSubscribed(gen, msg, recover, presence),
      (err) => this.onSubscribeFailed(gen, err),
    );
  }

  /**
   * @internal _disconnected: the connection is gone. If the client will
   * reconnect the stream waits to resubscribe; if not (final), it shows
   * nobody present until a later connect().
   */
  _disconnected(final: boolean): void {
    if (this.closed) return;
    this.subGen++;
    clearTimeout(this.retryTimer);
    this.retries = 0;
    this.recoverTop = undefined;
    this.state = final ? "unsubscribed" : "subscribing";
    if (final) {
      this.presence._clear();
      this.latestWhispers.clear();
      for (const c of this.cursorSets.values()) c._reset();
    }
  }

  /** @internal */
  _onPub(p: Pub): void {
    if (this.state !== "subscribed") return;
    const top = this.recoverTop;
    if (!top) {
      this.deliver(p, false);
      return;
    }
    // Missed publications that did not fit in subscribed's reply come first,
    // up to the top subscribed reported; live ones follow.
    const recovered = p.epoch === top.epoch && p.offset <= top.offset;
    if (!recovered || p.offset === top.offset) this.recoverTop = undefined;
    this.deliver(p, recovered);
  }

  /** @internal _onUnsubscribed: the server ended the subscription (unsubscribed with a code, no id). */
  _onUnsubscribed(code: number, reason: string): void {
    if (this.closed) return;
    this.close();
    this.emit("unsubscribed", { code, reason });
    this.emit("error", new HuddleError(code, reason));
  }

  /** @internal */
  _onWhisper(w: Whisper): void {
    const e: WhisperEvent = { ev: w.ev, data: w.data, from: w.from };
    const key = w.ev + "\n" + w.from.client;
    if (w.data === null || w.data === undefined) this.latestWhispers.delete(key);
    else this.latestWhispers.set(key, e);
    this.emit("whisper", e);
  }

  /** @internal */
  _onError(err: HuddleError): void {
    this.emit("error", err);
  }

  private onSubscribed(gen: number, msg: ServerMessage, recover: Position | undefined, presence: boolean): void {
    if (gen !== this.subGen || this.closed) return;
    if (msg.t !== "subscribed") return;
    this.state = "subscribed";
    this.retries = 0;
    // Recovered: every offset in (recover.offset, msg.offset] was missed and
    // comes now, in subscribed.pubs or as pub messages right after it.
    const recovered = recover !== undefined && msg.recovered === true && recover.epoch === msg.epoch;
    let missed = recovered ? Math.max(0, msg.offset - recover.offset) : 0;
    this.isDocument = msg.doc === true;
    if (this.isDocument && !recovered) {
      // The whole document follows, from its snapshot or offset 1.
      this.position = { epoch: msg.epoch, offset: 0 };
      missed = msg.offset;
    } else if (!recovered || !this.position || this.position.epoch !== msg.epoch) {
      this.position = { epoch: msg.epoch, offset: msg.offset };
    }
    this.recoverTop = missed > 0 ? { epoch: msg.epoch, offset: msg.offset } : undefined;
    if (presence) this.presence._onSnapshot(msg.members ?? []);
    this.latestWhispers.clear();
    for (const c of this.cursorSets.values()) c._reset();
    for (const w of msg.lv ?? []) this._onWhisper(w);
    for (const p of msg.pubs ?? []) {
      if (gen !== this.subGen) return; // a listener unsubscribed, or a gap resubscribed
      this.deliver(p, true);
    }
    if (gen !== this.subGen) return;
    const pos = this.position;
    if (this.recoverTop && pos && pos.epoch === msg.epoch && pos.offset >= msg.offset) this.recoverTop = undefined; // all in the reply
    const ev: StreamEvents["subscribed"] = { epoch: msg.epoch, offset: msg.offset, missed };
    if (msg.recovered !== undefined) ev.recovered = msg.recovered;
    if (this.isDocument) ev.document = true;
    this.emit("subscribed", ev);
  }

  private onSubscribeFailed(gen: number, err: HuddleError): void {
    if (gen !== this.subGen || this.closed) return;
    if (this.client.state !== "connected") return; // resubscribed after the reconnect
    if (err.code === Code.InsufficientState || err.code === 0 || err.retry) {
      // Order could not be guaranteed, no reply came, or the server says a
      // retry may work: subscribe again with recovery, backing off. After a
      // timeout the server may have subscribed after all, so unsubscribe
      // first (it handles the two in order).
      if (err.code === 0) this.client._send({ t: "unsub", s: this.name });
      const cap = Math.min(10000, 100 * 2 ** this.retries++);
      this.retryTimer = setTimeout(() => {
        if (this.client.state === "connected" && !this.closed) this._subscribe();
      }, cap / 2 + (Math.random() * cap) / 2);
      return;
    }
    this.close();
    this.emit("unsubscribed", { code: err.code, reason: err.reason });
    this.emit("error", err);
  }

  private deliver(p: Pub, recovered: boolean): void {
    if (this.closed) return;
    const pos = this.position;
    if (pos && pos.epoch === p.epoch && p.offset <= pos.offset) return; // seen already
    // A document's snapshot replaces everything up to its offset, so it may
    // skip ahead.
    if (pos && (pos.epoch !== p.epoch || (p.offset > pos.offset + 1 && !(p.snap && pos.epoch === p.epoch)))) {
      // A gap the server did not report (or a new epoch: history was lost):
      // resubscribe from the last position seen, which recovers what is
      // missing or says recovered: false.
      this.client._send({ t: "unsub", s: this.name });
      this._subscribe();
      return;
    }
    this.position = { epoch: p.epoch, offset: p.offset };
    this.emit("publication", toPublication<T>(p, recovered));
  }
}

function toPublication<T>(p: Pub, recovered: boolean): Publication<T> {
  const out: Publication<T> = { stream: p.s, offset: p.offset, epoch: p.epoch, data: p.data as T, ts: p.ts, recovered };
  if (p.from) out.from = p.from;
  if (p.snap) out.snapshot = true;
  return out;
}
