// An HTTP proxy that breaks WebSockets the ways real ones do, for the
// suites that test the HTTP transports (clientsdk/ts/test, e2e/demo). No
// dependencies.
import { connect, createServer } from "node:net";

/**
 * startHTTPProxy listens on a free loopback port and forwards HTTP to
 * target port by mode:
 * - "open": everything, WebSocket upgrades included;
 * - "no-upgrade": refuses WebSocket upgrades (403); other requests pass;
 * - "buffered": refuses upgrades and holds each response until it is
 *   complete, so a stream of events never arrives and long polls do.
 * setMode(m) also drops every connection in flight (the path changed).
 * Each request goes upstream on a connection of its own (Connection:
 * close), so a response's end is the upstream's. counts tells how many
 * upgrades were refused and passed.
 */
export async function startHTTPProxy(targetPort, mode = "open") {
  const socks = new Set();
  const counts = { upgrades: 0, refused: 0, requests: 0 };
  const track = (s) => {
    socks.add(s);
    s.on("close", () => socks.delete(s));
    s.on("error", () => s.destroy());
  };
  const server = createServer((down) => {
    track(down);
    let head = Buffer.alloc(0);
    const onData = (chunk) => {
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf("\r\n\r\n");
      if (end < 0) return;
      down.off("data", onData);
      down.pause();
      serve(down, head.subarray(0, end + 4).toString("latin1"), head.subarray(end + 4));
    };
    down.on("data", onData);
  });
  function serve(down, headText, rest) {
    const upgrade = /\r\nupgrade:\s*websocket/i.test(headText);
    if (upgrade && mode !== "open") {
      counts.refused++;
      down.end("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
      return;
    }
    const up = connect(targetPort, "127.0.0.1");
    track(up);
    up.on("close", () => down.destroy());
    down.on("close", () => up.destroy());
    if (upgrade) {
      counts.upgrades++;
      up.write(headText);
    } else {
      counts.requests++;
      const lines = headText.split("\r\n").filter((l) => l !== "" && !/^connection:/i.test(l));
      up.write(lines.join("\r\n") + "\r\nConnection: close\r\n\r\n");
    }
    up.write(rest);
    down.pipe(up);
    down.resume();
    if (mode === "buffered" && !upgrade) {
      const parts = [];
      up.on("data", (c) => parts.push(c));
      up.on("end", () => down.end(Buffer.concat(parts)));
    } else {
      up.pipe(down);
    }
  }
  await new Promise((ok, fail) => {
    server.once("error", fail);
    server.listen(0, "127.0.0.1", ok);
  });
  const port = server.address().port;
  return {
    port,
    url: `http://127.0.0.1:${port}/`,
    wsUrl: `ws://127.0.0.1:${port}/ws`,
    counts,
    get mode() { return mode; },
    setMode(m) {
      mode = m;
      for (const s of [...socks]) s.destroy();
    },
    close() {
      for (const s of [...socks]) s.destroy();
      return new Promise((ok) => server.close(() => ok()));
    },
  };
}
