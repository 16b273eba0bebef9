// Presence grouped by user: one user with two connections plus another user,
// seen by an observer; user-level join/update/leave; update(patch); leave().
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, startProxy, Clients, mintToken, waitFor, until, record, subscribe } from "./server.mjs";

let srv;
let proxy;
const clients = new Clients();

before(async () => {
  srv = await startServer({ args: ["--presence-grace", "1s"] });
});

after(async () => {
  clients.closeAll();
  await proxy?.close();
  await srv?.stop();
});

const names = (list) => list.map((u) => u.user);

test("presence groups connections by user; join once, update for a further connection, leave with the last", { timeout: 15_000 }, async () => {
  const name = "room:1";
  // The observer: receives presence, does not join.
  const obs = await clients.connected(srv.wsUrl, "observer");
  const o = await subscribe(obs, name, { presence: true });
  const p = o.s.presence;
  assert.equal(p.count, 0);
  const joins = record(p, "join");
  const leaves = record(p, "leave");
  const updates = record(p, "update");
  const changes = record(p, "change");
  const describe = () => JSON.stringify(p.list());

  // ann's first tab joins through the stream option.
  const ann1 = await clients.connected(srv.wsUrl, "ann");
  const a1 = ann1.stream(name, { join: { tab: 1, color: "red" } });
  await until(p, "change", () => p.get("ann")?.connections.length === 1, 5000, "ann's first connection", describe);
  assert.equal(joins.length, 1);
  assert.equal(joins[0].user, "ann");
  assert.deepEqual(joins[0].info, { name: "ann" }, "info comes from the token");
  assert.deepEqual(joins[0].state, { tab: 1, color: "red" });
  assert.equal(joins[0].connections[0].client, ann1.clientId);

  // ann's second tab joins with presence.join(): the same user, one more connection.
  const ann2 = await clients.connected(srv.wsUrl, "ann");
  const a2 = (await subscribe(ann2, name, { presence: true })).s;
  await a2.presence.join({ tab: 2 });
  await until(p, "change", () => p.get("ann")?.connections.length === 2, 5000, "ann's second connection", describe);
  assert.equal(joins.length, 1, "no second join for the same user");
  assert.ok(updates.some((u) => u.user === "ann" && u.connections.length === 2), "update for the further connection");

  // bob joins with update() before join (joins with the patch as state).
  const bob = await clients.connected(srv.wsUrl, "bob");
  const b = (await subscribe(bob, name, { presence: true })).s;
  b.presence.update({ status: "here" });
  await until(p, "join", () => p.get("bob") !== undefined, 5000, "bob joins", describe);

  assert.equal(p.count, 2);
  assert.deepEqual(names(p.list()), ["ann", "bob"], "users in join order");
  assert.deepEqual(names(joins), ["ann", "bob"]);
  const ann = p.get("ann");
  assert.equal(ann.connections.length, 2);
  assert.deepEqual(ann.connections.map((c) => c.client).sort(), [ann1.clientId, ann2.clientId].sort());
  assert.deepEqual(ann.connections.find((c) => c.client === ann1.clientId).state, { tab: 1, color: "red" });
  assert.deepEqual(ann.connections.find((c) => c.client === ann2.clientId).state, { tab: 2 });
  assert.ok(ann.connections.every((c) => c.user === "ann"));
  assert.deepEqual(p.get("bob").state, { status: "here" });
  assert.deepEqual(p.get("bob").connections.map((c) => c.client), [bob.clientId]);
  assert.equal(p.users.size, 2);
  assert.deepEqual(names(changes.at(-1)), ["ann", "bob"], "change carries list()");

  // Every participant sees the same grouping (ann's second tab here).
  await until(a2.presence, "change", () => a2.presence.count === 2 && a2.presence.get("ann")?.connections.length === 2, 5000, "ann2's view");

  // update(patch): a shallow merge reaching the others; null deletes a key.
  a1.presence.update({ color: "blue", typing: true });
  const merged = { tab: 1, color: "blue", typing: true };
  await until(p, "update", () => sameJSON(p.get("ann")?.connections.find((c) => c.client === ann1.clientId)?.state, merged), 5000, "ann1's patch", describe);
  assert.deepEqual(p.get("ann").state, merged, "the user's state is its most recently changed connection's");
  assert.deepEqual(a1.presence.state, merged, "own state remembered");
  a1.presence.update({ typing: null });
  await until(p, "update", () => sameJSON(p.get("ann")?.connections.find((c) => c.client === ann1.clientId)?.state, { tab: 1, color: "blue" }), 5000, "typing deleted", describe);
  // bob's view agrees.
  await until(b.presence, "change", () => sameJSON(b.presence.get("ann")?.connections.find((c) => c.client === ann1.clientId)?.state, { tab: 1, color: "blue" }), 5000, "bob sees ann1's state");

  // leave() of one of ann's two connections: an update, not a leave.
  const updatesBefore = updates.length;
  await a1.presence.leave();
  await until(p, "update", () => p.get("ann")?.connections.length === 1, 5000, "ann down to one connection", describe);
  assert.deepEqual(leaves, [], "no leave while ann has a connection");
  assert.ok(updates.length > updatesBefore);
  assert.deepEqual(p.get("ann").connections.map((c) => c.client), [ann2.clientId]);
  assert.deepEqual(p.get("ann").state, { tab: 2 });
  assert.equal(joins.length, 2);

  // Her last connection goes (a clean close): now ann leaves, once.
  ann2.disconnect();
  const annLeft = await waitFor(p, "leave", (u) => u.user === "ann", 5000, "ann leaves");
  assert.equal(annLeft.user, "ann");
  assert.equal(p.get("ann"), undefined);
  assert.deepEqual(names(p.list()), ["bob"]);

  // bob leaves with leave().
  await b.presence.leave();
  await waitFor(p, "leave", (u) => u.user === "bob", 5000, "bob leaves");
  assert.equal(p.count, 0);
  assert.deepEqual(names(leaves), ["ann", "bob"]);
  assert.deepEqual(names(joins), ["ann", "bob"], "one join per user over the whole session");

  // The server agrees: nobody is present.
  const api = await srv.presence(name);
  assert.equal(api.clients, 0);
});

test("a late subscriber gets the presence snapshot grouped by user", { timeout: 10_000 }, async () => {
  const name = "room:2";
  const u1a = await clients.connected(srv.wsUrl, "uma");
  const u1b = await clients.connected(srv.wsUrl, "uma");
  const u2 = await clients.connected(srv.wsUrl, "vic");
  for (const [c, st] of [[u1a, { n: 1 }], [u1b, { n: 2 }], [u2, { n: 3 }]]) {
    await subscribe(c, name, { join: st });
  }
  const late = await clients.connected(srv.wsUrl, "late");
  const joins = [];
  const s = late.stream(name, { presence: true });
  s.presence.on("join", (u) => joins.push(u.user));
  await until(s.presence, "change", () => s.presence.count === 2 && s.presence.get("uma")?.connections.length === 2, 5000, "snapshot",
    () => JSON.stringify(s.presence.list()));
  assert.deepEqual(joins.sort(), ["uma", "vic"]);
  assert.deepEqual(s.presence.get("uma").connections.map((c) => c.state).sort((x, y) => x.n - y.n), [{ n: 1 }, { n: 2 }]);
  assert.deepEqual(s.presence.get("vic").state, { n: 3 });
});

test("a network drop with a quick reconnect does not flap: no leave/join for the user, the own state is rejoined", { timeout: 15_000 }, async () => {
  const name = "room:3";
  proxy = await startProxy(srv.port);
  const obs = await clients.connected(srv.wsUrl, "watcher");
  const p = (await subscribe(obs, name, { presence: true })).s.presence;
  const ann = clients.make(proxy.url, { token: mintToken({ sub: "ann" }), minReconnectDelay: 20, maxReconnectDelay: 100 });
  const a = ann.stream(name, { join: { v: 1, pen: "red" } });
  await until(p, "change", () => p.get("ann")?.connections.length === 1, 5000, "ann present");
  a.presence.update({ v: 2, pen: null });
  await until(p, "change", () => sameJSON(p.get("ann")?.state, { v: 2 }), 5000, "ann's update");
  const oldId = ann.clientId;
  const joins = record(p, "join");
  const leaves = record(p, "leave");
  const updates = record(p, "update");

  const back = waitFor(ann, "connected", () => true, 5000, "ann reconnected");
  proxy.cut(); // no close frame: the server holds the old member for the grace (1 s)
  proxy.restore();
  const { client: newId } = await back;
  assert.notEqual(newId, oldId);
  await until(p, "change", () => p.get("ann")?.connections.some((c) => c.client === newId), 5000, "ann's new connection",
    () => JSON.stringify(p.list()));
  await until(p, "change", () => p.get("ann")?.connections.length === 1 && p.get("ann").connections[0].client === newId, 5000,
    "the old connection gone after the grace", () => JSON.stringify(p.list()));
  assert.deepEqual(joins, [], "no join: ann never left");
  assert.deepEqual(leaves, [], "no leave: ann was away only briefly");
  assert.ok(updates.length >= 1);
  assert.deepEqual(p.get("ann").state, { v: 2 }, "the merged own state was rejoined");
  assert.deepEqual(a.presence.state, { v: 2 });
});

function sameJSON(a, b) {
  return a !== undefined && JSON.stringify(sortKeys(a)) === JSON.stringify(sortKeys(b));
}

function sortKeys(v) {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v && typeof v === "object") return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sortKeys(v[k])]));
  return v;
}
