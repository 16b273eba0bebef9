// What the demo suites need: a free port, the --dev server (HUDDLE_BIN),
// headless Chromium (CHROMIUM or Debian's /usr/bin/chromium), a page of the
// demo, and in-page checks.
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { chromium } from "playwright-core";

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => { const { port } = s.address(); s.close(() => resolve(port)); });
    s.on("error", reject);
  });
}

export async function waitReady(url, ms) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    try { if ((await fetch(url)).ok) return; } catch {}
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`server not ready at ${url} within ${ms} ms`);
}

/** startDev starts `huddle --dev` (with extra flags) on a free port; resolves to { port, base, proc }. */
export async function startDev(bin, extra = []) {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}/`;
  const proc = spawn(bin, ["--dev", "--addr", `127.0.0.1:${port}`, "--log-level", "warn", ...extra], { stdio: ["ignore", "ignore", "inherit"] });
  await waitReady(base + "readyz", 10000);
  return { port, base, proc };
}

export function launchChromium() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}

/**
 * openPage opens the demo as user in a new context of browser (or in ctx)
 * and waits until it is connected and its shared text is loaded. query
 * adds to the URL (e.g. "&ws=..."); context takes Playwright context options.
 */
export async function openPage(browser, origin, user, { query = "", context = { viewport: DESKTOP }, ctx } = {}) {
  ctx ??= await browser.newContext(context);
  const page = await ctx.newPage();
  page.on("pageerror", (err) => console.error(`${user}: page error:`, err));
  await page.goto(origin + "?user=" + encodeURIComponent(user) + query);
  await page.waitForSelector("#status.ok", { timeout: 10000 });
  await page.waitForSelector("#doc-status[data-state=saved]", { timeout: 10000 });
  return page;
}

/** The screen sizes of the tests: a laptop, and a phone held upright. */
export const DESKTOP = { width: 1280, height: 800 };
export const PHONE = { viewport: { width: 390, height: 844 }, deviceScaleFactor: 3, isMobile: true, hasTouch: true };

// In-page checks for waitForFunction (they run in the page and see its DOM).

/** avatarsAre: the avatar stack shows exactly these users (sorted, comma-joined). */
export const avatarsAre = (want) => [...document.querySelectorAll("#avatars .avatar")].map((a) => a.dataset.user).sort().join() === want;

/** cursorAt: user's cursor is drawn, labelled, at x, y px from the corner of the board's cursor layer. */
export const cursorAt = ([user, x, y]) => {
  const el = document.querySelector(`[data-huddle-cursors] .cursor[data-user="${user}"]`);
  if (!el || el.querySelector(".label").textContent !== user) return false;
  const layer = document.querySelector("[data-huddle-cursors]").getBoundingClientRect();
  const r = el.getBoundingClientRect();
  return Math.abs(r.left - layer.left - x) <= 2 && Math.abs(r.top - layer.top - y) <= 2;
};

/** noCursorOf: user's cursor is not drawn. */
export const noCursorOf = (user) => !document.querySelector(`[data-huddle-cursors] .cursor[data-user="${user}"]`);
