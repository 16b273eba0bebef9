// Bounded waiting and unique names for the node test suites (e2e/cable,
// e2e/rpc); no dependencies, so every suite can import it.

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `fn` until it returns a truthy value; throws after `ms` with `what`. */
export async function waitFor(fn, { ms = 5000, what = "condition", every = 20 } = {}) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(every);
  }
}

/** Resolves with the first `event` emitted by `emitter.on`, or rejects after `ms`. */
export function nextEvent(emitter, event, { ms = 5000, filter = () => true } = {}) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => { off(); reject(new Error(`timed out after ${ms} ms waiting for '${event}'`)); }, ms);
    const off = emitter.on(event, (...args) => {
      if (!filter(...args)) return;
      clearTimeout(t); off(); resolve(args.length > 1 ? args : args[0]);
    });
  });
}

/** Rejects after `ms` if `p` has not settled. */
export function within(p, ms, what = "operation") {
  let t;
  return Promise.race([p, new Promise((_, rej) => { t = setTimeout(() => rej(new Error(`${what} did not finish within ${ms} ms`)), ms); })])
    .finally(() => clearTimeout(t));
}

/** A unique name per test run. */
export const uniq = (prefix) => `${prefix}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
