// huddle.v1 over HTTP, for networks where a WebSocket cannot open or its
// frames never arrive: a session whose server messages come as server-sent
// events (GET /ws/events) or long polls (GET /ws/poll), and whose client
// messages go up as POSTs (POST /ws/send, numbered by seq so that a retry
// is handled once). HttpSocket looks like a WebSocket to the client, so
// every guarantee of the WebSocket path (order, recovery, presence grace)
// holds unchanged. The contract is docs/protocol.md, "huddle.v1 over HTTP".

import type { WebSocketLike } from "./client.js";

/** The transports a client may use, in its order of preference. */
export type TransportName = "websocket" | "sse" | "longpoll";

/** The part of a fetch Response HttpSocket reads. */
export interface ResponseLike {
  readonly ok: boolean;
  readonly status: number;
  readonly headers: { get(name: string): string | null };
  readonly body: { getReader(): { read(): Promise<{ value?: Uint8Array; done: boolean }> } } | null;
  text(): Promise<string>;
  json(): Promise<unknown>;
}

/** The fetch function HttpSocket uses (browsers, Node >= 18, React Native). */
export type FetchLike = (
  url: string,
  init?: { method?: string; body?: string; headers?: Record<string, string>; signal?: unknown; cache?: string },
) => Promise<ResponseLike>;

/** httpBase turns the WebSocket URL of /ws into the HTTP base of its session endpoints. */
export function httpBase(wsURL: string): string {
  const u = new URL(wsURL);
  u.protocol = u.protocol === "wss:" ? "https:" : "http:";
  u.search = "";
  u.hash = "";
  return u.toString().replace(/\/$/, "");
}

// POSTs that fail on the network are sent again, unchanged, this many times.
const postRetries = 5;

/** HttpSocket is a WebSocketLike over HTTP: "sse" or "longpoll" down, POSTs up. */
export class HttpSocket implements WebSocketLike {
  binaryType = "arraybuffer";
  readyState = 0;
  readonly protocol = "huddle.v1.json";
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;

  private session = "";
  private seq = 0;
  private outbox: string[] = [];
  private sending = false;
  private ended = false;
  private readonly abort = new AbortController();
  private ack = "0";

  constructor(
    private readonly base: string,
    readonly mode: "sse" | "longpoll",
    private readonly fetchFn: FetchLike,
  ) {
    void (mode === "sse" ? this.events() : this.polls());
  }

  send(data: string | Uint8Array): void {
    if (this.ended) return;
    this.outbox.push(typeof data === "string" ? data : new TextDecoder().decode(data));
    void this.pump();
  }

  /** close ends the session from this side: its requests are abandoned (the server sees the client go, as on a network drop). */
  close(code = 1000, reason = ""): void {
    if (this.ended) return;
    if (this.mode === "longpoll" && this.session) {
      // A polled session has no socket to drop: tell the server it is
      // left (it ends as a dropped connection, within presence's grace).
      this.fetchFn(`${this.base}/poll?session=${encodeURIComponent(this.session)}`, { method: "DELETE" }).catch(() => {});
    }
    this.end(code, reason);
  }

  private end(code: number, reason: string): void {
    if (this.ended) return;
    this.ended = true;
    this.readyState = 3;
    this.abort.abort();
    const cb = this.onclose;
    if (cb) setTimeout(() => cb({ code, reason }), 0);
  }

  private opened(session: string): void {
    if (this.ended) return;
    this.session = session;
    this.readyState = 1;
    this.onopen?.({});
    void this.pump();
  }

  private deliver(frame: string): void {
    if (!this.ended && frame !== "") this.onmessage?.({ data: frame });
  }

  // events reads the session's event stream: the first event names the
  // session, each later one carries a message.
  private async events(): Promise<void> {
    let resp: ResponseLike;
    try {
      resp = await this.fetchFn(this.base + "/events", { headers: { Accept: "text/event-stream" }, signal: this.abort.signal, cache: "no-store" });
    } catch (err) {
      this.end(1006, "event stream: " + String(err));
      return;
    }
    if (!resp.ok || !resp.body) {
      this.end(1006, `event stream: HTTP ${resp.status}`);
      return;
    }
    const reader = resp.body.getReader();
    const dec = new TextDecoder();
    let buf = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done || !value) break;
        buf += dec.decode(value, { stream: true });
        let i: number;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          let name = "";
          const data: string[] = [];
          for (const line of block.split("\n")) {
            if (line.startsWith("event:")) name = line.slice(6).trim();
            else if (line.startsWith("data:")) data.push(line.slice(line.startsWith("data: ") ? 6 : 5));
          }
          if (name === "session") {
            this.opened((JSON.parse(data.join("\n")) as { session: string }).session);
          } else if (name === "" && data.length > 0) {
            this.deliver(data.join("\n"));
          }
        }
      }
    } catch (err) {
      this.end(1006, "event stream: " + String(err));
      return;
    }
    this.end(1006, "event stream ended");
  }

  // polls opens a polled session and then polls it until it ends.
  private async polls(): Promise<void> {
    try {
      const resp = await this.fetchFn(this.base + "/poll", { signal: this.abort.signal, cache: "no-store" });
      if (!resp.ok) {
        this.end(1006, `poll: HTTP ${resp.status}`);
        return;
      }
      this.opened(((await resp.json()) as { session: string }).session);
      while (!this.ended) {
        const r = await this.fetchFn(`${this.base}/poll?session=${encodeURIComponent(this.session)}&ack=${this.ack}`, { signal: this.abort.signal, cache: "no-store" });
        if (r.status !== 200 && r.status !== 204) {
          this.end(1006, `poll: HTTP ${r.status}`);
          return;
        }
        this.ack = r.headers.get("Huddle-Poll") ?? this.ack;
        const text = r.status === 200 ? await r.text() : "";
        this.deliver(text.trim());
        if (r.headers.get("Huddle-End") === "true") {
          this.end(1006, "session ended");
          return;
        }
      }
    } catch (err) {
      this.end(1006, "poll: " + String(err));
    }
  }

  // pump sends what is waiting, one POST at a time; a POST that fails on
  // the network goes again with the same seq, which the server handles once.
  private async pump(): Promise<void> {
    if (this.sending || !this.session || this.outbox.length === 0 || this.ended) return;
    this.sending = true;
    const body = this.outbox.join("\n");
    this.outbox = [];
    const seq = ++this.seq;
    const url = `${this.base}/send?session=${encodeURIComponent(this.session)}&seq=${seq}`;
    for (let attempt = 0; ; attempt++) {
      try {
        const r = await this.fetchFn(url, { method: "POST", body, headers: { "Content-Type": "application/json" }, signal: this.abort.signal });
        if (r.status >= 300) {
          this.end(1006, `send: HTTP ${r.status}`);
          return;
        }
        break;
      } catch (err) {
        if (this.ended) return;
        if (attempt >= postRetries) {
          this.end(1006, "send: " + String(err));
          return;
        }
        await new Promise<void>((res) => setTimeout(res, 100 * 2 ** attempt));
      }
    }
    this.sending = false;
    void this.pump();
  }
}
