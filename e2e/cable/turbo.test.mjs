// Turbo Streams in a real browser (Debian chromium via playwright-core): a
// page with <turbo-cable-stream-source> from @anycable/turbo-stream (channel
// Turbo::StreamsChannel, a signed stream name) on an @anycable/web cable
// authenticated with a JWT from <meta name="cable-token">; broadcasts of
// <turbo-stream> elements change the DOM, once each.
//
// The page and its bundled script come from a small HTTP server in this
// process, which also forwards WebSocket upgrades on /cable to the server
// under test, so the page connects same-origin.
// Needs Debian's chromium at /usr/bin/chromium (or CHROMIUM).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { connect } from "node:net";
import { build } from "esbuild";
import { chromium } from "playwright-core";
import { startServer, secrets } from "./helpers/server.mjs";
import { jwt, signStream, sleep, uniq } from "./helpers/util.mjs";

let server, web, browser, bundle;

function startWeb(pages) {
  const srv = createServer((req, res) => {
    const path = new URL(req.url, "http://x").pathname;
    if (path === "/app.js") { res.writeHead(200, { "content-type": "text/javascript" }); res.end(bundle); return; }
    const html = pages[path];
    if (!html) { res.writeHead(404); res.end(); return; }
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
    res.end(html);
  });
  // WebSocket upgrades go to the server under test as they are (Host and
  // Origin stay the page's).
  srv.on("upgrade", (req, sock, head) => {
    const up = connect(server.port, "127.0.0.1", () => {
      let raw = `${req.method} ${req.url} HTTP/1.1\r\n`;
      for (let i = 0; i < req.rawHeaders.length; i += 2) raw += `${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}\r\n`;
      up.write(raw + "\r\n");
      if (head?.length) up.write(head);
      sock.pipe(up).pipe(sock);
    });
    for (const s of [sock, up]) { s.on("error", () => {}); s.on("close", () => { sock.destroy(); up.destroy(); }); }
  });
  return new Promise((resolve) => srv.listen(0, "127.0.0.1", () => resolve({
    url: `http://127.0.0.1:${srv.address().port}`,
    close: () => { srv.closeAllConnections?.(); return new Promise((r) => srv.close(() => r())); },
  })));
}

const stream = uniq("turbo:list");
const token = jwt({ ext: JSON.stringify({ current_user: "page" }), exp: Math.floor(Date.now() / 1000) + 300 }, secrets.jwt);
const page1 = `<!doctype html>
<html><head>
<meta charset="utf-8">
<meta name="cable-url" content="/cable">
<meta name="cable-token" content="${token}">
<script src="/app.js" defer></script>
<title>turbo</title>
</head><body>
<h1 id="title">Waiting</h1>
<ul id="list"></ul>
<ul id="other"></ul>
<turbo-cable-stream-source id="good" channel="Turbo::StreamsChannel" signed-stream-name="${signStream(stream, secrets.streams)}"></turbo-cable-stream-source>
<turbo-cable-stream-source id="bad" channel="Turbo::StreamsChannel" signed-stream-name="${signStream(stream + "-other", "a-wrong-secret-0123456789abcdef-0123")}"></turbo-cable-stream-source>
</body></html>`;

before(async () => {
  server = await startServer();
  const out = await build({
    entryPoints: [new URL("./browser/app.js", import.meta.url).pathname],
    bundle: true, format: "iife", target: "es2020", write: false, logLevel: "error",
  });
  bundle = out.outputFiles[0].text;
  web = await startWeb({ "/": page1 });
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
});

after(async () => {
  await browser?.close();
  await web?.close();
  await server?.stop();
});

const turbo = (action, target, html, attr = "target") => `<turbo-stream action="${action}" ${attr}="${target}"><template>${html}</template></turbo-stream>`;

test("Turbo: <turbo-cable-stream-source> with a signed stream name applies broadcast <turbo-stream>s to the DOM", { timeout: 30000 }, async () => {
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(web.url + "/");
  await page.waitForSelector("#good[connected]", { state: "attached", timeout: 10000 });
  // The subscription is settled once the history answer is in (ext protocol).
  await page.waitForFunction(() => {
    const id = document.getElementById("good").channel.identifier;
    return window.__wire.some((m) => m.identifier === id && /_history$/.test(m.type));
  }, null, { timeout: 5000 });
  assert.equal(await page.evaluate(() => !!window.cable.sessionId), true, "an ext-json session id");
  assert.match(await page.evaluate(() => window.cable.transport.url), /^ws:\/\/127\.0\.0\.1:\d+\/cable\?jid=ey/, "the JWT from <meta name=cable-token>");
  // A bad signature never connects.
  await page.waitForFunction(() => window.__wire.some((m) => m.type === "reject_subscription" && m.identifier === document.getElementById("bad").channel.identifier), null, { timeout: 5000 });
  assert.equal(await page.evaluate(() => document.getElementById("bad").hasAttribute("connected")), false);

  await server.publish(stream, turbo("append", "list", "<li>x</li>"));
  await page.waitForFunction(() => document.querySelectorAll("#list li").length === 1, null, { timeout: 5000 });
  assert.equal(await page.textContent("#list li"), "x");

  await server.publish(stream, turbo("append", "list", "<li>y</li>"));
  await server.publish(stream, turbo("update", "title", "Updated"));
  await server.publish(stream + "-other", turbo("append", "other", "<li>nope</li>"));
  await page.waitForFunction(() => document.getElementById("title").textContent === "Updated", null, { timeout: 5000 });
  await sleep(300);
  assert.deepEqual(await page.$$eval("#list li", (els) => els.map((e) => e.textContent)), ["x", "y"], "each append applied once, in order");
  assert.equal(await page.$$eval("#other li", (els) => els.length), 0, "the rejected source received nothing");

  await server.publish(stream, turbo("remove", "#list li:first-child", "", "targets"));
  await page.waitForFunction(() => [...document.querySelectorAll("#list li")].map((e) => e.textContent).join() === "y", null, { timeout: 5000 });
  assert.deepEqual(errors, []);
  await ctx.close();
});
