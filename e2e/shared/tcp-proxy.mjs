// A TCP proxy whose connections can be cut at once, like a lost network:
// for the suites that must drop a real connection (e2e/demo). While cut it
// refuses new connections too, until restore(). No dependencies.
import { connect, createServer } from "node:net";

/**
 * startTCPProxy listens on a free loopback port and pipes every connection
 * to targetPort on 127.0.0.1. url and wsUrl point at it (a page loaded from
 * url, or a WebSocket opened to wsUrl, goes through it).
 */
export async function startTCPProxy(targetPort) {
  const socks = new Set();
  let down = false;
  const server = createServer((c) => {
    if (down) {
      c.destroy();
      return;
    }
    const u = connect(targetPort, "127.0.0.1");
    for (const [a, b] of [[c, u], [u, c]]) {
      socks.add(a);
      a.on("error", () => {});
      a.on("close", () => {
        socks.delete(a);
        b.destroy();
      });
      a.pipe(b);
    }
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
    /** connections is how many sockets (both sides) are open through the proxy. */
    get connections() { return socks.size; },
    /** cut destroys every connection (no close frame, no FIN handshake to wait for) and refuses new ones. */
    cut() {
      down = true;
      for (const s of [...socks]) s.destroy();
    },
    /** restore accepts connections again. */
    restore() { down = false; },
    close() {
      down = true;
      for (const s of [...socks]) s.destroy();
      return new Promise((ok) => server.close(() => ok()));
    },
  };
}
