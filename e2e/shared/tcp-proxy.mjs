// A TCP proxy whose connections can be cut at once, like a lost network, or
// frozen (half-open: nothing arrives, nothing fails): for the suites that
// must drop a real connection (the SDK's, the React and Yjs packages', and
// e2e/demo). While cut it refuses new connections too, until restore(). No
// dependencies.
import { connect, createServer } from "node:net";

/**
 * startTCPProxy listens on a free loopback port and pipes each connection
 * to targetPort on 127.0.0.1; url and wsUrl point at it (a page loaded from
 * url, or a WebSocket opened to wsUrl, goes through it). cut() destroys every piped connection (both sides, no close
 * frame: a dead network) and refuses new ones until restore(); freeze()
 * silently stops the current ones.
 */
export async function startTCPProxy(targetPort) {
  const pairs = new Set();
  const frozenPairs = [];
  let up = true;
  const server = createServer((down) => {
    if (!up) {
      down.destroy();
      return;
    }
    const upstream = connect(targetPort, "127.0.0.1");
    const pair = [down, upstream];
    pairs.add(pair);
    const kill = () => {
      pairs.delete(pair);
      down.destroy();
      upstream.destroy();
    };
    down.on("error", kill).on("close", kill);
    upstream.on("error", kill).on("close", kill);
    down.pipe(upstream);
    upstream.pipe(down);
  });
  await new Promise((ok, fail) => {
    server.once("error", fail);
    server.listen(0, "127.0.0.1", ok);
  });
  const port = server.address().port;
  return {
    port,
    url: `http://127.0.0.1:${port}/`,
    wsUrl: `ws://127.0.0.1:${port}/ws`,
    get connections() { return pairs.size; },
    cut() {
      up = false;
      for (const [a, b] of [...pairs]) {
        a.destroy();
        b.destroy();
      }
      pairs.clear();
    },
    restore() { up = true; },
    /**
     * freeze stops forwarding on every current connection but keeps the
     * sockets open (a half-open network: nothing arrives, nothing fails);
     * new connections work.
     */
    freeze() {
      for (const [a, b] of pairs) {
        for (const sock of [a, b]) {
          sock.removeAllListeners("close");
          sock.removeAllListeners("error");
          sock.on("error", () => {});
        }
        a.unpipe(b);
        b.unpipe(a);
        a.pause();
        b.pause();
      }
      const frozen = [...pairs];
      pairs.clear();
      frozenPairs.push(...frozen);
    },
    close() {
      this.cut();
      for (const [a, b] of frozenPairs.splice(0)) {
        a.destroy();
        b.destroy();
      }
      return new Promise((ok) => server.close(() => ok()));
    },
  };
}
