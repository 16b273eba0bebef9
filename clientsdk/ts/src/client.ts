import {
  type ClientMessage,
  type Codec,
  type ServerMessage,
  Code,
  codeReconnects,
  decodeServerFrame,
  encodeFrame,
  FrameError,
  subprotocols,
} from "./gen/index.js";
import { HuddleError } from "./errors.js";
import { Events } from "./events.js";
import { Stream, type StreamOptions } from "./stream.js";
import type { PresenceState } from "./presence.js";
import { type FetchLike, HttpSocket, httpBase, type TransportName } from "./http.js";
import { type AppStateLike, listenLifecycle, type NetworkSource } from "./lifecycle.js";

/** VERSION is the SDK's version, sent in connect.ua. */
export const VERSION = "0.1.0";

/**
 * An event handler property. Declared as a method type so that the
 * handlers of real WebSocket classes, which take their own event types
 * (the `ws` package's `WebSocket.Event`, the DOM's `Event`), are accepted
 * under `strict` (method parameters are compared bivariantly).
 */
export type Handler<E> = { bivarianceHack(ev: E): void }["bivarianceHack"];

/** The part of the WebSocket API the SDK uses (browsers, React Native and the `ws` package all have it). */
export interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  readonly protocol: string;
  send(data: string | Uint8Array): void;
  close(code?: number, reason?: string): void;
  onopen: Handler<unknown> | null;
  onmessage: Handler<{ data: unknown }> | null;
  onclose: Handler<{ code: number; reason: string }> | null;
  onerror: Handler<unknown> | null;
}

/** A WebSocket constructor. */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

/** Options of a {@link Huddle} client. Only `url` is required. */
export interface HuddleOptions {
  /** The server's WebSocket URL, e.g. `wss://rt.example.com/ws`. */
  url: string;
  /**
   * getToken returns a JWT for the connection. It is called before the first
   * connect, before the token expires (the new one is sent as `refresh`
   * without reconnecting), and after the server closed with 4002.
   */
  getToken?: () => string | Promise<string>;
  /** token is a fixed token, used when getToken is not given. */
  token?: string;
  /** codec is the wire format. Default "msgpack". */
  codec?: Codec;
  /** WebSocket is the constructor to use. Default globalThis.WebSocket. */
  WebSocket?: WebSocketConstructor;
  /**
   * transports are the ways to reach the server, in order of preference.
   * When one cannot connect (the socket does not open, or no answer
   * arrives within openTimeout) the next is tried; from a fallback the
   * client tries the WebSocket again every upgradeInterval and moves back
   * when it works. "sse" and "longpoll" are huddle.v1 over HTTP (JSON).
   * Default ["websocket", "sse", "longpoll"].
   */
  transports?: TransportName[];
  /** openTimeout is how long a transport has to connect before the next is tried, in ms. Default 5000. */
  openTimeout?: number;
  /** upgradeInterval is how often a client on a fallback transport tries the WebSocket again, in ms. Default 30000; 0 never. */
  upgradeInterval?: number;
  /** fetch is the fetch function of the HTTP transports. Default globalThis.fetch. */
  fetch?: FetchLike;
  /** autoConnect connects from the constructor. Default true. */
  autoConnect?: boolean;
  /** minReconnectDelay is the first backoff step, in ms. Default 200. */
  minReconnectDelay?: number;
  /** maxReconnectDelay caps the backoff, in ms. Default 15000. */
  maxReconnectDelay?: number;
  /**
   * drainJitter is the longest wait, in ms, before reconnecting after the
   * server drained (4009): a random wait up to it spreads the clients of a
   * node that restarts over the other nodes. Default 500.
   */
  drainJitter?: number;
  /** refreshMargin is how long before expiry the token is refreshed, in ms. Default 30000 (at most half the token's remaining life). */
  refreshMargin?: number;
  /** requestTimeout bounds how long a call waits for its reply, in ms. Default 10000. */
  requestTimeout?: number;
  /**
   * lifecycle reconnects at once on the browser's `online` event and when a
   * page becomes visible, where `globalThis.addEventListener` exists. It does
   * not concern `appState` and `network`, which are used whenever given.
   * Default true.
   */
  lifecycle?: boolean;
  /**
   * appState is React Native's `AppState` (or anything of its shape): when
   * the app goes to the `"background"`, the client pauses (see
   * {@link Huddle.pause}) after `backgroundTimeout`; when it is `"active"`
   * again before that, nothing happens, and after it, the client resumes and
   * every stream recovers what it missed. `"inactive"` (iOS: the app
   * switcher, a call, Control Center) counts as the foreground. A pause made
   * by calling pause() is not undone by the app becoming active. The
   * listener is added by connect() (and autoConnect) and removed by
   * disconnect().
   */
  appState?: AppStateLike;
  /**
   * backgroundTimeout is how long the app may stay in the background before
   * the client pauses, in ms (with `appState`). 0 pauses at once. Default
   * 30000.
   */
  backgroundTimeout?: number;
  /**
   * network tells the client whether the device is online, e.g.
   * @react-native-community/netinfo through a three-line adapter (see
   * {@link NetworkSource}). While it says offline the client does not try to
   * connect (no backoff steps are spent, no attempts fail); when it says
   * online again the client connects at once, with a fresh backoff. A
   * connection that is up when the source says offline is left alone (it
   * may still work; a dead one is noticed by `staleThreshold`). The source
   * is trusted: while it says offline, connect(), reconnect() and resume()
   * wait for it too. Subscribed by connect() (and autoConnect), unsubscribed
   * by disconnect().
   */
  network?: NetworkSource;
  /**
   * pingInterval asks the server for this connection's ping interval, in
   * seconds (sent as `connect.ping`, rounded to whole seconds): the server
   * grants it within 5..300 s and the `connected` event's `ping` says what
   * was granted. A longer interval wakes the radio less often (a tracker
   * saving battery); it also makes a dead connection take longer to notice
   * unless `staleThreshold` is shorter. Default (and 0): the server's own
   * interval (its `--ping-interval`, 25 s by default).
   */
  pingInterval?: number;
  /**
   * staleThreshold: when nothing at all has arrived from the server for
   * this long, in ms, the client treats the connection as dead (a half-open
   * network, where nothing arrives and nothing fails) and reconnects; the
   * `disconnected` event says 4011. Default: two granted ping intervals
   * plus 2 s (what the server itself allows). When set, the client also
   * sends a `ping` of its own after half of it in silence, which the server
   * answers, so a threshold shorter than the ping interval does not drop a
   * healthy quiet connection (each such ping costs a radio wake-up). 0 turns
   * the check off.
   */
  staleThreshold?: number;
  /** ua is appended to the SDK's name in connect.ua. */
  ua?: string;
}

/**
 * ConnectionState is the state of a client's connection. "paused" is set by
 * {@link Huddle.pause} (or the `appState` option) until resume().
 */
export type ConnectionState = "connecting" | "connected" | "disconnected" | "paused";

/** The events of a {@link Huddle} client. */
export interface ClientEvents {
  /** A connection attempt started; attempt counts from 1 after each disconnect. */
  connecting: { attempt: number };
  /**
   * The server accepted the connection; transport says how it is reached,
   * ping is the ping interval the server granted, in seconds (see
   * {@link HuddleOptions.pingInterval}).
   */
  connected: { client: string; user: string; node?: string; exp?: number; transport: TransportName; ping: number };
  /**
   * The connection ended; reconnect says whether the client will try again
   * by itself. On pause() it is `{ code: 4000, reason: "paused", reconnect:
   * false }` with `state` already "paused": resume() connects again.
   */
  disconnected: { code: number; reason: string; reconnect: boolean };
  /** The state changed. */
  state: ConnectionState;
  /** An error not tied to a call, e.g. 4006 for whispers over the rate limit. */
  error: HuddleError;
}

interface Pending {
  onReply(msg: ServerMessage): void;
  onError(err: HuddleError): void;
  timer: unknown;
}

interface Waiting {
  build(id: number): ClientMessage;
  pending: Pending;
}

interface Settings {
  url: string;
  codec: Codec;
  transports: TransportName[];
  openTimeout: number;
  upgradeInterval: number;
  minReconnectDelay: number;
  maxReconnectDelay: number;
  drainJitter: number;
  refreshMargin: number;
  requestTimeout: number;
  lifecycle: boolean;
  ua: string;
  appState: AppStateLike | undefined;
  backgroundTimeout: number;
  network: NetworkSource | undefined;
  ping: number; // 0: the server's
  stale: number | undefined; // undefined: from the granted ping interval
}

const host = globalThis as unknown as { WebSocket?: WebSocketConstructor };

/** The reason of the calls refused while paused. */
const pausedReason = "client paused; call resume()";

/** checkNumber checks a numeric option: finite and at least 0. */
function checkNumber(name: string, v: number | undefined): void {
  if (v !== undefined && (typeof v !== "number" || !Number.isFinite(v) || v < 0)) {
    throw new TypeError(`Huddle: options.${name} must be a finite number >= 0, got ${String(v)}`);
  }
}

/**
 * Huddle is a client connection to a Huddle server. It reconnects by itself,
 * resubscribes its streams with their last position so no publication is
 * lost or repeated, rejoins presence, and refreshes its token.
 */
export class Huddle extends Events<ClientEvents> {
  /** state is the connection's state. */
  state: ConnectionState = "disconnected";
  /** clientId is the server's id of the current connection, while connected. */
  clientId: string | undefined;
  /** user is the token's user, while connected. */
  user: string | undefined;
  /** node is the server node of the current connection, while connected. */
  node: string | undefined;

  private readonly opts: Settings;
  private readonly getToken: (() => string | Promise<string>) | undefined;
  private readonly WS: WebSocketConstructor;
  private readonly fetchFn: FetchLike | undefined;
  private tIdx = 0; // the transport in use (or being tried), an index of opts.transports
  private wireCodec: Codec = "msgpack"; // the codec of the current socket
  private upgradeTimer: unknown;
  private openTimer: unknown;
  private readonly streamsByName = new Map<string, Stream>();
  private ws: WebSocketLike | undefined;
  private socketGen = 0; // bumps whenever the current socket is abandoned
  private want = false; // whether the user wants a connection
  private attempt = 0;
  private nextId = 1;
  private pending = new Map<number, Pending>();
  private waiting: Waiting[] = [];
  private outbox: ClientMessage[] = [];
  private flushQueued = false;
  private token: string | undefined;
  private tokenLife: number | undefined; // ms, from the token's iat and exp
  private tokenAt = 0; // local time the token arrived from getToken
  private expAt: number | undefined; // local time (ms) at which the token expires, skew-free when tokenLife is known
  private connectedAt = 0;
  private lastDisconnect: { code: number; reason: string; reconnect: boolean } | undefined;
  private reconnectTimer: unknown;
  private connectTimer: unknown;
  private refreshTimer: unknown;
  private idleTimer: unknown;
  private staleMs = 0; // 0: no liveness check
  private probeMs = 0; // silence after which a ping goes out; 0: none
  private heardAt = 0; // local time the last frame arrived
  private probed = false; // a ping went out since heardAt
  private readyWaiters: { resolve(): void; reject(err: HuddleError): void }[] = [];
  private unlisten: (() => void) | undefined;
  private offline = false; // the network source says offline
  private bgTimer: unknown; // pauses when the app has been in the background for backgroundTimeout
  private autoPaused = false; // paused by the background timer, so "active" resumes

  constructor(options: HuddleOptions) {
    super();
    if (!options || typeof options.url !== "string" || options.url === "") {
      throw new TypeError("Huddle: options.url is required");
    }
    const transports = options.transports ?? ["websocket", "sse", "longpoll"];
    if (transports.length === 0 || transports.some((t) => t !== "websocket" && t !== "sse" && t !== "longpoll")) {
      throw new TypeError(`Huddle: transports ${JSON.stringify(transports)}: use "websocket", "sse" and "longpoll"`);
    }
    const WS = options.WebSocket ?? host.WebSocket;
    if (!WS && transports.includes("websocket")) {
      throw new TypeError("Huddle: no global WebSocket here; pass options.WebSocket (on Node < 22: WebSocket from the 'ws' package)");
    }
    this.WS = WS ?? (class {} as unknown as WebSocketConstructor);
    // Called as a plain function: a browser's fetch refuses to run as a
    // method of another object ("Illegal invocation").
    const f = options.fetch ?? (typeof fetch === "function" ? (fetch as FetchLike) : undefined);
    this.fetchFn = f && ((url, init) => f(url, init));
    this.getToken = options.getToken;
    this.token = options.token;
    checkNumber("pingInterval", options.pingInterval);
    checkNumber("staleThreshold", options.staleThreshold);
    checkNumber("backgroundTimeout", options.backgroundTimeout);
    this.opts = {
      url: options.url,
      codec: options.codec ?? "msgpack",
      transports,
      openTimeout: options.openTimeout ?? 5000,
      upgradeInterval: options.upgradeInterval ?? 30000,
      minReconnectDelay: options.minReconnectDelay ?? 200,
      maxReconnectDelay: options.maxReconnectDelay ?? 15000,
      drainJitter: options.drainJitter ?? 500,
      refreshMargin: options.refreshMargin ?? 30000,
      requestTimeout: options.requestTimeout ?? 10000,
      lifecycle: options.lifecycle ?? true,
      ua: `huddle-js/${VERSION}` + (options.ua ? " " + options.ua : ""),
      appState: options.appState,
      backgroundTimeout: options.backgroundTimeout ?? 30000,
      network: options.network,
      // connect.ping is a whole number of seconds (a uint32 on the server).
      ping: options.pingInterval ? Math.min(Math.max(1, Math.round(options.pingInterval)), 0xffffffff) : 0,
      stale: options.staleThreshold,
    };
    if (this.opts.codec !== "msgpack" && this.opts.codec !== "json") {
      throw new TypeError(`Huddle: unknown codec ${String(this.opts.codec)}; use "msgpack" or "json"`);
    }
    if (options.autoConnect ?? true) {
      // Connect on the next microtask, so listeners added right after the
      // constructor see the first "connecting".
      this.want = true;
      void Promise.resolve().then(() => {
        if (this.want && this.state === "disconnected" && this.reconnectTimer === undefined) this.connect();
      });
    }
  }

  /**
   * connect starts connecting, if not connected or connecting already. It
   * also starts listening to `appState`, `network` and the browser's events.
   * On a paused client it is resume().
   */
  connect(): void {
    this.want = true;
    if (this.state === "paused") {
      this.resume();
      return;
    }
    this.listenLifecycle(); // may pause at once (appState, backgroundTimeout 0)
    if (this.state === "disconnected" && this.reconnectTimer === undefined && !this.offline) void this.open();
  }

  /**
   * disconnect closes the connection for good (until connect is called),
   * paused or not, and stops listening to `appState`, `network` and the
   * browser's events. Calls waiting for a reply reject; presence ends at
   * once on the server.
   */
  disconnect(): void {
    this.want = false;
    this.attempt = 0;
    this.stopLifecycle();
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    if (this.state === "disconnected" || this.state === "paused") {
      const was = this.state;
      this.state = "disconnected";
      const err = new HuddleError(Code.Normal, "client disconnected");
      for (const s of this.streamsByName.values()) s._disconnected(true);
      this.failWaiting(err);
      if (was === "paused") this.emit("state", "disconnected");
      return;
    }
    this.drop({ code: Code.Normal, reason: "client disconnected", reconnect: false }, 1000);
  }

  /**
   * reconnect drops the current connection and connects again at once, e.g.
   * after the app learned that the network changed. Streams recover what
   * they missed. On a paused client it is resume().
   */
  reconnect(): void {
    this.want = true;
    if (this.state === "paused") {
      this.resume();
      return;
    }
    this.listenLifecycle();
    if ((this.state as ConnectionState) === "paused") return; // the app is in the background (backgroundTimeout 0)
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    if (this.state === "disconnected") {
      if (!this.offline) void this.open();
      return;
    }
    this.drop({ code: 1000, reason: "reconnect requested", reconnect: true }, 1000, 0);
  }

  /**
   * pause lets the connection go until {@link resume}, to save battery
   * while the app does not need it (see also the `appState` option). The
   * socket closes cleanly, so presence ends at once for the others; no
   * reconnect is tried and the client's timers stop. `state` becomes
   * "paused" (a `state` event), and a `disconnected` event `{ code: 4000,
   * reason: "paused", reconnect: false }` follows when a connection (or an
   * attempt) was open.
   *
   * Streams stay, with their positions, and the own presence state is kept:
   * resume() resubscribes every stream with recovery, so the publications
   * made meanwhile arrive once each, in order, with `recovered: true`.
   *
   * While paused, calls (publish, history, presence join and leave) reject
   * at once with a {@link HuddleError} of code 0 ("client paused; call
   * resume()"), as do the calls that were waiting for a connection when it
   * paused; calls already sent reject with the close, as on any drop.
   * `ready()` waits for the connection after resume(); `whisper()` returns
   * false; `presence.update()` only keeps the merged state for the rejoin.
   *
   * It does nothing on a client that is paused already or that does not
   * want a connection (before connect(), after disconnect() or after the
   * server refused it).
   */
  pause(): void {
    this.pauseNow(false);
  }

  /**
   * resume connects a paused client again, at once (or, while the `network`
   * source says offline, as soon as it says online), with a fresh backoff.
   * Every stream resubscribes and recovers what was published while
   * paused. It also cancels a pause the `appState` option has scheduled.
   * On a client that is not paused it does nothing else.
   */
  resume(): void {
    clearTimeout(this.bgTimer);
    this.bgTimer = undefined;
    this.autoPaused = false;
    if (this.state !== "paused") return;
    this.listenLifecycle();
    this.attempt = 0;
    this.state = "disconnected";
    if (!this.offline) void this.open(); // "connecting" follows "paused"
    else this.emit("state", "disconnected"); // waiting for the network
  }

  /**
   * ready resolves when the client is connected (at once if it is). While
   * connecting, reconnecting or paused it waits; it rejects when the client
   * does not want a connection or gives up.
   */
  ready(): Promise<void> {
    if (this.state === "connected") return Promise.resolve();
    if (!this.want) return Promise.reject(new HuddleError(0, "not connecting; call connect()"));
    return new Promise((resolve, reject) => this.readyWaiters.push({ resolve, reject }));
  }

  /**
   * stream returns the stream called name, subscribing to it now and after
   * every reconnect. The same name returns the same Stream; options count
   * on the first call only. The type parameters name what its payloads
   * hold (they are not checked at run time): T a publication's data, S a
   * presence state, C a cursor's value, e.g.
   * `client.stream<Op, { name: string }, { x: number; y: number }>("doc:1")`.
   */
  stream<T = unknown, S extends PresenceState = PresenceState, C = unknown>(name: string, options: StreamOptions<S> = {}): Stream<T, S, C> {
    let s = this.streamsByName.get(name);
    if (!s) {
      s = new Stream<T, S, C>(this, name, options) as unknown as Stream;
      this.streamsByName.set(name, s);
      if (this.state === "connected") s._subscribe();
    }
    // The type parameters only describe the payloads: a stream is one
    // object per name whatever the caller says they hold.
    return s as unknown as Stream<T, S, C>;
  }

  /** streams lists the streams of this client. */
  get streams(): ReadonlyMap<string, Stream> {
    return this.streamsByName;
  }

  // ---- used by Stream, Presence and Cursors (not part of the public API) ----

  /** @internal */
  _forget(s: Stream): void {
    if (this.streamsByName.get(s.name) === s) this.streamsByName.delete(s.name);
  }

  /** @internal _send queues msg for the current connection; false when there is none. */
  _send(msg: ClientMessage): boolean {
    if (this.state !== "connected") return false;
    this.outbox.push(msg);
    if (!this.flushQueued) {
      this.flushQueued = true;
      void Promise.resolve().then(() => this.flush());
    }
    return true;
  }

  /**
   * @internal _request sends the message built with a fresh id and calls
   * onReply with its reply (synchronously, in frame order) or onError. While
   * not connected it waits for the connection, up to requestTimeout.
   */
  _request(build: (id: number) => ClientMessage, onReply: (msg: ServerMessage) => void, onError: (err: HuddleError) => void): void {
    const pending: Pending = { onReply, onError, timer: undefined };
    if (this.state === "connected") {
      this.sendRequest(build, pending);
      return;
    }
    if (this.state === "paused") {
      onError(new HuddleError(0, pausedReason));
      return;
    }
    if (!this.want) {
      onError(new HuddleError(0, "not connected; call connect()"));
      return;
    }
    const w: Waiting = { build, pending };
    this.waiting.push(w);
    pending.timer = setTimeout(() => {
      const i = this.waiting.indexOf(w);
      if (i >= 0) this.waiting.splice(i, 1);
      onError(new HuddleError(0, `not connected within ${this.opts.requestTimeout} ms`));
    }, this.opts.requestTimeout);
  }

  /** @internal _call is _request as a promise of the reply of type t. */
  _call<T extends ServerMessage["t"]>(build: (id: number) => ClientMessage, t: T): Promise<Extract<ServerMessage, { t: T }>> {
    return new Promise((resolve, reject) => {
      this._request(
        build,
        (msg) => {
          if (msg.t === t) resolve(msg as Extract<ServerMessage, { t: T }>);
          else reject(new HuddleError(0, `unexpected reply ${msg.t} (want ${t})`));
        },
        reject,
      );
    });
  }

  /** @internal */
  _emitError(err: HuddleError): void {
    this.emit("error", err);
  }

  /** transport is how the client reaches the server now (or is trying to). */
  get transport(): TransportName {
    return this.opts.transports[this.tIdx] ?? "websocket";
  }

  // ---- connection lifecycle ----

  // scheduleUpgrade tries the WebSocket again after upgradeInterval.
  private scheduleUpgrade(): void {
    clearTimeout(this.upgradeTimer);
    this.upgradeTimer = setTimeout(() => this.probeWebSocket(), this.opts.upgradeInterval);
  }

  // probeWebSocket opens a WebSocket beside the fallback connection and
  // connects on it; when the server answers, the client moves to the
  // WebSocket: it reconnects there, and its streams recover from where they
  // are, so nothing is lost or repeated. The fallback session is abandoned
  // without a goodbye, so that presence holds it through its grace.
  private probeWebSocket(): void {
    if (this.state !== "connected" || this.tIdx === 0) return;
    const gen = this.socketGen;
    let ws: WebSocketLike;
    try {
      ws = new this.WS(this.opts.url, [subprotocols[this.opts.codec]]);
    } catch {
      this.scheduleUpgrade();
      return;
    }
    let done = false;
    const finish = (ok: boolean): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      ws.onopen = ws.onmessage = ws.onclose = null;
      ws.onerror = () => {};
      try {
        ws.close(1000);
      } catch {
        // Already closed.
      }
      if (gen !== this.socketGen || this.state !== "connected") return;
      if (!ok) {
        this.scheduleUpgrade();
        return;
      }
      this.tIdx = 0;
      this.drop({ code: 0, reason: "moving to the WebSocket", reconnect: true }, undefined, 0);
    };
    const timer = setTimeout(() => finish(false), this.opts.openTimeout);
    ws.binaryType = "arraybuffer";
    ws.onopen = () => {
      const c: ClientMessage = { t: "connect", id: 1, ua: this.opts.ua + " (probe)" };
      if (this.token !== undefined) c.token = this.token;
      try {
        ws.send(encodeFrame(this.opts.codec, [c]));
      } catch {
        finish(false);
      }
    };
    ws.onmessage = (ev) => {
      try {
        finish(decodeServerFrame(this.opts.codec, ev.data as Uint8Array | ArrayBuffer | string).messages.some((m) => m.t === "connected"));
      } catch {
        finish(false);
      }
    };
    ws.onclose = () => finish(false);
    ws.onerror = () => {};
  }

  private async open(): Promise<void> {
    const gen = ++this.socketGen;
    this.attempt++;
    this.lastDisconnect = undefined;
    // The timer covers getToken too: a token fetch that hangs must not
    // leave the client connecting for ever.
    clearTimeout(this.connectTimer);
    this.connectTimer = setTimeout(() => {
      if (gen === this.socketGen) this.drop({ code: 0, reason: `not connected within ${this.opts.requestTimeout} ms`, reconnect: true });
    }, this.opts.requestTimeout);
    this.setState("connecting");
    this.emit("connecting", { attempt: this.attempt });
    if (gen !== this.socketGen) return; // a listener called disconnect() or reconnect()
    if (this.getToken && (this.token === undefined || this.tokenExpiring())) {
      let token: string;
      try {
        token = await this.getToken();
      } catch (err) {
        if (gen !== this.socketGen) return;
        const e = new HuddleError(0, "getToken failed: " + String(err));
        this.emit("error", e);
        if (gen === this.socketGen) this.drop({ code: 0, reason: e.reason, reconnect: true });
        return;
      }
      if (gen !== this.socketGen) return; // disconnect() or reconnect() came first
      this.setToken(token);
    }
    let ws: WebSocketLike;
    const transport = this.opts.transports[this.tIdx] ?? "websocket";
    try {
      if (transport === "websocket") {
        this.wireCodec = this.opts.codec;
        ws = new this.WS(this.opts.url, [subprotocols[this.opts.codec]]);
      } else {
        if (!this.fetchFn) throw new Error("no fetch here; pass options.fetch");
        this.wireCodec = "json";
        ws = new HttpSocket(httpBase(this.opts.url), transport, this.fetchFn);
      }
    } catch (err) {
      this.drop({ code: 0, reason: `cannot open ${transport}: ` + String(err), reconnect: this.opts.transports.length > 1 });
      return;
    }
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    if (this.opts.transports.length > 1) {
      // A transport that cannot connect in time gives way to the next.
      clearTimeout(this.openTimer);
      this.openTimer = setTimeout(() => {
        if (gen === this.socketGen && this.state === "connecting") {
          this.drop({ code: 0, reason: `no answer over ${transport} within ${this.opts.openTimeout} ms`, reconnect: true });
        }
      }, this.opts.openTimeout);
    }
    ws.onopen = () => {
      if (gen !== this.socketGen) return;
      const id = this.nextId++;
      this.pending.set(id, {
        onReply: (msg) => this.onConnected(msg),
        onError: (err) => {
          if (gen === this.socketGen) this.drop({ code: err.code, reason: err.reason, reconnect: codeReconnects(err.code) });
        },
        timer: undefined,
      });
      const connect: ClientMessage = { t: "connect", id, ua: this.opts.ua };
      if (this.token !== undefined) connect.token = this.token;
      if (this.opts.ping > 0) connect.ping = this.opts.ping;
      this.writeFrame([connect]);
    };
    ws.onmessage = (ev) => {
      if (gen === this.socketGen) this.onFrame(ev.data);
    };
    ws.onclose = (ev) => {
      if (gen !== this.socketGen) return;
      const d = this.lastDisconnect ?? { code: ev.code, reason: ev.reason || "connection closed", reconnect: codeReconnects(ev.code) };
      this.drop(d);
    };
    ws.onerror = () => {
      // A close event follows with the details.
    };
  }

  private onConnected(msg: ServerMessage): void {
    if (msg.t !== "connected") {
      this.drop({ code: 0, reason: "unexpected reply to connect: " + msg.t, reconnect: true });
      return;
    }
    clearTimeout(this.connectTimer);
    clearTimeout(this.openTimer);
    this.connectedAt = Date.now();
    this.clientId = msg.client;
    this.user = msg.user;
    this.node = msg.node;
    if (msg.exp) this.setExp(msg.exp);
    // The server closes a connection silent for two intervals; the client
    // allows the same, plus slack, unless told otherwise.
    const stale = this.opts.stale;
    this.staleMs = stale ?? (msg.ping > 0 ? 2 * msg.ping * 1000 + 2000 : 0);
    this.probeMs = stale !== undefined && stale > 0 ? stale / 2 : 0;
    this.setState("connected");
    this.heardAt = Date.now();
    this.probed = false;
    if (this.staleMs > 0) this.armStale(this.probeMs || this.staleMs);
    this.scheduleRefresh();
    // Subscriptions first, then the calls that waited, all in one frame.
    for (const s of this.streamsByName.values()) s._subscribe();
    const waiting = this.waiting;
    this.waiting = [];
    for (const w of waiting) {
      clearTimeout(w.pending.timer);
      this.sendRequest(w.build, w.pending);
    }
    const connected: ClientEvents["connected"] = { client: msg.client, user: msg.user, transport: this.transport, ping: msg.ping };
    if (this.tIdx > 0 && this.opts.transports[0] === "websocket" && this.opts.upgradeInterval > 0) this.scheduleUpgrade();
    if (msg.node !== undefined) connected.node = msg.node;
    if (msg.exp !== undefined) connected.exp = msg.exp;
    this.emit("connected", connected);
    const readers = this.readyWaiters;
    this.readyWaiters = [];
    for (const r of readers) r.resolve();
  }

  /**
   * drop abandons the current socket (closing it with closeCode if given),
   * fails the calls in flight, and reconnects if d.reconnect and the user
   * still wants a connection. With pause, it leaves the client paused.
   */
  private drop(d: { code: number; reason: string; reconnect: boolean }, closeCode?: number, delay?: number, pause = false): void {
    const ws = this.ws;
    this.ws = undefined;
    this.socketGen++;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      // Not null: the ws package emits 'error' when a socket that has not
      // opened yet is closed, and an 'error' with no listener would throw.
      ws.onerror = () => {};
      try {
        ws.close(closeCode ?? 1000);
      } catch {
        // Already closed.
      }
    }
    clearTimeout(this.connectTimer);
    clearTimeout(this.refreshTimer);
    clearTimeout(this.idleTimer);
    clearTimeout(this.openTimer);
    clearTimeout(this.upgradeTimer);
    this.outbox = [];
    this.flushQueued = false;
    // A transport that failed before the server answered (a refused
    // upgrade, a buffered response, a timeout; not a refusal by the server,
    // whose codes are 4000 and up) gives way to the next one, at once;
    // after the last one the first is tried again, with the backoff.
    let nextTransport = false;
    // (Not while offline or pausing: then the transport is not to blame.)
    if (this.state === "connecting" && d.code < 4000 && this.opts.transports.length > 1 && delay === undefined && !pause && !this.offline) {
      this.tIdx = (this.tIdx + 1) % this.opts.transports.length;
      nextTransport = this.tIdx !== 0;
    }
    // A connection that stayed up a while resets the backoff; one that the
    // server closes right after accepting it does not.
    if (this.state === "connected" && Date.now() - this.connectedAt > 10000) this.attempt = 0;
    this.clientId = this.user = this.node = undefined;
    if (d.code === Code.TokenExpired) {
      if (this.getToken) this.token = undefined; // ask getToken again
      else d = { ...d, reason: d.reason + " (no getToken to renew it)", reconnect: false };
    }
    const reconnect = d.reconnect && this.want;

    // All bookkeeping first, notifications last: a listener may call
    // connect(), disconnect() or reconnect().
    const state = pause ? "paused" : "disconnected";
    this.state = state;
    const inflight = this.pending;
    this.pending = new Map();
    let waiting: Waiting[] = [];
    let readers: { reject(err: HuddleError): void }[] = [];
    if (pause) {
      // The user still wants a connection, later: ready() keeps waiting,
      // the calls that wait for a connection do not.
      waiting = this.waiting;
      this.waiting = [];
    } else if (!reconnect) {
      this.want = false;
      this.attempt = 0;
      this.stopLifecycle();
      waiting = this.waiting;
      this.waiting = [];
      readers = this.readyWaiters;
      this.readyWaiters = [];
    } else {
      let wait = delay ?? (nextTransport ? 0 : undefined);
      if (wait === undefined) {
        if (d.code === Code.Shutdown) {
          wait = Math.random() * this.opts.drainJitter; // draining: go elsewhere soon, spread out
        } else {
          const cap = Math.min(this.opts.maxReconnectDelay, this.opts.minReconnectDelay * 2 ** Math.max(0, this.attempt - 1));
          wait = cap / 2 + (Math.random() * cap) / 2;
        }
      }
      clearTimeout(this.reconnectTimer);
      this.reconnectTimer = undefined;
      // Offline: no attempt until the network source says online.
      if (!this.offline) {
        this.reconnectTimer = setTimeout(() => {
          this.reconnectTimer = undefined;
          if (this.want && this.state === "disconnected" && !this.offline) void this.open();
        }, wait);
      }
    }

    const err = new HuddleError(d.code, d.reason);
    const waitErr = pause ? new HuddleError(0, pausedReason) : err;
    for (const s of this.streamsByName.values()) s._disconnected(!reconnect);
    for (const p of inflight.values()) {
      clearTimeout(p.timer);
      p.onError(err);
    }
    for (const w of waiting) {
      clearTimeout(w.pending.timer);
      w.pending.onError(waitErr);
    }
    for (const r of readers) r.reject(err);
    this.emit("state", state);
    this.emit("disconnected", { code: d.code, reason: d.reason, reconnect });
  }

  /**
   * pauseNow pauses (see pause); auto says the background timer did it,
   * so that the app becoming active resumes.
   */
  private pauseNow(auto: boolean): void {
    clearTimeout(this.bgTimer);
    this.bgTimer = undefined;
    if (!this.want) return;
    if (this.state === "paused") {
      if (!auto) this.autoPaused = false; // now the user's pause
      return;
    }
    this.autoPaused = auto;
    this.attempt = 0;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    if (this.state !== "disconnected") {
      this.drop({ code: Code.Normal, reason: "paused", reconnect: false }, 1000, undefined, true);
      return;
    }
    // Between two attempts: no socket to close.
    this.state = "paused";
    for (const s of this.streamsByName.values()) s._disconnected(true);
    this.failWaiting(new HuddleError(0, pausedReason), false);
    this.emit("state", "paused");
  }

  private failWaiting(err: HuddleError, readers = true): void {
    const waiting = this.waiting;
    this.waiting = [];
    for (const w of waiting) {
      clearTimeout(w.pending.timer);
      w.pending.onError(err);
    }
    if (!readers) return;
    const rs = this.readyWaiters;
    this.readyWaiters = [];
    for (const r of rs) r.reject(err);
  }

  private setState(s: ConnectionState): void {
    if (this.state === s) return;
    this.state = s;
    this.emit("state", s);
  }

  private sendRequest(build: (id: number) => ClientMessage, p: Pending): void {
    const id = this.nextId++;
    this.pending.set(id, p);
    p.timer = setTimeout(() => {
      if (this.pending.get(id) === p) {
        this.pending.delete(id);
        p.onError(new HuddleError(0, `no reply within ${this.opts.requestTimeout} ms`));
      }
    }, this.opts.requestTimeout);
    this._send(build(id));
  }

  private flush(): void {
    this.flushQueued = false;
    if (this.outbox.length === 0) return;
    const batch = this.outbox;
    this.outbox = [];
    this.writeFrame(batch);
  }

  private writeFrame(batch: ClientMessage[]): void {
    const ws = this.ws;
    if (!ws) return;
    try {
      ws.send(encodeFrame(this.wireCodec, batch));
    } catch (err) {
      this.emit("error", new HuddleError(0, "send failed: " + String(err)));
    }
  }

  private onFrame(data: unknown): void {
    this.heardAt = Date.now();
    this.probed = false;
    let frame;
    try {
      frame = decodeServerFrame(this.wireCodec, data as Uint8Array | ArrayBuffer | string);
    } catch (err) {
      this.emit("error", new HuddleError(Code.BadRequest, err instanceof FrameError ? err.message : String(err)));
      return;
    }
    for (const bad of frame.invalid) {
      this.emit("error", new HuddleError(Code.BadRequest, "malformed message from the server: " + safeJSON(bad)));
    }
    for (const msg of frame.messages) this.onMessage(msg);
  }

  private onMessage(msg: ServerMessage): void {
    switch (msg.t) {
      case "ping":
        this._send({ t: "pong" });
        return;
      case "pong":
        return;
      case "disconnect":
        this.lastDisconnect = { code: msg.code, reason: msg.reason, reconnect: msg.reconnect };
        return;
      case "pub":
        this.streamsByName.get(msg.s)?._onPub(msg);
        return;
      case "whisper":
        this.streamsByName.get(msg.s)?._onWhisper(msg);
        return;
      case "presence":
        this.streamsByName.get(msg.s)?.presence._onDiff(msg);
        return;
      case "unsubscribed":
        if (!msg.id) {
          // The server ended the subscription by itself (e.g. 4003 after a
          // refresh whose token no longer grants the stream).
          this.streamsByName.get(msg.s)?._onUnsubscribed(msg.code ?? 0, msg.reason ?? "unsubscribed by the server");
          return;
        }
        break; // the reply to an unsub that carried an id
      case "error": {
        const err = new HuddleError(msg.code, msg.reason, msg.retry ?? false);
        const p = msg.id ? this.pending.get(msg.id) : undefined;
        if (p && msg.id) {
          this.pending.delete(msg.id);
          clearTimeout(p.timer);
          p.onError(err);
          return;
        }
        const s = msg.s !== undefined ? this.streamsByName.get(msg.s) : undefined;
        if (s) s._onError(err);
        this.emit("error", err);
        return;
      }
    }
    const id = msg.id;
    if (!id) return;
    const p = this.pending.get(id);
    if (!p) return; // a reply that timed out
    this.pending.delete(id);
    clearTimeout(p.timer);
    p.onReply(msg);
  }

  // ---- liveness, token refresh, page lifecycle ----

  /**
   * armStale checks the connection's liveness in ms: one timer, not one
   * per frame; it sees how long ago the last frame came and waits again.
   */
  private armStale(ms: number): void {
    const gen = this.socketGen;
    this.idleTimer = setTimeout(() => this.checkStale(gen), ms);
  }

  private checkStale(gen: number): void {
    if (gen !== this.socketGen || this.state !== "connected") return;
    const silent = Date.now() - this.heardAt;
    if (silent >= this.staleMs) {
      this.drop({ code: Code.NoPong, reason: `nothing heard from the server for ${silent} ms`, reconnect: true });
      return;
    }
    if (this.probeMs > 0 && !this.probed && silent >= this.probeMs) {
      // Ask the server for a sign of life: it answers ping with pong.
      this.probed = true;
      this._send({ t: "ping" });
    }
    const next = this.probeMs > 0 && !this.probed ? this.probeMs : this.staleMs;
    this.armStale(Math.max(1, next - silent));
  }

  /** setToken takes a new token and learns its lifetime from iat and exp. */
  private setToken(token: string): void {
    this.token = token;
    this.tokenLife = jwtLife(token);
    this.tokenAt = Date.now();
    this.expAt = undefined;
  }

  /** setExp notes the expiry the server reported (unix s). */
  private setExp(exp: number): void {
    // With the token's lifetime known (iat and exp), the expiry is counted
    // on the local clock from when the token arrived, so a device clock that
    // is off does not matter. Otherwise the server's exp is all there is.
    this.expAt = this.tokenLife !== undefined ? this.tokenAt + this.tokenLife : exp * 1000;
  }

  private tokenExpiring(): boolean {
    return this.expAt !== undefined && this.expAt - Date.now() < Math.min(this.opts.refreshMargin, 5000);
  }

  private scheduleRefresh(minWait = 1000): void {
    clearTimeout(this.refreshTimer);
    if (!this.getToken || this.expAt === undefined) return;
    const left = this.expAt - Date.now();
    const wait = Math.max(left - this.opts.refreshMargin, left / 2);
    this.armRefresh(Math.max(minWait, wait), this.socketGen);
  }

  /** armRefresh waits ms (timers cap at 2^31-1 ms, so long waits go in steps). */
  private armRefresh(ms: number, gen: number): void {
    const step = Math.min(ms, 2 ** 31 - 1);
    this.refreshTimer = setTimeout(() => {
      if (gen !== this.socketGen) return;
      if (ms > step) this.armRefresh(ms - step, gen);
      else void this.refresh(gen);
    }, step);
  }

  private async refresh(gen: number): Promise<void> {
    let token: string;
    try {
      token = await this.getToken!();
    } catch (err) {
      if (gen !== this.socketGen) return;
      this.emit("error", new HuddleError(0, "getToken failed: " + String(err)));
      // Try again soon, while the token still lives.
      this.armRefresh(Math.min(5000, Math.max(500, ((this.expAt ?? 0) - Date.now()) / 4)), gen);
      return;
    }
    if (gen !== this.socketGen) return;
    const before = this.expAt;
    this.setToken(token);
    this._request(
      (id) => ({ t: "refresh", id, token }),
      (msg) => {
        if (gen !== this.socketGen) return;
        if (msg.t === "refreshed" && msg.exp) this.setExp(msg.exp);
        else this.expAt = before;
        // A refresh that did not move the expiry forward (getToken returned
        // the same token) is not retried at once.
        const moved = this.expAt !== undefined && (before === undefined || this.expAt > before);
        this.scheduleRefresh(moved ? 1000 : 30000);
      },
      (err) => {
        if (gen === this.socketGen) this.emit("error", err);
      },
    );
  }

  private listenLifecycle(): void {
    if (this.unlisten) return;
    const o = this.opts;
    const unlisten = listenLifecycle(
      { globals: o.lifecycle, appState: o.appState, network: o.network },
      {
        // Online again, or the page is visible: a reconnect that waits for
        // its backoff goes now.
        wake: () => {
          if (!this.want || this.state !== "disconnected" || this.reconnectTimer === undefined || this.offline) return;
          clearTimeout(this.reconnectTimer);
          this.reconnectTimer = undefined;
          void this.open();
        },
        network: (online) => {
          if (!online) {
            this.offline = true;
            clearTimeout(this.reconnectTimer);
            this.reconnectTimer = undefined;
            return;
          }
          // Only a change counts: a source may repeat itself.
          if (!this.offline) return;
          this.offline = false;
          if (!this.want || this.state !== "disconnected") return;
          this.attempt = 0; // a new network: start the backoff afresh
          clearTimeout(this.reconnectTimer);
          this.reconnectTimer = undefined;
          void this.open();
        },
        appState: (state) => {
          if (state !== "background") {
            // "active", or "inactive" (still the foreground).
            clearTimeout(this.bgTimer);
            this.bgTimer = undefined;
            if (state === "active" && this.autoPaused) this.resume();
            return;
          }
          if (this.bgTimer !== undefined || !this.want || this.state === "paused") return;
          if (o.backgroundTimeout <= 0) this.pauseNow(true);
          else this.bgTimer = setTimeout(() => this.pauseNow(true), o.backgroundTimeout);
        },
      },
    );
    // A listener called at once may have led to disconnect() already.
    if (this.want) this.unlisten = unlisten;
    else unlisten();
  }

  private stopLifecycle(): void {
    this.unlisten?.();
    this.unlisten = undefined;
    clearTimeout(this.bgTimer);
    this.bgTimer = undefined;
    this.autoPaused = false;
    this.offline = false;
  }
}

/**
 * jwtLife returns a JWT's lifetime (exp - iat) in ms, or undefined when the
 * token has no readable iat and exp. The token is not verified: the server
 * does that.
 */
function jwtLife(token: string): number | undefined {
  const part = token.split(".")[1];
  if (!part) return undefined;
  try {
    const claims = JSON.parse(base64urlDecode(part)) as { iat?: unknown; exp?: unknown };
    if (typeof claims.iat === "number" && typeof claims.exp === "number" && claims.exp > claims.iat) {
      return (claims.exp - claims.iat) * 1000;
    }
  } catch {
    // Not a JWT we can read.
  }
  return undefined;
}

const b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/** base64urlDecode decodes to a string of UTF-8 (claims are JSON). */
function base64urlDecode(s: string): string {
  const bytes: number[] = [];
  let acc = 0;
  let bits = 0;
  for (const ch of s.replace(/=+$/, "")) {
    const v = b64.indexOf(ch === "+" ? "-" : ch === "/" ? "_" : ch);
    if (v < 0) throw new Error("bad base64url");
    acc = (acc << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      bytes.push((acc >> bits) & 0xff);
    }
  }
  return decodeURIComponent(bytes.map((b) => "%" + b.toString(16).padStart(2, "0")).join(""));
}

function safeJSON(v: unknown): string {
  try {
    return JSON.stringify(v).slice(0, 200);
  } catch {
    return String(v);
  }
}
