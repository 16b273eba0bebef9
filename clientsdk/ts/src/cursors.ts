import type { Huddle } from "./client.js";
import { Events } from "./events.js";
import type { PresenceState } from "./presence.js";
import type { Stream, WhisperEvent } from "./stream.js";

/** Options of {@link Stream.cursors}. */
export interface CursorsOptions {
  /** ev is the whisper event name. Default "cursor". */
  ev?: string;
  /**
   * interval is the least time between two sends, in ms. Where
   * requestAnimationFrame exists, a send also waits for the next animation
   * frame, so a cursor never moves more often than the screen repaints.
   * Default 33 (30 per second: within the server's default whisper rate of
   * 60/s with room for other whispers, even on 144 Hz screens).
   */
  interval?: number;
}

/** Cursor is another connection's latest cursor. */
export interface Cursor<C = unknown> {
  user: string;
  client: string;
  /** info is the user's public info, when the stream has presence. */
  info?: unknown;
  data: C;
}

/** The events of {@link Cursors}. */
export interface CursorsEvents<C = unknown> {
  /** change carries every other connection's latest cursor, by client id. */
  change: ReadonlyMap<string, Cursor<C>>;
}

type Raf = (fn: () => void) => unknown;

/**
 * Cursors shares a cursor (or any fast-changing value) over whispers: move
 * sends only the latest value, at most once per animation frame, and others
 * holds every other connection's latest value. The server's latest-value
 * cache fills others at once on subscribe; a connection's cursor goes when
 * it leaves presence or calls hide.
 */
export class Cursors<C = unknown> extends Events<CursorsEvents<C>> {
  /** others maps client id to that connection's latest cursor. */
  readonly others = new Map<string, Cursor<C>>();
  readonly ev: string;

  private readonly client: Huddle;
  private readonly stream: Stream<unknown, PresenceState, C>;
  private readonly interval: number;
  private readonly offs: (() => void)[] = [];
  private pending: C | undefined;
  private hasPending = false;
  private last: C | undefined;
  private shown = false;
  private scheduled = false;
  private lastSent = 0;

  /** @internal Use {@link Stream.cursors}. */
  constructor(client: Huddle, stream: Stream<unknown, PresenceState, C>, opts: CursorsOptions & { ev: string }) {
    super();
    this.client = client;
    this.stream = stream;
    this.ev = opts.ev;
    this.interval = opts.interval ?? 33;
    for (const w of stream.latest(this.ev).values()) {
      if (w.from.client !== client.clientId) this.others.set(w.from.client, this.cursorOf(w));
    }
    this.offs.push(
      stream.on("whisper", (w) => {
        if (w.ev !== this.ev || w.from.client === this.client.clientId) return;
        if (w.data === null || w.data === undefined) {
          if (this.others.delete(w.from.client)) this.changed();
          return;
        }
        this.others.set(w.from.client, this.cursorOf(w));
        this.changed();
      }),
      stream.presence.on("diff", (d) => {
        let n = 0;
        for (const c of d.left) if (this.others.delete(c.client)) n++;
        for (const c of d.joined) {
          const cur = this.others.get(c.client);
          if (cur && c.info !== undefined) {
            this.others.set(c.client, { ...cur, info: c.info });
            n++;
          }
        }
        if (n > 0) this.changed();
      }),
      stream.on("subscribed", () => {
        // A new connection: put the own cursor into the server's cache again.
        if (this.shown && this.last !== undefined && !this.hasPending) this.move(this.last);
      }),
    );
  }

  /** move sets the own cursor; only the latest value is sent, at most once per frame. */
  move(value: C): void {
    this.pending = value;
    this.hasPending = true;
    this.shown = true;
    this.schedule();
  }

  /** hide removes the own cursor for the others. */
  hide(): void {
    this.hasPending = false;
    this.pending = undefined;
    this.shown = false;
    this.stream.whisper(this.ev, null);
  }

  /** @internal _reset forgets the others before a subscribe's latest values arrive. */
  _reset(): void {
    if (this.others.size === 0) return;
    this.others.clear();
    this.changed();
  }

  /** @internal */
  _destroy(): void {
    for (const off of this.offs) off();
    this.offs.length = 0;
    this.others.clear();
    this.hasPending = false;
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    const raf = (globalThis as { requestAnimationFrame?: Raf }).requestAnimationFrame;
    const wait = Math.max(0, this.lastSent + this.interval - Date.now());
    if (typeof raf !== "function") {
      setTimeout(() => this.flush(), wait);
      return;
    }
    const frame = (): void => {
      raf(() => this.flush());
    };
    if (wait === 0) frame();
    else setTimeout(frame, wait);
  }

  private flush(): void {
    this.scheduled = false;
    if (!this.hasPending) return;
    this.hasPending = false;
    this.last = this.pending;
    this.lastSent = Date.now();
    this.stream.whisper(this.ev, this.pending);
  }

  private cursorOf(w: WhisperEvent): Cursor<C> {
    const c: Cursor<C> = { user: w.from.user, client: w.from.client, data: w.data as C };
    const info = this.stream.presence.connection(w.from.client)?.info;
    if (info !== undefined) c.info = info;
    return c;
  }

  private changed(): void {
    this.emit("change", this.others);
  }
}
