// HuddleProvider and the connection hooks against the real server.
import { closeDom } from "./dom.mjs";
import { test, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import React, { StrictMode, useEffect } from "react";
import { renderToString } from "react-dom/server";
import { hydrateRoot } from "react-dom/client";
import { render, cleanup, waitFor, act } from "@testing-library/react";
import { HuddleProvider, useConnectionState, useHuddle, useStreamState } from "../dist/index.js";
import { Huddle, countingWebSocket, delay, idle, metrics, options, startServer, stats } from "./helpers.mjs";

const h = React.createElement;
const W = { timeout: 8000 };

let srv;
before(async () => {
  srv = await startServer();
});
afterEach(async () => {
  cleanup();
  await idle(srv);
});
after(async () => {
  cleanup();
  await srv?.stop();
  closeDom();
});

test("the provider connects, useConnectionState follows the connection through a server restart, unmount disconnects", async () => {
  const seen = [];
  const got = {};
  function Status() {
    const state = useConnectionState();
    got.client = useHuddle();
    useEffect(() => {
      if (seen[seen.length - 1] !== state) seen.push(state);
    });
    return h("p", { "data-testid": "state" }, state);
  }
  const view = render(h(HuddleProvider, { options: options(srv, "ann") }, h(Status)));
  // The first render has no client yet (it is made in an effect).
  assert.equal(seen[0], "disconnected");
  await waitFor(() => assert.equal(view.getByTestId("state").textContent, "connected"), W);
  assert.ok(got.client instanceof Huddle);
  assert.equal(got.client.user, "ann");
  const firstConnected = seen.indexOf("connected");
  assert.ok(seen.slice(0, firstConnected).includes("connecting"), `seen ${seen.join(" > ")}`);

  // The server goes away: the state leaves "connected"; it comes back: "connected" again.
  await srv.stop();
  await waitFor(() => assert.notEqual(view.getByTestId("state").textContent, "connected"), W);
  assert.ok(seen.slice(firstConnected + 1).includes("disconnected"), `seen ${seen.join(" > ")}`);
  await srv.start();
  await waitFor(() => assert.equal(view.getByTestId("state").textContent, "connected"), { timeout: 15000 });
  assert.ok(seen.lastIndexOf("connected") > firstConnected);

  // Unmounting closes the client the provider made.
  const client = got.client;
  view.unmount();
  await waitFor(() => assert.equal(client.state, "disconnected"), W);
  await waitFor(async () => assert.equal((await stats(srv)).clients, 0), W);
});

test("a given client is used as it is and left open on unmount", async () => {
  const client = new Huddle(options(srv, "bea"));
  try {
    const got = {};
    function Probe() {
      got.client = useHuddle();
      return h("p", { "data-testid": "state" }, useConnectionState());
    }
    const view = render(h(HuddleProvider, { client }, h(Probe)));
    // Given clients are there from the first render.
    assert.equal(got.client, client);
    await waitFor(() => assert.equal(view.getByTestId("state").textContent, "connected"), W);
    view.unmount();
    await delay(100);
    assert.equal(client.state, "connected");
  } finally {
    client.disconnect();
  }
});

test("StrictMode: the provider makes one client and opens one socket", async () => {
  const ws = countingWebSocket();
  const acceptedBefore = (await metrics(srv))["huddle_connections_accepted_total"] ?? 0;
  const clients = new Set();
  function Probe() {
    const c = useHuddle();
    if (c) clients.add(c);
    return h("p", { "data-testid": "state" }, useConnectionState());
  }
  const view = render(h(StrictMode, null, h(HuddleProvider, { options: options(srv, "cid", { WebSocket: ws.WebSocket }) }, h(Probe))));
  await waitFor(() => assert.equal(view.getByTestId("state").textContent, "connected"), W);
  await delay(200);
  assert.equal(clients.size, 1, "clients seen by the hooks");
  assert.equal(ws.log.opened, 1, "sockets opened");
  assert.equal(ws.count("connect"), 1, "connect messages sent");
  assert.equal(((await metrics(srv))["huddle_connections_accepted_total"] ?? 0) - acceptedBefore, 1, "connections accepted by the server");
  view.unmount();
  const [client] = clients;
  await waitFor(() => assert.equal(client.state, "disconnected"), W);
});

test("hooks outside a provider throw a clear error", () => {
  function Lost() {
    useConnectionState();
    return null;
  }
  const errors = [];
  const onError = (e) => {
    errors.push(e);
    e.preventDefault();
  };
  window.addEventListener("error", onError);
  const log = console.error;
  console.error = () => {};
  try {
    assert.throws(() => render(h(Lost)), /inside a <HuddleProvider>/);
  } finally {
    console.error = log;
    window.removeEventListener("error", onError);
  }
});

test("server HTML hydrates without a mismatch, then connects and subscribes", async () => {
  const opts = options(srv, "hyd");
  function App() {
    const state = useConnectionState();
    const sub = useStreamState("hydrate:room");
    return h("p", { id: "out" }, `${state}/${sub}`);
  }
  const tree = h(HuddleProvider, { options: opts }, h(App));
  const html = renderToString(tree);
  assert.match(html, /disconnected\/unsubscribed/);
  const container = document.createElement("div");
  container.innerHTML = html;
  document.body.append(container);
  const recoverable = [];
  let root;
  const log = console.error;
  const consoleErrors = [];
  console.error = (...args) => consoleErrors.push(args.map(String).join(" "));
  try {
    await act(async () => {
      root = hydrateRoot(container, tree, { onRecoverableError: (err) => recoverable.push(err) });
    });
    await waitFor(() => assert.equal(container.textContent, "connected/subscribed"), W);
  } finally {
    console.error = log;
    act(() => root?.unmount());
    container.remove();
  }
  assert.deepEqual(recoverable.map(String), [], "hydration errors");
  assert.deepEqual(consoleErrors.filter((e) => /hydrat|did not match/i.test(e)), []);
});
