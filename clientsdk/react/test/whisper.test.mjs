// useWhisper: receive other connections' whispers, send them.
import "./dom.mjs";
import { test } from "node:test";
import assert from "node:assert/strict";
import React, { useState } from "react";
import { render, waitFor, act } from "@testing-library/react";
import { HuddleProvider, useStreamState, useWhisper } from "../dist/index.js";
import { Clients, options, record, subscribe, until, serverForFile } from "./helpers.mjs";

const h = React.createElement;
const W = { timeout: 8000 };

let srv;
const sdk = new Clients();
serverForFile(sdk, (s) => (srv = s));

test("useWhisper hands whispers to the latest handler and returns a send function", async () => {
  const got = {};
  function Chat({ tag }) {
    const [log, setLog] = useState([]);
    // A new handler every render: the latest one is called, with no resubscribe.
    got.send = useWhisper("wh:a", (w) => setLog((l) => [...l, `${tag}:${w.from.user}:${w.ev}:${w.data.n}`]));
    got.pings = useWhisper("wh:a", (w) => setLog((l) => [...l, `only-ping:${w.data.n}`]), { ev: "ping" });
    return h("div", null, h("p", { "data-testid": "state" }, useStreamState("wh:a")), h("p", { "data-testid": "log" }, log.join(" ")));
  }
  const app = (tag) => h(HuddleProvider, { options: options(srv, "ann") }, h(Chat, { tag }));
  const view = render(app("v1"));
  await waitFor(() => assert.equal(view.getByTestId("state").textContent, "subscribed"), W);
  const bob = await sdk.connected(srv.wsUrl, "bob");
  const { s } = await subscribe(bob, "wh:a");
  const heard = record(s, "whisper");

  assert.equal(s.whisper("ping", { n: 1 }), true);
  await waitFor(() => assert.equal(view.getByTestId("log").textContent, "v1:bob:ping:1 only-ping:1"), W);
  view.rerender(app("v2"));
  s.whisper("other", { n: 2 });
  await waitFor(() => assert.equal(view.getByTestId("log").textContent, "v1:bob:ping:1 only-ping:1 v2:bob:other:2"), W);

  let sent;
  act(() => {
    sent = got.send("pong", { n: 3 });
  });
  assert.equal(sent, true);
  await until(s, "whisper", () => heard.length === 1, 5000, "bob to hear ann");
  assert.equal(heard[0].ev, "pong");
  assert.deepEqual(heard[0].data, { n: 3 });
  assert.equal(heard[0].from.user, "ann");
  // Own whispers do not come back.
  assert.doesNotMatch(view.getByTestId("log").textContent, /pong/);
});

test("the send function returns false while the stream is not subscribed", async () => {
  let send;
  function Quiet() {
    send = useWhisper("wh:b");
    return null;
  }
  // A provider whose client cannot connect (nothing listens on that port).
  render(h(HuddleProvider, { options: { ...options(srv, "x"), url: "ws://127.0.0.1:9/ws" } }, h(Quiet)));
  await waitFor(() => assert.ok(send), W);
  assert.equal(send("ping", { n: 1 }), false);
});
