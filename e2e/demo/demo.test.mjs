// The --dev demo in a real browser: two users in two headless Chromium
// contexts see each other's avatar and cursor, and a message posted by one
// appears in the other. Screenshots go to screenshots/.
//
// Needs HUDDLE_BIN (a built cmd/huddle) and Debian's chromium at
// /usr/bin/chromium (or CHROMIUM).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import { createServer } from "node:net";
import { chromium } from "playwright-core";

const bin = process.env.HUDDLE_BIN;
const shots = new URL("./screenshots/", import.meta.url).pathname;
let server, browser, base;

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

before(async () => {
  assert.ok(bin, "set HUDDLE_BIN to a built cmd/huddle");
  const port = await freePort();
  base = `http://127.0.0.1:${port}/`;
  server = spawn(bin, ["--dev", "--addr", `127.0.0.1:${port}`, "--log-level", "warn"], { stdio: ["ignore", "ignore", "inherit"] });
  await waitReady(base + "readyz", 10000);
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  mkdirSync(shots, { recursive: true });
});

after(async () => {
  await browser?.close();
  server?.kill("SIGTERM");
});

test("two users see each other's avatar, cursor and messages", async () => {
  const open = async (user) => {
    const ctx = await browser.newContext({ viewport: { width: 800, height: 600 } });
    const page = await ctx.newPage();
    await page.goto(base + "?user=" + user);
    await page.waitForSelector("#status.ok", { timeout: 10000 });
    return page;
  };
  const ann = await open("ann");
  const bob = await open("bob");
  for (const page of [ann, bob]) {
    await page.waitForFunction(() => [...document.querySelectorAll(".avatar")].map((a) => a.title).sort().join() === "ann,bob",
      null, { timeout: 5000 });
  }
  // Ann moves: Bob sees her cursor arrive where she is (fractions of the page).
  for (let i = 0; i <= 10; i++) { await ann.mouse.move(100 + i * 30, 400 - i * 10); await ann.waitForTimeout(16); }
  await bob.waitForFunction(() => {
    const el = document.querySelector('.cursor[data-user="ann"]');
    if (!el) return false;
    const r = el.getBoundingClientRect();
    return Math.abs(r.left - 400) < 3 && Math.abs(r.top - 300) < 3;
  }, null, { timeout: 5000 });
  await bob.mouse.move(600, 120);
  await ann.waitForSelector('.cursor[data-user="bob"]', { timeout: 5000 });
  // A message posted by one appears in the other, from the right user.
  await ann.fill("input[name=text]", "hello from ann");
  await ann.click("button");
  await bob.waitForFunction(() => [...document.querySelectorAll("#log li")].some((li) => li.textContent.startsWith("annhello from ann")),
    null, { timeout: 5000 });
  await ann.mouse.move(420, 520);
  await bob.waitForTimeout(150);
  await ann.screenshot({ path: shots + "ann.png" });
  await bob.screenshot({ path: shots + "bob.png" });
  // Ann leaves: Bob's avatar stack and cursors drop her at once (clean close).
  await ann.context().close();
  await bob.waitForFunction(() => [...document.querySelectorAll(".avatar")].map((a) => a.title).join() === "bob"
    && !document.querySelector('.cursor[data-user="ann"]'), null, { timeout: 5000 });
});
