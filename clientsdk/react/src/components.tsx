import { useEffect, useRef, type CSSProperties, type ReactNode } from "react";
import type { Cursor, PresenceState, PresenceUser } from "@huddle/client";
import { useCursors, useHuddle, useMyUser, usePresence } from "./hooks.js";
import { colorOf, initials, nameOf } from "./look.js";

/** Point is a cursor position in CSS pixels from the top-left corner of the cursor layer. */
export interface Point {
  x: number;
  y: number;
}

/** What a cursor's render prop gets besides the cursor. */
export interface CursorLook {
  point: Point;
  color: string;
  name: string;
}

/** Props of {@link Cursors}. */
export interface CursorsProps<C extends Point = Point> {
  /** stream is the stream's name; default the nearest StreamProvider's. */
  stream?: string;
  /** ev is the whisper event carrying the cursors. Default "cursor". */
  ev?: string;
  /**
   * track sends this client's pointer, relative to the layer, while it is
   * over the layer's parent element (and hides it when it leaves). Default
   * true. The parent should be positioned (e.g. position: relative).
   */
  track?: boolean;
  /** renderCursor replaces the default arrow and name tag of one cursor. */
  renderCursor?: (cursor: Cursor<C>, look: CursorLook) => ReactNode;
  className?: string;
  style?: CSSProperties;
}

const isPoint = (d: unknown): d is Point =>
  d !== null && typeof d === "object" && Number.isFinite((d as Point).x) && Number.isFinite((d as Point).y);

/**
 * Cursors renders the other connections' cursors of a stream on a layer
 * that covers its parent element (position: absolute; inset: 0; it lets the
 * pointer through). Each cursor is placed at its { x, y } in px from the
 * layer's top-left corner, with the user's colour and name; values that are
 * not points are not drawn.
 */
export function Cursors<C extends Point = Point>(props: CursorsProps<C>): ReactNode {
  const { others, move, hide } = useCursors<C>(props.stream, props.ev !== undefined ? { ev: props.ev } : {});
  const layer = useRef<HTMLDivElement>(null);
  const track = props.track !== false;
  useEffect(() => {
    const el = layer.current;
    const target = el?.parentElement;
    if (!track || !el || !target) return;
    const onMove = (e: PointerEvent): void => {
      const r = el.getBoundingClientRect();
      move({ x: Math.round(e.clientX - r.left), y: Math.round(e.clientY - r.top) } as C);
    };
    const onLeave = (): void => hide();
    target.addEventListener("pointermove", onMove);
    target.addEventListener("pointerleave", onLeave);
    return () => {
      target.removeEventListener("pointermove", onMove);
      target.removeEventListener("pointerleave", onLeave);
    };
  }, [track, move, hide]);
  const render = props.renderCursor;
  return (
    <div
      ref={layer}
      className={props.className}
      data-huddle-cursors=""
      style={{ position: "absolute", inset: 0, pointerEvents: "none", overflow: "hidden", ...props.style }}
    >
      {others.map((c) => {
        if (!isPoint(c.data)) return null;
        const point = { x: c.data.x, y: c.data.y };
        const look: CursorLook = { point, color: colorOf(c.user), name: nameOf(c.user, c.info) };
        return (
          <div
            key={c.client}
            data-client={c.client}
            data-user={c.user}
            style={{ position: "absolute", left: 0, top: 0, transform: `translate(${point.x}px, ${point.y}px)`, willChange: "transform" }}
          >
            {render ? render(c, look) : <Arrow color={look.color} name={look.name} />}
          </div>
        );
      })}
    </div>
  );
}

function Arrow(props: { color: string; name: string }): ReactNode {
  return (
    <>
      <svg width="16" height="20" viewBox="0 0 16 20" aria-hidden="true" style={{ display: "block" }}>
        <path d="M1 1v16l4.2-4.1 2.9 6.4 2.6-1.2-2.9-6.2H14z" fill={props.color} stroke="#fff" strokeWidth="1.5" strokeLinejoin="round" />
      </svg>
      <span
        style={{
          position: "absolute",
          left: 14,
          top: 16,
          padding: "1px 6px",
          borderRadius: 4,
          background: props.color,
          color: "#fff",
          font: "12px/1.4 system-ui, sans-serif",
          whiteSpace: "nowrap",
        }}
      >
        {props.name}
      </span>
    </>
  );
}

/** What an avatar's render prop gets besides the user. */
export interface AvatarLook {
  color: string;
  name: string;
  initials: string;
  /** isMe is true for this client's own user. */
  isMe: boolean;
}

/** Props of {@link AvatarStack}. */
export interface AvatarStackProps<S extends PresenceState = PresenceState> {
  /** stream is the stream's name; default the nearest StreamProvider's. */
  stream?: string;
  /** max is how many avatars are shown; the rest are counted in a "+N". Default 3. */
  max?: number;
  /** size is an avatar's diameter in px. Default 32. */
  size?: number;
  /** includeMe shows this client's own user too (first). Default true. */
  includeMe?: boolean;
  /** renderAvatar replaces the default avatar of one user. */
  renderAvatar?: (user: PresenceUser<S>, look: AvatarLook) => ReactNode;
  /** renderMore replaces the default "+N" (hidden are the users not shown). */
  renderMore?: (hidden: readonly PresenceUser<S>[]) => ReactNode;
  className?: string;
  style?: CSSProperties;
}

/**
 * AvatarStack renders who is present in a stream: one avatar per user
 * (initials on the user's colour, the name as its title), at most max of
 * them, then "+N" for the rest.
 */
export function AvatarStack<S extends PresenceState = PresenceState>(props: AvatarStackProps<S>): ReactNode {
  const everyone = usePresence<S>(props.stream);
  const me = useMyUser(useHuddle());
  const max = Math.max(0, props.max ?? 3);
  const size = props.size ?? 32;
  const includeMe = props.includeMe !== false;
  let users: PresenceUser<S>[] = [];
  for (const u of everyone) if (u.user === me) users.unshift(u); else users.push(u);
  if (!includeMe) users = users.filter((u) => u.user !== me);
  const shown = users.slice(0, max);
  const hidden = users.slice(shown.length);
  const circle: CSSProperties = {
    width: size,
    height: size,
    borderRadius: "50%",
    marginLeft: -size / 4,
    border: "2px solid #fff",
    boxSizing: "border-box",
    display: "flex",
    alignItems: "center",
    justifyContent: "center",
    font: `600 ${Math.round(size * 0.38)}px/1 system-ui, sans-serif`,
    color: "#fff",
    flex: "none",
  };
  return (
    <div className={props.className} data-huddle-avatars="" style={{ display: "flex", paddingLeft: size / 4, ...props.style }}>
      {shown.map((u) => {
        const name = nameOf(u.user, u.info);
        const look: AvatarLook = { color: colorOf(u.user), name, initials: initials(name), isMe: u.user === me };
        if (props.renderAvatar) return <span key={u.user} data-user={u.user}>{props.renderAvatar(u, look)}</span>;
        const tabs = u.connections.length;
        return (
          <div
            key={u.user}
            data-user={u.user}
            data-me={look.isMe ? "" : undefined}
            title={name + (look.isMe ? " (you)" : "") + (tabs > 1 ? ` · ${tabs} tabs` : "")}
            style={{ ...circle, background: look.color }}
          >
            {look.initials}
          </div>
        );
      })}
      {hidden.length > 0 &&
        (props.renderMore ? (
          <span data-more={hidden.length}>{props.renderMore(hidden)}</span>
        ) : (
          <div
            data-more={hidden.length}
            title={hidden.map((u) => nameOf(u.user, u.info)).join(", ")}
            style={{ ...circle, background: "#8b90a0" }}
          >
            +{hidden.length}
          </div>
        ))}
    </div>
  );
}
