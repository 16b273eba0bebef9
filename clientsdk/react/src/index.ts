"use client";
// @huddle/react: React bindings for the Huddle client SDK. See README.md.
export { HuddleProvider, StreamProvider } from "./provider.js";
export type { HuddleProviderProps, StreamProviderProps } from "./provider.js";
export {
  useHuddle,
  useConnectionState,
  useStream,
  useStreamState,
  usePublications,
  usePresence,
  useOthers,
  useMyPresence,
  useCursors,
  useWhisper,
  mergePublications,
} from "./hooks.js";
export type {
  UsePublicationsOptions,
  PresencePatch,
  UseCursorsOptions,
  CursorsState,
  Whisper,
  UseWhisperOptions,
} from "./hooks.js";
export type { UseStreamOptions } from "./registry.js";
export type { StreamRegistry } from "./registry.js";
export { Cursors, AvatarStack } from "./components.js";
export type { Point, CursorLook, CursorsProps, AvatarLook, AvatarStackProps } from "./components.js";
export { colorOf, nameOf, initials } from "./look.js";
export { HuddleContext } from "./context.js";
export type { HuddleContextValue } from "./context.js";
// The SDK's types that the hooks return, for convenience.
export type {
  Huddle,
  HuddleOptions,
  ConnectionState,
  Stream,
  StreamState,
  Publication,
  PresenceUser,
  PresenceConnection,
  PresenceState,
  Cursor,
  WhisperEvent,
} from "@huddle/client";
