// The /admin page in headless Chromium: behind its password, it shows the
// node, its connections and the demo's streams with their subscribers and
// presence members while two users are on the demo page, and refreshes
// by itself when a third arrives. The screenshot goes to screenshots/.
//
// Needs HUDDLE_BIN (a built cmd/huddle) and Debian's chromium.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { startDev, launchChromium } from "./harness.mjs";

const bin = process.env.HUDDLE_BIN;
const shots = new URL("./screenshots/", import.meta.url).pathname;
const password = "admin-page-password";
let server, browser, base;

before(async () => {
  assert.ok(bin, "set HUDDLE_BIN to a built cmd/huddle");
  const dev = await startDev(bin, ["--admin-password", password]);
  server = dev.proc;
  base = dev.base;
  browser = await launchChromium();
  mkdirSync(shots, { recursive: true });
});

after(async () => {
  await browser?.close();
  server?.kill("SIGTERM");
});

// A stream's row is [stream, subscribers, members]. The demo page is on two
// streams, demo:room (the board) and demo:doc (the shared text), with as
// many subscribers each, so both are at the top.
const streamRowIs = (want) => [...document.querySelectorAll("#streams tbody tr")].some((tr) => [...tr.cells].map((td) => td.textContent).join() === want);

test("the admin page shows the node, its connections and the busiest streams, live", async () => {
  // Without the password: 401, asking for it.
  const res = await fetch(base + "admin");
  assert.equal(res.status, 401);
  assert.match(res.headers.get("www-authenticate") ?? "", /^Basic/);

  const users = [];
  const visit = async (user) => {
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    await page.goto(base + "?user=" + user);
    await page.waitForSelector("#status.ok", { timeout: 10000 });
    users.push(ctx);
  };
  await visit("Ann");
  await visit("Bob");

  const ctx = await browser.newContext({ httpCredentials: { username: "admin", password }, viewport: { width: 1100, height: 800 } });
  const admin = await ctx.newPage();
  admin.on("pageerror", (err) => console.error("admin: page error:", err));
  await admin.goto(base + "admin");
  await admin.waitForFunction(() => document.getElementById("t-nodes").textContent === "1", null, { timeout: 10000 });
  await admin.waitForFunction(() => Number(document.getElementById("t-conns").textContent) >= 2, null, { timeout: 10000 });
  await admin.waitForFunction(streamRowIs, "demo:room,2,2", { timeout: 10000 });
  await admin.waitForFunction(streamRowIs, "demo:doc,2,2", { timeout: 10000 });

  // A third user: the page follows without a reload.
  await visit("Cleo");
  await admin.waitForFunction(streamRowIs, "demo:room,3,3", { timeout: 10000 });
  await admin.waitForFunction(streamRowIs, "demo:doc,3,3", { timeout: 10000 });
  assert.match(await admin.textContent("#updated"), /updated/);
  await admin.screenshot({ path: shots + "admin.png", fullPage: true });
  for (const c of users) await c.close();
  await ctx.close();
});
