// @huddle/client: the Huddle client SDK. See README.md.
export { Huddle, VERSION } from "./client.js";
export type { TransportName, FetchLike, ResponseLike } from "./http.js";
export type { HuddleOptions, ClientEvents, ConnectionState, WebSocketLike, WebSocketConstructor, Handler } from "./client.js";
export type { AppStateLike, NetworkSource } from "./lifecycle.js";
export { Stream } from "./stream.js";
export type { StreamOptions, StreamEvents, StreamState, Publication, WhisperEvent, HistoryOptions, HistoryPage } from "./stream.js";
export { Presence } from "./presence.js";
export type { PresenceUser, PresenceConnection, PresenceEvents, PresenceState } from "./presence.js";
export { Cursors } from "./cursors.js";
export type { Cursor, CursorsOptions, CursorsEvents } from "./cursors.js";
export { HuddleError } from "./errors.js";
export { Events } from "./events.js";
export { Code, codeText, codeReconnects } from "./gen/index.js";
export type * as protocol from "./gen/messages.js";
export type { Position, ClientInfo, Member } from "./gen/index.js";
export { encodeFrame, decodeServerFrame, decodeClientFrame, subprotocols, FrameError } from "./gen/index.js";
export type { Codec, ClientMessage, ServerMessage, DecodedFrame } from "./gen/index.js";
