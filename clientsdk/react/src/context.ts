import { createContext, useContext } from "react";
import type { Huddle } from "@huddle/client";
import type { StreamRegistry } from "./registry.js";

/** What a HuddleProvider gives its subtree. */
export interface HuddleContextValue {
  /** client is null on the server and until the provider's effect made it. */
  client: Huddle | null;
  registry: StreamRegistry | null;
}

export const HuddleContext = createContext<HuddleContextValue | null>(null);

/** StreamContext names the stream of the nearest StreamProvider. */
export const StreamContext = createContext<string | null>(null);

export function useHuddleContext(hook: string): HuddleContextValue {
  const ctx = useContext(HuddleContext);
  if (!ctx) throw new Error(`@huddle/react: ${hook} must be used inside a <HuddleProvider>`);
  return ctx;
}

/** useStreamName returns name, or the nearest StreamProvider's stream when name is undefined. */
export function useStreamName(name: string | undefined, hook: string): string {
  const scoped = useContext(StreamContext);
  const n = name ?? scoped;
  if (n === null || n === "") {
    throw new Error(`@huddle/react: ${hook} needs a stream name, or a <StreamProvider name="..."> around it`);
  }
  return n;
}
