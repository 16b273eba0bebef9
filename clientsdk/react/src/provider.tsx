import { useEffect, useMemo, useRef, useState, type ReactNode } from "react";
import { Huddle, type HuddleOptions, type PresenceState } from "@huddle/client";
import { HuddleContext, StreamContext, type HuddleContextValue } from "./context.js";
import { StreamRegistry, type UseStreamOptions } from "./registry.js";
import { useStream } from "./hooks.js";

/**
 * Props of {@link HuddleProvider}: either a ready `client` (the provider
 * never closes it) or the `options` to make one (the provider makes it in
 * an effect, so never on the server, and disconnects it on unmount).
 */
export type HuddleProviderProps = { children?: ReactNode } & (
  | { client: Huddle; options?: undefined }
  | {
      /**
       * options are read once, when the provider mounts; give the provider
       * a new `key` to start over with other options. getToken is always
       * called through the latest options, so it may close over state.
       */
      options: HuddleOptions;
      client?: undefined;
    }
);

interface Owned {
  client: Huddle;
  closeTimer: ReturnType<typeof setTimeout> | undefined;
}

/**
 * HuddleProvider gives its subtree a Huddle client and the shared,
 * reference-counted stream subscriptions of the hooks.
 */
export function HuddleProvider(props: HuddleProviderProps): ReactNode {
  const external = props.client ?? null;
  const optionsRef = useRef<HuddleOptions | undefined>(props.options);
  useEffect(() => {
    if (props.options) optionsRef.current = props.options;
  });
  const owned = useRef<Owned | null>(null);
  const [own, setOwn] = useState<Huddle | null>(null);

  useEffect(() => {
    if (external) return;
    let o = owned.current;
    if (o && o.closeTimer !== undefined) {
      // StrictMode (or Fast Refresh) ran the cleanup and this effect again
      // in one go: keep the client made a moment ago.
      clearTimeout(o.closeTimer);
      o.closeTimer = undefined;
    } else if (!o) {
      const opts = optionsRef.current;
      if (!opts) return;
      const getToken = opts.getToken
        ? () => (optionsRef.current?.getToken ?? opts.getToken)!()
        : undefined;
      o = { client: new Huddle(getToken ? { ...opts, getToken } : opts), closeTimer: undefined };
      owned.current = o;
    }
    const mine = o;
    setOwn(mine.client);
    return () => {
      // Deferred: a remount in the same commit cancels it.
      mine.closeTimer = setTimeout(() => {
        mine.closeTimer = undefined;
        if (owned.current === mine) owned.current = null;
        mine.client.disconnect();
        setOwn((cur) => (cur === mine.client ? null : cur));
      }, 0);
    };
  }, [external]);

  const client = external ?? own;
  const value = useMemo<HuddleContextValue>(
    () => ({ client, registry: client ? new StreamRegistry(client) : null }),
    [client],
  );
  return <HuddleContext.Provider value={value}>{props.children}</HuddleContext.Provider>;
}

/** Props of {@link StreamProvider}. */
export interface StreamProviderProps<S extends PresenceState = PresenceState> extends UseStreamOptions<S> {
  /** name is the stream's name, e.g. "doc:42". */
  name: string;
  children?: ReactNode;
}

/**
 * StreamProvider holds a subscription to one stream for as long as it is
 * mounted, and makes it the default stream of the hooks and components
 * below it, so that they can be called without a stream name.
 */
export function StreamProvider<S extends PresenceState = PresenceState>(props: StreamProviderProps<S>): ReactNode {
  const { name, children, ...opts } = props;
  useStream<unknown, S>(name, opts);
  return <StreamContext.Provider value={name}>{children}</StreamContext.Provider>;
}
