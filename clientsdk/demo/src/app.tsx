// The demo page: a header with who is here (<AvatarStack/>) and the
// connection, a shared text (Yjs on a document stream), and a board with
// everyone's cursors (<Cursors/>) and a list of notes (publications).
import { useEffect, useLayoutEffect, useRef, useState, type CSSProperties, type FormEvent, type ReactNode, type RefObject } from "react";
import type { Awareness } from "y-protocols/awareness";
import {
  AvatarStack,
  colorOf,
  Cursors,
  nameOf,
  StreamProvider,
  useCursors,
  usePublications,
  useStream,
  type Cursor,
  type CursorLook,
  type Huddle,
  type Publication,
} from "@huddle/react";
import type { HuddleYjsProvider } from "@huddle/yjs";
import { DOC, ROOM, randomName, type Note, type Page, type Point } from "./setup.js";
import { bindTextarea, LOCAL } from "./textarea.js";

const tint = (color: string): CSSProperties => ({ ["--c" as string]: color }) as CSSProperties;

export function App({ page }: { page: Page }): ReactNode {
  return (
    <StreamProvider name={ROOM}>
      <header className="bar">
        <div className="brand">
          <span className="logo" aria-hidden="true" />
          <b>Huddle</b>
          <span className="tagline">dev demo</span>
        </div>
        <Avatars />
        <Status client={page.client} />
      </header>
      <main>
        <p className="lede">
          A shared text, live cursors and a list of notes, all over one connection. <Invite me={page.me} />
        </p>
        <div className="panes">
          <Editor page={page} />
          <Board />
        </div>
        <p className="foot">
          You are <b id="me">{page.me}</b>. The text is a Yjs document on the document stream <code>{DOC}</code>{" "}
          (<code>@huddle/yjs</code>: a late joiner gets every edit, offline edits sync on reconnect); the board
          is <code>{ROOM}</code>: cursors are whispers (<code>&lt;Cursors/&gt;</code>), the avatars presence
          (<code>&lt;AvatarStack/&gt;</code>), the notes publications with history and recovery. In the console:{" "}
          <code>huddle</code>, <code>room</code>, <code>demo</code>.
        </p>
      </main>
    </StreamProvider>
  );
}

function Invite({ me }: { me: string }): ReactNode {
  const [other] = useState(() => {
    let o = randomName();
    while (o === me) o = randomName();
    return o;
  });
  return (
    <a id="invite" href={"?user=" + encodeURIComponent(other)} target="_blank" rel="noopener">
      Open a second user&nbsp;↗
    </a>
  );
}

// ---- header ----

/** useMedia tells whether a media query matches, following changes. */
function useMedia(query: string): boolean {
  const [on, set] = useState(() => matchMedia(query).matches);
  useEffect(() => {
    const m = matchMedia(query);
    const onChange = (): void => set(m.matches);
    m.addEventListener("change", onChange);
    onChange();
    return () => m.removeEventListener("change", onChange);
  }, [query]);
  return on;
}

/** Avatars: one per user present on the board, a badge when a user has several tabs. */
function Avatars(): ReactNode {
  const narrow = useMedia("(max-width: 599px)");
  return (
    <div id="avatars" className="avatars" aria-label="Who is here">
      <AvatarStack
        max={narrow ? 3 : 6}
        size={32}
        renderAvatar={(u, look) => {
          const tabs = u.connections.length;
          return (
            <div
              className={"avatar" + (look.isMe ? " me" : "")}
              data-user={u.user}
              title={look.name + (look.isMe ? " (you)" : "") + (tabs > 1 ? ` · ${tabs} tabs` : "")}
              style={tint(look.color)}
            >
              {look.initials}
              {tabs > 1 && <span className="badge">{tabs}</span>}
            </div>
          );
        }}
        renderMore={(hidden) => (
          <div className="avatar more" title={hidden.map((u) => nameOf(u.user, u.info)).join(", ")}>
            +{hidden.length}
          </div>
        )}
      />
    </div>
  );
}

interface StatusView {
  cls: "ok" | "wait" | "down";
  text: string;
  transport?: string;
  title?: string;
}

/** Status shows the connection: live (and over what), connecting, or reconnecting with the code of the drop. */
function Status({ client }: { client: Huddle }): ReactNode {
  const [view, setView] = useState<StatusView>({ cls: "wait", text: "connecting…" });
  useEffect(() => {
    let drop: { code: number; reason: string } | null = null;
    const connected = (): void => {
      drop = null;
      const t = client.transport;
      setView({ cls: "ok", text: t === "websocket" ? "live" : `live (${t})`, transport: t, title: `connected as ${client.user} (${client.clientId})` });
    };
    const offs = [
      client.on("connecting", (e) => {
        if (drop) setView({ cls: "down", text: `reconnecting… (${drop.code}${e.attempt > 1 ? `, try ${e.attempt}` : ""})`, title: drop.reason });
        else setView({ cls: "wait", text: "connecting…" });
      }),
      client.on("connected", connected),
      client.on("disconnected", (e) => {
        drop = e;
        if (e.reconnect) setView({ cls: "down", text: `reconnecting… (${e.code})`, title: e.reason });
        else setView({ cls: "down", text: `disconnected (${e.code}${e.reason ? ": " + e.reason : ""})`, title: e.reason });
      }),
    ];
    if (client.state === "connected") connected();
    return () => {
      for (const off of offs) off();
    };
  }, [client]);
  useEffect(() => {
    document.body.classList.toggle("offline", view.cls !== "ok");
  }, [view.cls]);
  return (
    <div id="status" className={view.cls} role="status" data-transport={view.transport} title={view.title}>
      {view.text}
    </div>
  );
}

// ---- the shared text ----

interface DocView {
  /** loaded: the document was synced at least once (editing is allowed from then on, online or not). */
  loaded: boolean;
  synced: boolean;
  unsynced: boolean;
}

/** useDocView follows the provider: loaded, synced, and whether local edits wait for the server. */
function useDocView(p: HuddleYjsProvider): DocView {
  const [view, setView] = useState<DocView>(() => ({ loaded: p.synced, synced: p.synced, unsynced: p.unsynced }));
  useEffect(() => {
    let loaded = p.synced;
    let poll: ReturnType<typeof setInterval> | undefined;
    const update = (): void => {
      loaded ||= p.synced;
      const next = { loaded, synced: p.synced, unsynced: p.unsynced };
      setView((v) => (v.loaded === next.loaded && v.synced === next.synced && v.unsynced === next.unsynced ? v : next));
      // The provider has no event for "acknowledged": look again while edits wait.
      if (next.unsynced && poll === undefined) poll = setInterval(update, 150);
      if (!next.unsynced && poll !== undefined) {
        clearInterval(poll);
        poll = undefined;
      }
    };
    const onUpdate = (_u: Uint8Array, origin: unknown): void => {
      if (origin === LOCAL) update();
    };
    const offs = [p.on("synced", update), p.on("status", update)];
    p.doc.on("update", onUpdate);
    update();
    return () => {
      for (const off of offs) off();
      p.doc.off("update", onUpdate);
      clearInterval(poll);
    };
  }, [p]);
  return view;
}

interface Peer {
  id: number;
  name: string;
  color: string;
}

/** usePeers lists the others with the document open, from Yjs awareness. */
function usePeers(aw: Awareness | null): readonly Peer[] {
  const [peers, setPeers] = useState<readonly Peer[]>([]);
  useEffect(() => {
    if (!aw) return;
    const read = (): void => {
      const out: Peer[] = [];
      for (const [id, st] of aw.getStates()) {
        const user = (st as { user?: { name?: unknown; color?: unknown } }).user;
        if (id === aw.clientID || !user || typeof user.name !== "string") continue;
        out.push({ id, name: user.name, color: typeof user.color === "string" ? user.color : "#8b90a0" });
      }
      out.sort((a, b) => a.name.localeCompare(b.name) || a.id - b.id);
      setPeers((prev) => (prev.length === out.length && prev.every((p, i) => p.id === out[i]?.id && p.name === out[i]?.name) ? prev : out));
    };
    aw.on("change", read);
    read();
    return () => aw.off("change", read);
  }, [aw]);
  return peers;
}

function docState(v: DocView): { state: string; text: string; cls: StatusView["cls"] } {
  if (!v.loaded) return { state: "loading", text: "loading…", cls: "wait" };
  if (!v.synced) return { state: "offline", text: v.unsynced ? "offline · edits kept" : "offline", cls: "down" };
  if (v.unsynced) return { state: "saving", text: "saving…", cls: "wait" };
  return { state: "saved", text: "saved", cls: "ok" };
}

function Editor({ page }: { page: Page }): ReactNode {
  const area = useRef<HTMLTextAreaElement>(null);
  useEffect(() => bindTextarea(page.text, area.current!), [page.text]);
  const view = useDocView(page.provider);
  const peers = usePeers(page.provider.awareness);
  const st = docState(view);
  return (
    <section id="doc" className="card editor" aria-label="Shared text">
      <div className="card-head">
        <h2>Shared text</h2>
        <code className="stream">{DOC}</code>
        <span id="doc-status" className={"pill " + st.cls} data-state={st.state}>
          {st.text}
        </span>
      </div>
      <textarea
        id="editor"
        ref={area}
        readOnly={!view.loaded}
        placeholder={view.loaded ? "Type here: everyone on this page sees it as you type." : "Loading the document…"}
        autoComplete="off"
        aria-label="Shared text"
      />
      <p className="peers" id="peers">
        {peers.length === 0 ? (
          <span className="muted">Nobody else has the text open.</span>
        ) : (
          <>
            <span className="muted">Also editing:</span>
            {peers.map((p) => (
              <span key={p.id} className="peer" style={tint(p.color)}>
                {p.name}
              </span>
            ))}
          </>
        )}
      </p>
    </section>
  );
}

// ---- the board ----

/** useSize is an element's inner size (clientWidth, clientHeight), kept up to date. */
function useSize(ref: RefObject<HTMLElement | null>): { w: number; h: number } {
  const [size, setSize] = useState({ w: 0, h: 0 });
  useLayoutEffect(() => {
    const el = ref.current;
    if (!el) return;
    const measure = (): void => setSize((s) => (s.w === el.clientWidth && s.h === el.clientHeight ? s : { w: el.clientWidth, h: el.clientHeight }));
    measure();
    const ro = new ResizeObserver(measure);
    ro.observe(el);
    return () => ro.disconnect();
  }, [ref]);
  return size;
}

const isPoint = (d: unknown): d is Point =>
  d !== null && typeof d === "object" && Number.isFinite((d as Point).x) && Number.isFinite((d as Point).y);
const clamp = (v: number, lo: number, hi: number): number => Math.min(Math.max(v, lo), Math.max(lo, hi));

// The arrow's size, and how much room a name tag takes (roughly).
const ARROW_W = 16;
const ARROW_H = 20;
const tagWidth = (name: string): number => 30 + 8.5 * name.length;

/**
 * CursorMark draws one cursor inside the board whatever point it was sent
 * with: another screen's board can be larger, and a client can send any
 * number. <Cursors/> places its wrapper at the sent point; the mark moves
 * itself back by the difference to the clamped point, and turns its name
 * tag left or up near the right and bottom edges.
 */
function CursorMark({ cursor, look, w, h }: { cursor: Cursor<Point>; look: CursorLook; w: number; h: number }): ReactNode {
  const x = clamp(look.point.x, 0, w - ARROW_W);
  const y = clamp(look.point.y, 0, h - ARROW_H);
  const cls = "cursor" + (x > w - tagWidth(look.name) ? " flip-x" : "") + (y > h - 48 ? " flip-y" : "");
  return (
    <div className={cls} data-user={cursor.user} style={{ ...tint(look.color), left: x - look.point.x, top: y - look.point.y }}>
      <svg width={ARROW_W} height={ARROW_H} viewBox="0 0 16 20" aria-hidden="true">
        <path d="M1 1v16l4.2-4.1 2.9 6.4 2.6-1.2-2.9-6.2H14z" fill="var(--c)" stroke="#fff" strokeWidth="1.5" strokeLinejoin="round" />
      </svg>
      <span className="label">{look.name}</span>
    </div>
  );
}

function Board(): ReactNode {
  // Cursors live on the canvas only (not over the notes beside or below
  // it), so they are measured, tracked and clamped there.
  const canvas = useRef<HTMLDivElement>(null);
  const { w, h } = useSize(canvas);
  const { others } = useCursors<Point>();
  const someone = others.some((c) => isPoint(c.data));
  return (
    <section id="board" className="card board" aria-label="Board">
      <div className="canvas" ref={canvas}>
        <p id="hint" className="canvas-hint" hidden={someone}>
          <span className="fine">Move your pointer over this board.</span>
          <span className="coarse">Drag a finger across this board.</span>
          <br />
          Everyone else sees it live.
        </p>
        <Cursors<Point> className="cursors" renderCursor={(cursor, look) => <CursorMark cursor={cursor} look={look} w={w} h={h} />} />
      </div>
      <Notes />
    </section>
  );
}

function NoteItem({ p }: { p: Publication<Note> }): ReactNode {
  const who = p.from ? p.from.user : "server";
  const d = p.data as unknown;
  const text = d !== null && typeof d === "object" && typeof (d as Note).text === "string" ? (d as Note).text : JSON.stringify(d);
  const when = new Date(p.ts < 1e12 ? p.ts * 1000 : p.ts);
  return (
    <li data-offset={p.offset} style={tint(p.from ? colorOf(who) : "#8b90a0")}>
      <span className="dot" />
      <span>
        <span className="who">{who}</span>
        <span className="text">{text}</span>
      </span>
      <time dateTime={when.toISOString()} title={`#${p.offset} · ${when.toLocaleString()}`}>
        {when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}
      </time>
    </li>
  );
}

function Notes(): ReactNode {
  const room = useStream<Note>();
  const notes = usePublications<Note>(undefined, { limit: 100, history: true });
  const [draft, setDraft] = useState("");
  const list = useRef<HTMLUListElement>(null);
  const last = notes[notes.length - 1]?.offset;
  useEffect(() => {
    const el = list.current;
    if (el) el.scrollTop = el.scrollHeight;
  }, [last]);
  const onSubmit = async (e: FormEvent): Promise<void> => {
    e.preventDefault();
    const text = draft.trim();
    if (!text || !room) return;
    setDraft("");
    try {
      await room.publish({ text });
    } catch (err) {
      console.warn("huddle demo: publish failed", err);
      setDraft((d) => d || text);
    }
  };
  return (
    <aside className="notes">
      <h2>
        Notes <span id="note-count" className="count">{notes.length > 0 ? notes.length : ""}</span>
      </h2>
      <ul id="notes" ref={list}>
        {notes.map((p) => (
          <NoteItem key={p.offset} p={p} />
        ))}
      </ul>
      {notes.length === 0 && (
        <p id="notes-empty" className="empty">
          No notes yet. Add one below.
        </p>
      )}
      <form id="note-form" autoComplete="off" onSubmit={(e) => void onSubmit(e)}>
        <input
          id="note-text"
          name="text"
          placeholder="Write a note…"
          maxLength={200}
          required
          value={draft}
          onChange={(e) => setDraft(e.target.value)}
          aria-label="Note"
        />
        <button id="note-add" type="submit">
          Add
        </button>
      </form>
    </aside>
  );
}
