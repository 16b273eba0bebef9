// The app's and the network's lifecycle, as the client hears of it: a
// browser's `online` and `visibilitychange` events (where those globals
// exist), React Native's AppState, and a network source such as NetInfo.
// Nothing here assumes a DOM: each source is used only when it is there.

/**
 * AppStateLike is the part of React Native's `AppState` the client uses;
 * pass `AppState` from "react-native" as it is (react-native-web's works
 * too). Any object of this shape will do: `currentState` is the state now,
 * and `addEventListener("change", fn)` calls fn with each new state
 * (`"active"`, `"background"`, `"inactive"`, ...) until `remove()`.
 */
export interface AppStateLike {
  /** The app's state now, e.g. "active" or "background". */
  readonly currentState?: string | null;
  /** Calls listener with every new state; the subscription's remove() stops it. */
  addEventListener(type: "change", listener: (state: string) => void): { remove(): void };
}

/**
 * NetworkSource tells the client whether the device is online. subscribe
 * calls listener with the current state (at once or soon, as the source
 * learns it) and on every change, and returns a function that stops it.
 * With @react-native-community/netinfo:
 *
 * ```ts
 * const network: NetworkSource = {
 *   subscribe: (fn) => NetInfo.addEventListener((s) => fn(s.isConnected !== false)),
 * };
 * ```
 */
export interface NetworkSource {
  /** Calls listener(online) now or soon and on every change; returns a function that stops it. */
  subscribe(listener: (online: boolean) => void): () => void;
}

/** What the client does when a source speaks. */
export interface LifecycleHandlers {
  /** wake: the browser is online again, or the page became visible. */
  wake(): void;
  /** network: the network source says online or offline. */
  network(online: boolean): void;
  /** appState: the app's state changed (or is this, when listening starts). */
  appState(state: string): void;
}

/** The sources to listen to. */
export interface LifecycleSources {
  /** globals listens to the browser's `online` and `visibilitychange`, where addEventListener exists. */
  globals: boolean;
  appState: AppStateLike | undefined;
  network: NetworkSource | undefined;
}

type Target = {
  addEventListener?: (ev: string, fn: () => void) => void;
  removeEventListener?: (ev: string, fn: () => void) => void;
};

const host = globalThis as unknown as Target & { document?: Target & { visibilityState?: string } };

/**
 * listenLifecycle starts listening to the sources and returns a function
 * that stops all of them. The app state is reported once at the start too,
 * so that a client created in the background counts from then.
 */
export function listenLifecycle(src: LifecycleSources, h: LifecycleHandlers): () => void {
  const offs: (() => void)[] = [];
  if (src.globals && typeof host.addEventListener === "function") {
    const wake = (): void => h.wake();
    const visible = (): void => {
      if (host.document?.visibilityState === "visible") h.wake();
    };
    host.addEventListener("online", wake);
    host.document?.addEventListener?.("visibilitychange", visible);
    offs.push(() => {
      host.removeEventListener?.("online", wake);
      host.document?.removeEventListener?.("visibilitychange", visible);
    });
  }
  const app = src.appState;
  if (app) {
    const sub = app.addEventListener("change", (s) => h.appState(s));
    offs.push(() => sub.remove());
    if (typeof app.currentState === "string") h.appState(app.currentState);
  }
  if (src.network) offs.push(src.network.subscribe((online) => h.network(online)));
  return () => {
    for (const off of offs.splice(0)) {
      try {
        off();
      } catch {
        // A source that fails to stop is not the client's to fix.
      }
    }
  };
}
