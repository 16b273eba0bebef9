// Compiled by types.test.mjs with strict TypeScript (never run): the typed
// payloads of the hooks flow into components, and wrong ones do not compile.
import type { ReactNode } from "react";
import { Huddle } from "@huddle/client";
import {
  AvatarStack,
  Cursors,
  HuddleProvider,
  StreamProvider,
  useConnectionState,
  useCursors,
  useHuddle,
  useMyPresence,
  useOthers,
  usePresence,
  usePublications,
  useStream,
  useStreamState,
  useWhisper,
  type ConnectionState,
  type Cursor,
  type PresenceUser,
  type Publication,
  type StreamState,
} from "@huddle/react";

type Note = { text: string };
type Status = { status: "idle" | "typing"; page?: number };
type Point = { x: number; y: number };

export function Notes(): ReactNode {
  const pubs: readonly Publication<Note>[] = usePublications<Note>("notes", { limit: 20, history: true });
  const state: ConnectionState = useConnectionState();
  const sub: StreamState = useStreamState("notes");
  const stream = useStream<Note>("notes");
  void stream?.publish({ text: "hi" });
  // @ts-expect-error: a Note has no n
  void stream?.publish({ n: 1 });
  // @ts-expect-error: text is a string
  const bad: number = pubs[0]!.data.text;
  void bad;
  return (
    <ul title={state + sub}>
      {pubs.map((p) => (
        <li key={p.offset}>{p.data.text}</li>
      ))}
    </ul>
  );
}

export function Room(): ReactNode {
  const [me, update] = useMyPresence<Status>(undefined, { status: "idle" });
  const others: readonly PresenceUser<Status>[] = useOthers<Status>();
  const all = usePresence<Status>("room");
  update({ status: "typing" });
  update({ page: null }); // null deletes a key
  // @ts-expect-error: not a status
  update({ status: "sleeping" });
  const { others: cursors, move, hide } = useCursors<Point>();
  const c: readonly Cursor<Point>[] = cursors;
  move({ x: 1, y: 2 });
  // @ts-expect-error: a Point needs y
  move({ x: 1 });
  hide();
  const send = useWhisper<{ emoji: string }>("room", (w) => {
    const e: string = w.data.emoji;
    void e;
  });
  const ok: boolean = send("react", { emoji: "+1" });
  // @ts-expect-error: emoji is a string
  send("react", { emoji: 1 });
  const client: Huddle | null = useHuddle();
  return (
    <div style={{ position: "relative" }} title={String(ok) + String(client?.user) + (me?.status ?? "") + others.length + all.length + c.length}>
      <Cursors<Point & { label?: string }> renderCursor={(cur, look) => <b style={{ color: look.color }}>{cur.data.label ?? look.name}</b>} />
      <AvatarStack<Status> max={4} renderAvatar={(u, look) => <i title={look.name}>{u.state?.status}</i>} />
    </div>
  );
}

export function App(props: { client?: Huddle }): ReactNode {
  const room = (
    <StreamProvider<Status> name="room" join={{ status: "idle" }}>
      <Room />
    </StreamProvider>
  );
  return props.client ? (
    <HuddleProvider client={props.client}>{room}</HuddleProvider>
  ) : (
    <HuddleProvider options={{ url: "wss://rt.example.com/ws", getToken: async () => "token" }}>
      <Notes />
      {room}
    </HuddleProvider>
  );
}

// @ts-expect-error: a provider needs a client or options
export const missing = <HuddleProvider>{null}</HuddleProvider>;
