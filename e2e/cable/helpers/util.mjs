// Small helpers shared by the tests: a TCP proxy that can sever every
// connection, stream-name signing, HS256 JWTs, bounded waiting.
import { connect, createServer } from "node:net";
import { createHmac } from "node:crypto";

/**
 * A TCP proxy to 127.0.0.1:port. cut() destroys every open socket pair and
 * refuses new connections until restore(); the clients see a real dropped
 * TCP connection (no close frame).
 */
export function startProxy(port) {
  const socks = new Set();
  let down = false;
  const srv = createServer((c) => {
    if (down) { c.destroy(); return; }
    const u = connect(port, "127.0.0.1");
    for (const [a, b] of [[c, u], [u, c]]) {
      socks.add(a);
      a.on("error", () => {});
      a.on("close", () => { socks.delete(a); b.destroy(); });
      a.pipe(b);
    }
  });
  return new Promise((resolve) => srv.listen(0, "127.0.0.1", () => {
    const p = srv.address().port;
    resolve({
      port: p,
      ws: `ws://127.0.0.1:${p}/cable`,
      get open() { return socks.size; },
      cut() { down = true; for (const s of socks) s.destroy(); },
      restore() { down = false; },
      close() { down = true; for (const s of socks) s.destroy(); return new Promise((r) => srv.close(() => r())); },
    });
  }));
}

const b64url = (buf) => Buffer.from(buf).toString("base64url");

/**
 * A signed stream name the way Rails' MessageVerifier (SHA256) and Turbo's
 * signed_stream_name make it: base64(JSON(name)) + "--" + hex(HMAC-SHA256(secret, base64 part)).
 */
export function signStream(name, secret) {
  const data = Buffer.from(JSON.stringify(name)).toString("base64");
  const digest = createHmac("sha256", secret).update(data).digest("hex");
  return `${data}--${digest}`;
}

/** An HS256 JWT. `claims` is merged over {iat}; pass exp (unix seconds) to expire it. */
export function jwt(claims, secret) {
  const head = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const body = b64url(JSON.stringify({ iat: Math.floor(Date.now() / 1000), ...claims }));
  const sig = createHmac("sha256", secret).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}

export { sleep, waitFor, nextEvent, within, uniq } from "../../shared/wait.mjs";
