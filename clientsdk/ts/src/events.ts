/**
 * Events is a small typed event emitter. A listener that throws does not
 * stop the others or the SDK; the error is rethrown on a fresh stack so it
 * still surfaces (console, window.onerror, process 'uncaughtException').
 */
export class Events<E extends object> {
  private listeners: { [K in keyof E]?: Set<(arg: E[K]) => void> } = {};

  /** on calls fn for every ev and returns a function that stops it. */
  on<K extends keyof E>(ev: K, fn: (arg: E[K]) => void): () => void {
    let set = this.listeners[ev];
    if (!set) {
      set = new Set();
      this.listeners[ev] = set;
    }
    set.add(fn);
    return () => this.off(ev, fn);
  }

  /** once calls fn for the next ev only. */
  once<K extends keyof E>(ev: K, fn: (arg: E[K]) => void): () => void {
    const off = this.on(ev, (arg) => {
      off();
      fn(arg);
    });
    return off;
  }

  /** off removes fn. */
  off<K extends keyof E>(ev: K, fn: (arg: E[K]) => void): void {
    this.listeners[ev]?.delete(fn);
  }

  protected emit<K extends keyof E>(ev: K, arg: E[K]): void {
    const set = this.listeners[ev];
    if (!set || set.size === 0) return;
    for (const fn of Array.from(set)) {
      try {
        fn(arg);
      } catch (err) {
        setTimeout(() => {
          throw err;
        }, 0);
      }
    }
  }

  protected hasListeners(ev: keyof E): boolean {
    return (this.listeners[ev]?.size ?? 0) > 0;
  }
}
