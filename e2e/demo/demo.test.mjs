// The --dev demo (cmd/huddle/web/demo.js, built from clientsdk/demo on
// @huddle/react) in a real browser: two users in two headless Chromium contexts see each other's
// avatar (with a tab-count badge) and live cursor, share a list of notes that
// survives a real dropped connection (recovery) and a reload (history), and
// see each other leave. Screenshots go to screenshots/.
//
// Bob's page goes through a TCP proxy in this process so that his connection
// can really be dropped: Chromium's offline emulation (CDP
// Network.emulateNetworkConditions) blocks new connections but leaves open
// WebSockets alone, so the proxy cuts the TCP connection while the emulation
// keeps the reconnect attempts offline, like a lost Wi-Fi.
//
// Needs HUDDLE_BIN (a built cmd/huddle) and Debian's chromium at
// /usr/bin/chromium (or CHROMIUM).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { startTCPProxy } from "../shared/tcp-proxy.mjs";
import { startDev, launchChromium, openPage, avatarsAre, cursorAt, noCursorOf } from "./harness.mjs";

const bin = process.env.HUDDLE_BIN;
const shots = new URL("./screenshots/", import.meta.url).pathname;
let server, browser, base, proxy;

before(async () => {
  assert.ok(bin, "set HUDDLE_BIN to a built cmd/huddle");
  const dev = await startDev(bin);
  server = dev.proc;
  base = dev.base;
  proxy = await startTCPProxy(dev.port);
  browser = await launchChromium();
  mkdirSync(shots, { recursive: true });
});

after(async () => {
  await browser?.close();
  proxy?.close();
  server?.kill("SIGTERM");
});

// In-page checks (run by waitForFunction, so they see the page's DOM).
const badgeOf = ([user, n]) => (document.querySelector(`#avatars .avatar[data-user="${user}"] .badge`)?.textContent ?? "") === n;
const notesAre = (want) => [...document.querySelectorAll("#notes li")].map((li) => li.querySelector(".who").textContent + ": " + li.querySelector(".text").textContent).join("|") === want;

test("two users: avatars, live cursors, notes across a dropped connection and a reload, leaving", async () => {
  const open = (user, origin = base, ctx) => openPage(browser, origin, user, { ctx });
  const ann = await open("Ann");
  const bob = await open("Bob", proxy.url);
  assert.equal(await bob.evaluate(() => typeof window.huddle.stream === "function" && window.room === window.huddle.stream("demo:room")), true);
  for (const page of [ann, bob]) await page.waitForFunction(avatarsAre, "Ann,Bob", { timeout: 5000 });

  // Ann moves her mouse over the board: Bob sees her cursor, named, where she
  // is (px from the board's corner; the board has a fixed size), and moving.
  const annLayer = await ann.locator("[data-huddle-cursors]").boundingBox();
  const moveAnn = (x, y) => ann.mouse.move(annLayer.x + x, annLayer.y + y, { steps: 8 });
  await moveAnn(120, 300);
  await moveAnn(180, 220);
  await bob.waitForFunction(cursorAt, ["Ann", 180, 220], { timeout: 5000 });
  await moveAnn(400, 90);
  await bob.waitForFunction(cursorAt, ["Ann", 400, 90], { timeout: 5000 });
  // Bob's cursor reaches Ann, and goes when he leaves the board.
  const bobLayer = await bob.locator("[data-huddle-cursors]").boundingBox();
  await bob.mouse.move(bobLayer.x + 300, bobLayer.y + 330, { steps: 5 });
  await ann.waitForFunction(cursorAt, ["Bob", 300, 330], { timeout: 5000 });
  await bob.mouse.move(bobLayer.x + 300, bobLayer.y - 40, { steps: 5 });
  await ann.waitForFunction(noCursorOf, "Bob", { timeout: 5000 });

  // A note added by Ann appears in Bob's list.
  await ann.fill("#note-text", "Hello from Ann");
  await ann.click("#note-add");
  await bob.waitForFunction(notesAre, "Ann: Hello from Ann", { timeout: 5000 });

  // Bob's connection drops for real; Ann adds a note meanwhile; Bob gets it
  // once back, by recovery (no reload), exactly once.
  await bob.evaluate(() => {
    window.subs = []; window.room.on("subscribed", (e) => window.subs.push(e));
    window.events = [];
    for (const ev of ["connecting", "connected", "disconnected"]) window.huddle.on(ev, (e) => window.events.push([ev, Math.round(performance.now()), e?.code ?? e?.attempt ?? ""]));
  });
  const cdp = await bob.context().newCDPSession(bob);
  const offline = (on) => cdp.send("Network.emulateNetworkConditions", { offline: on, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
  // Cut first, then go offline: with the emulation already on, Chromium
  // sometimes never told the page that its socket closed (1 run in ~10).
  proxy.cut();
  await offline(true);
  await bob.waitForFunction(() => /reconnecting….*1006/.test(document.querySelector("#status.down")?.textContent ?? ""), null, { timeout: 5000 })
    .catch(async (err) => { throw new Error(`Bob's status after the cut: ${JSON.stringify(await bob.evaluate(() => [document.querySelector("#status")?.outerHTML, window.events, Math.round(performance.now())]))}: ${err.message}`); });
  await ann.fill("#note-text", "Added while Bob was away");
  await ann.click("#note-add");
  await ann.waitForFunction(notesAre, "Ann: Hello from Ann|Ann: Added while Bob was away", { timeout: 5000 });
  await bob.waitForTimeout(300);
  assert.equal(await bob.evaluate(notesAre, "Ann: Hello from Ann"), true, "Bob is offline and has not seen the second note");
  await bob.screenshot({ path: shots + "bob-offline.png" });
  proxy.restore();
  await offline(false);
  await bob.waitForSelector("#status.ok", { timeout: 5000 });
  await bob.waitForFunction(notesAre, "Ann: Hello from Ann|Ann: Added while Bob was away", { timeout: 5000 });
  const subs = await bob.evaluate(() => window.subs);
  assert.equal(subs.length, 1, "one resubscribe after the drop");
  assert.equal(subs[0].recovered, true, "the resubscribe recovered the missed note");
  await bob.waitForTimeout(200);
  assert.equal(await bob.evaluate(notesAre, "Ann: Hello from Ann|Ann: Added while Bob was away"), true, "no duplicate");

  // Ann opens a second tab: still one avatar for her, with a badge.
  const ann2 = await open("Ann", base, ann.context());
  await bob.waitForFunction(badgeOf, ["Ann", "2"], { timeout: 5000 });
  await bob.waitForFunction(avatarsAre, "Ann,Bob", { timeout: 5000 });
  await ann.bringToFront();
  await moveAnn(260, 160);
  await bob.mouse.move(bobLayer.x + 150, bobLayer.y + 320, { steps: 5 });
  await bob.waitForFunction(cursorAt, ["Ann", 260, 160], { timeout: 5000 });
  await ann.waitForFunction(cursorAt, ["Bob", 150, 320], { timeout: 5000 });
  await ann.screenshot({ path: shots + "ann.png" });
  await bob.screenshot({ path: shots + "bob.png" });
  await ann2.close();
  await bob.waitForFunction(badgeOf, ["Ann", ""], { timeout: 5000 });

  // Bob reloads: the notes come back from history.
  await bob.reload();
  await bob.waitForSelector("#status.ok", { timeout: 10000 });
  await bob.waitForFunction(notesAre, "Ann: Hello from Ann|Ann: Added while Bob was away", { timeout: 5000 });
  await bob.waitForFunction(cursorAt, ["Ann", 260, 160], { timeout: 5000 }); // from the server's latest-value cache

  // Ann leaves: Bob's avatar stack and cursors drop her at once (clean close).
  await ann.context().close();
  await bob.waitForFunction(() => [...document.querySelectorAll("#avatars .avatar")].map((a) => a.dataset.user).join() === "Bob"
    && !document.querySelector('[data-huddle-cursors] .cursor[data-user="Ann"]'), null, { timeout: 5000 });
});
