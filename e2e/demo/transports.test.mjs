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
import { mkdirSync } from "node:fs";
import { startHTTPProxy } from "../shared/http-proxy.mjs";
import { startDev, launchChromium, avatarsAre, cursorAt, DESKTOP } from "./harness.mjs";

const bin = process.env.HUDDLE_BIN;
const shots = new URL("./screenshots/", import.meta.url).pathname;
let server, browser, base, proxy;

before(async () => {
  assert.ok(bin, "set HUDDLE_BIN to a built cmd/huddle");
  const dev = await startDev(bin);
  server = dev.proc;
  base = dev.base;
  proxy = await startHTTPProxy(dev.port, "no-upgrade");
  browser = await launchChromium();
  mkdirSync(shots, { recursive: true });
});

after(async () => {
  await browser?.close();
  proxy?.close();
  server?.kill("SIGTERM");
});

const notes = () => [...document.querySelectorAll("#notes li")].map((li) => li.querySelector(".text").textContent);
const transportIs = (t) => document.querySelector("#status.ok")?.dataset.transport === t;

test("the demo over sse, then long polling, then back on the websocket: nothing lost or repeated", async () => {
  const open = async (user, origin) => {
    const ctx = await browser.newContext({ viewport: DESKTOP });
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
  const annLayer = await ann.locator("[data-huddle-cursors]").boundingBox();
  const bobLayer = await bob.locator("[data-huddle-cursors]").boundingBox();
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
