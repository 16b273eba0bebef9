// The --dev demo in headless Chromium behind a proxy that breaks
// WebSockets: Bob's page goes through an HTTP proxy in this process that
// first refuses WebSocket upgrades (the page runs over server-sent events),
// then also buffers responses (long polling), then lets everything through
// (the page moves back to the WebSocket). Throughout, Ann (on a direct
// WebSocket) and Bob see each other's avatar and cursor, and the notes Ann
// adds while Bob's page changes transports reach him exactly once, in
// order.
//
// Needs HUDDLE_BIN (a built cmd/huddle) and Debian's chromium at
// /usr/bin/chromium (or CHROMIUM).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import { connect, createServer } from "node:net";
import { chromium } from "playwright-core";

const bin = process.env.HUDDLE_BIN;
const shots = new URL("./screenshots/", import.meta.url).pathname;
let server, browser, base, proxy;

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => { const { port } = s.address(); s.close(() => resolve(port)); });
    s.on("error", reject);
  });
}

async function waitReady(url, ms) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    try { if ((await fetch(url)).ok) return; } catch {}
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`server not ready at ${url} within ${ms} ms`);
}

// An HTTP proxy with three modes: "open" forwards everything; "no-upgrade"
// answers WebSocket upgrades 403; "buffered" also holds every response
// until it is complete (a stream of events never arrives). Each request
// goes upstream on its own connection. setMode drops every connection.
function startHTTPProxy(port, mode) {
  const socks = new Set();
  const counts = { refused: 0, upgrades: 0 };
  const track = (s) => { socks.add(s); s.on("close", () => socks.delete(s)); s.on("error", () => s.destroy()); };
  const srv = createServer((down) => {
    track(down);
    let head = Buffer.alloc(0);
    const onData = (chunk) => {
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf("\r\n\r\n");
      if (end < 0) return;
      down.off("data", onData);
      down.pause();
      const text = head.subarray(0, end + 4).toString("latin1");
      const rest = head.subarray(end + 4);
      const upgrade = /\r\nupgrade:\s*websocket/i.test(text);
      if (upgrade && mode !== "open") {
        counts.refused++;
        down.end("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
      }
      const up = connect(port, "127.0.0.1");
      track(up);
      up.on("close", () => down.destroy());
      down.on("close", () => up.destroy());
      if (upgrade) {
        counts.upgrades++;
        up.write(text);
      } else {
        const lines = text.split("\r\n").filter((l) => l !== "" && !/^connection:/i.test(l));
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
    };
    down.on("data", onData);
  });
  return new Promise((resolve) => srv.listen(0, "127.0.0.1", () => resolve({
    url: `http://127.0.0.1:${srv.address().port}/`,
    counts,
    setMode(m) { mode = m; for (const s of [...socks]) s.destroy(); },
    close() { for (const s of [...socks]) s.destroy(); srv.close(); },
  })));
}

before(async () => {
  assert.ok(bin, "set HUDDLE_BIN to a built cmd/huddle");
  const port = await freePort();
  base = `http://127.0.0.1:${port}/`;
  server = spawn(bin, ["--dev", "--addr", `127.0.0.1:${port}`, "--log-level", "warn"], { stdio: ["ignore", "ignore", "inherit"] });
  await waitReady(base + "readyz", 10000);
  proxy = await startHTTPProxy(port, "no-upgrade");
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  mkdirSync(shots, { recursive: true });
});

after(async () => {
  await browser?.close();
  proxy?.close();
  server?.kill("SIGTERM");
});

const avatarsAre = (want) => [...document.querySelectorAll("#avatars .avatar")].map((a) => a.dataset.user).sort().join() === want;
const cursorAt = ([user, x, y]) => {
  const el = document.querySelector(`#cursors .cursor[data-user="${user}"]`);
  if (!el) return false;
  const layer = document.getElementById("cursors").getBoundingClientRect();
  const r = el.getBoundingClientRect();
  return Math.abs(r.left - layer.left - x) <= 2 && Math.abs(r.top - layer.top - y) <= 2;
};
const notes = () => [...document.querySelectorAll("#notes li")].map((li) => li.querySelector(".text").textContent);
const transportIs = (t) => document.querySelector("#status.ok")?.dataset.transport === t;

test("the demo over sse, then long polling, then back on the websocket: nothing lost or repeated", async () => {
  const open = async (user, origin) => {
    const ctx = await browser.newContext({ viewport: { width: 800, height: 600 } });
    const page = await ctx.newPage();
    page.on("pageerror", (err) => console.error(`${user}: page error:`, err));
    await page.goto(origin + "?user=" + user + "&upgrade=1000");
    await page.waitForSelector("#status.ok", { timeout: 20000 });
    return page;
  };
  const ann = await open("Ann", base);
  const bob = await open("Bob", proxy.url);
  await bob.waitForFunction(transportIs, "sse", { timeout: 5000 });
  for (const page of [ann, bob]) await page.waitForFunction(avatarsAre, "Ann,Bob", { timeout: 5000 });
  assert.ok(proxy.counts.refused > 0, "the proxy refused Bob's WebSocket");

  // Cursors both ways over sse (Bob's whispers go up as POSTs).
  const annLayer = await ann.locator("#cursors").boundingBox();
  const bobLayer = await bob.locator("#cursors").boundingBox();
  await ann.mouse.move(annLayer.x + 200, annLayer.y + 150, { steps: 6 });
  await bob.waitForFunction(cursorAt, ["Ann", 200, 150], { timeout: 5000 });
  await bob.mouse.move(bobLayer.x + 320, bobLayer.y + 240, { steps: 6 });
  await ann.waitForFunction(cursorAt, ["Bob", 320, 240], { timeout: 5000 });

  // Notes from both sides.
  let n = 0;
  const want = [];
  const addNote = async (page, text) => {
    await page.fill("#note-text", text);
    await page.click("#note-add");
    want.push(text);
  };
  await addNote(ann, `note ${++n} (Ann, sse)`);
  await addNote(bob, `note ${++n} (Bob, sse)`);
  await bob.waitForFunction((w) => [...document.querySelectorAll("#notes li .text")].map((e) => e.textContent).join("|") === w, want.join("|"), { timeout: 5000 });

  // The proxy starts buffering responses: Bob's page moves to long polling;
  // Ann keeps adding notes meanwhile.
  proxy.setMode("buffered");
  for (let i = 0; i < 4; i++) {
    await addNote(ann, `note ${++n} (Ann, while Bob moves)`);
    await ann.waitForTimeout(250);
  }
  await bob.waitForFunction(transportIs, "longpoll", { timeout: 20000 });
  await addNote(bob, `note ${++n} (Bob, longpoll)`);
  await ann.mouse.move(annLayer.x + 100, annLayer.y + 100, { steps: 6 });
  await bob.waitForFunction(cursorAt, ["Ann", 100, 100], { timeout: 5000 });
  await bob.screenshot({ path: shots + "bob-longpoll.png" });

  // Everything passes again: Bob's page moves back to the WebSocket by
  // itself (it tries every second here).
  proxy.setMode("open");
  for (let i = 0; i < 4; i++) {
    await addNote(ann, `note ${++n} (Ann, while Bob moves back)`);
    await ann.waitForTimeout(250);
  }
  await bob.waitForFunction(transportIs, "websocket", { timeout: 20000 });
  await addNote(bob, `note ${++n} (Bob, websocket)`);
  for (const page of [ann, bob]) {
    await page.waitForFunction((w) => [...document.querySelectorAll("#notes li .text")].map((e) => e.textContent).join("|") === w, want.join("|"), { timeout: 10000 })
      .catch(async (err) => { throw new Error(`notes: ${JSON.stringify(await page.evaluate(notes))}, want ${JSON.stringify(want)}: ${err.message}`); });
  }
  await ann.mouse.move(annLayer.x + 420, annLayer.y + 60, { steps: 6 });
  await bob.waitForFunction(cursorAt, ["Ann", 420, 60], { timeout: 5000 });
  await ann.waitForFunction(avatarsAre, "Ann,Bob", { timeout: 5000 });
  assert.ok(proxy.counts.upgrades > 0, "Bob's page came back through the proxy on a WebSocket");
});
