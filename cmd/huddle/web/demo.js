// The Huddle dev demo, on the TypeScript SDK (./huddle.js is its browser
// bundle, built by `npm run bundle` in clientsdk/ts): live cursors over
// whispers, an avatar stack from presence, and a shared list of notes that
// is loaded from history and kept exact across reconnects by recovery.
import { Huddle } from "./huddle.js";

const STREAM = "demo:room";
const $ = (id) => document.getElementById(id);

// --- Who am I: ?user=, else a name kept for this tab. ----------------------
const NAMES = ["Ann", "Bob", "Cleo", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jun", "Kai", "Lea", "Max",
  "Nia", "Otto", "Pia", "Quinn", "Rae", "Sam", "Tess", "Uma", "Vic", "Wen", "Xia", "Yann", "Zoe"];
const randomName = () => NAMES[Math.floor(Math.random() * NAMES.length)] + " " + (10 + Math.floor(Math.random() * 90));
const me = (new URLSearchParams(location.search).get("user") || sessionStorage.getItem("huddle.user") || randomName()).slice(0, 64);
sessionStorage.setItem("huddle.user", me);
$("me").textContent = me;
document.title = `${me} · Huddle demo`;
let other = randomName();
while (other === me) other = randomName();
$("invite").href = "?user=" + encodeURIComponent(other);

// A stable colour per user: FNV-1a of the user id picks the hue.
function colorOf(user) {
  let h = 0x811c9dc5;
  for (let i = 0; i < user.length; i++) h = Math.imul(h ^ user.charCodeAt(i), 0x01000193);
  return `hsl(${(h >>> 0) % 360} 62% 47%)`;
}
function initials(name) {
  const words = name.trim().split(/\s+/);
  if (words.length > 1 && /^\p{L}/u.test(words[1])) return (words[0][0] + words[1][0]).toUpperCase();
  return (name.trim()[0] || "?").toUpperCase() + (name.trim()[1] || "");
}
const nameOf = (user, info) => (info && typeof info.name === "string" && info.name) || user || "anonymous";

// --- The client. -----------------------------------------------------------
const params = new URLSearchParams(location.search);
const wsURL = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws";
const client = new Huddle({
  url: wsURL,
  getToken: async () => {
    const r = await fetch("/dev/token?user=" + encodeURIComponent(me));
    if (!r.ok) throw new Error(`/dev/token: ${r.status} ${await r.text()}`);
    return r.text();
  },
  ua: "huddle-demo",
  // ?upgrade=<ms>: how often a page on a fallback transport tries the
  // WebSocket again (the SDK's upgradeInterval).
  ...(Number(params.get("upgrade")) > 0 ? { upgradeInterval: Number(params.get("upgrade")) } : {}),
});
const room = client.stream(STREAM, { presence: true, join: {} });
window.huddle = client;
window.room = room;

// --- Connection status. ----------------------------------------------------
const statusEl = $("status");
let lastDrop = null; // the last disconnected event, shown while reconnecting
function setStatus(cls, text) {
  statusEl.className = cls;
  statusEl.textContent = text;
  document.body.classList.toggle("offline", cls !== "ok");
}
client.on("connecting", (e) => {
  if (lastDrop) setStatus("down", `reconnecting… (${lastDrop.code}${e && e.attempt > 1 ? `, try ${e.attempt}` : ""})`);
  else setStatus("wait", "connecting…");
});
client.on("connected", (e) => {
  lastDrop = null;
  setStatus("ok", e.transport === "websocket" ? "live" : `live (${e.transport})`);
  statusEl.dataset.transport = e.transport;
  statusEl.title = `connected as ${client.user} (${client.clientId})`;
});
client.on("disconnected", (e) => {
  lastDrop = e;
  statusEl.title = e.reason || "";
  if (e.reconnect) setStatus("down", `reconnecting… (${e.code})`);
  else setStatus("down", `disconnected (${e.code}${e.reason ? ": " + e.reason : ""})`);
});
client.on("error", (err) => console.warn("huddle:", err));
room.on("error", (err) => console.warn("huddle demo:room:", err));
room.on("unsubscribed", (e) => setStatus("down", `unsubscribed (${e.code}: ${e.reason})`));

// --- Avatars: one per user, a badge when a user has several tabs. -----------
const avatarsEl = $("avatars");
function renderAvatars(users) {
  avatarsEl.textContent = "";
  for (const u of users) {
    const name = nameOf(u.user, u.info);
    const n = u.connections.length;
    const a = document.createElement("div");
    a.className = "avatar" + (u.user === me ? " me" : "");
    a.dataset.user = u.user;
    a.title = name + (u.user === me ? " (you)" : "") + (n > 1 ? ` · ${n} tabs` : "");
    a.style.setProperty("--c", colorOf(u.user));
    a.textContent = initials(name);
    if (n > 1) {
      const b = document.createElement("span");
      b.className = "badge";
      b.textContent = String(n);
      a.append(b);
    }
    avatarsEl.append(a);
  }
}
room.presence.on("change", renderAvatars);

// --- Cursors: px from the top-left corner of the board's cursor layer (the
// board has a fixed size, so the same point is the same place on every screen).
const board = $("board");
const cursorsEl = $("cursors");
const cursors = room.cursors();
// On a narrow screen the board is scaled down as a whole, so that coordinates
// stay in board pixels.
const stage = $("stage");
let scale = 1;
function fit() {
  scale = Math.min(1, stage.clientWidth / board.offsetWidth);
  board.style.transform = scale < 1 ? `scale(${scale})` : "";
  stage.style.height = scale < 1 ? `${board.offsetHeight * scale}px` : "";
}
addEventListener("resize", fit);
fit();
board.addEventListener("pointermove", (e) => {
  const r = cursorsEl.getBoundingClientRect();
  cursors.move({ x: Math.round((e.clientX - r.left) / scale), y: Math.round((e.clientY - r.top) / scale) });
});
board.addEventListener("pointerleave", () => cursors.hide());

const cursorEls = new Map(); // client id -> element
const ARROW = `<svg width="16" height="20" viewBox="0 0 16 20"><path d="M1 1v16l4.2-4.1 2.9 6.4 2.6-1.2-2.9-6.2H14z" fill="var(--c)" stroke="#fff" stroke-width="1.5" stroke-linejoin="round"/></svg>`;
function renderCursors(others) {
  for (const [id, el] of cursorEls) {
    const c = others.get(id);
    if (!c || !isPoint(c.data)) {
      el.remove();
      cursorEls.delete(id);
    }
  }
  for (const [id, c] of others) {
    if (!isPoint(c.data)) continue;
    let el = cursorEls.get(id);
    if (!el) {
      el = document.createElement("div");
      el.className = "cursor";
      el.dataset.user = c.user;
      el.dataset.client = id;
      el.style.setProperty("--c", colorOf(c.user));
      el.innerHTML = ARROW + `<span class="label"></span>`;
      el.querySelector(".label").textContent = nameOf(c.user, c.info);
      el.style.transform = `translate(${c.data.x}px, ${c.data.y}px)`;
      cursorsEl.append(el);
      cursorEls.set(id, el);
    } else {
      el.style.transform = `translate(${c.data.x}px, ${c.data.y}px)`;
    }
    // Keep the name tag inside the board near its right and bottom edges.
    el.classList.toggle("flip-x", c.data.x > cursorsEl.clientWidth - 100);
    el.classList.toggle("flip-y", c.data.y > cursorsEl.clientHeight - 44);
  }
}
const isPoint = (d) => d != null && typeof d === "object" && Number.isFinite(d.x) && Number.isFinite(d.y);
cursors.on("change", renderCursors);

// --- Notes: history at (re)start, then publications; one entry per offset.
const notesEl = $("notes");
const countEl = $("note-count");
const notes = new Map(); // offset -> <li>, in the current epoch
let epoch = null;
let loading = 0; // generation of the latest reload

function clearNotes() {
  notes.clear();
  notesEl.textContent = "";
  countEl.textContent = "";
}
function addNote(p) {
  if (epoch !== null && p.epoch !== epoch) return; // another epoch: the reload that follows fixes it
  if (notes.has(p.offset)) return;
  const li = document.createElement("li");
  li.dataset.offset = String(p.offset);
  const who = p.from ? p.from.user : "server";
  li.style.setProperty("--c", p.from ? colorOf(who) : "#8b90a0");
  const dot = document.createElement("span");
  dot.className = "dot";
  const body = document.createElement("span");
  const name = document.createElement("span");
  name.className = "who";
  name.textContent = who;
  const text = document.createElement("span");
  text.className = "text";
  const d = p.data;
  text.textContent = d && typeof d === "object" && typeof d.text === "string" ? d.text : JSON.stringify(d);
  body.append(name, text);
  const time = document.createElement("time");
  const when = new Date(p.ts < 1e12 ? p.ts * 1000 : p.ts);
  time.dateTime = when.toISOString();
  time.textContent = when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  time.title = `#${p.offset} · ${when.toLocaleString()}`;
  li.append(dot, body, time);
  // Keep offset order even when history and live publications interleave.
  let next = null;
  for (const [off, el] of notes) if (off > p.offset && (!next || off < Number(next.dataset.offset))) next = el;
  notesEl.insertBefore(li, next);
  notes.set(p.offset, li);
  countEl.textContent = String(notes.size);
  if (!next) notesEl.scrollTop = notesEl.scrollHeight;
}
async function reload() {
  const gen = ++loading;
  try {
    const h = await room.history({ limit: 100, reverse: true });
    if (gen !== loading) return;
    if (h.epoch !== epoch) clearNotes();
    epoch = h.epoch;
    for (const p of [...h.pubs].reverse()) addNote(p);
  } catch (err) {
    console.warn("huddle demo: history failed", err);
  }
}
room.on("subscribed", (e) => {
  // The first subscribe, or a resubscribe that could not recover what was
  // missed: read the list again. A recovered resubscribe needs nothing: the
  // missed publications arrive as `publication` events.
  if (e.recovered !== true) {
    if (e.epoch !== epoch) {
      clearNotes();
      epoch = e.epoch;
    }
    reload();
  }
});
room.on("publication", addNote);

const form = $("note-form");
const input = $("note-text");
form.addEventListener("submit", async (e) => {
  e.preventDefault();
  const text = input.value.trim();
  if (!text) return;
  input.value = "";
  try {
    await room.publish({ text });
  } catch (err) {
    console.warn("huddle demo: publish failed", err);
    if (!input.value) input.value = text;
  }
});
