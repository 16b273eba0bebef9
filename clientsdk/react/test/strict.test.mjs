// StrictMode runs every effect twice in development: prove that it costs no
// second subscription, join or connection (React 19 here; react18.test.mjs
// runs the same scenario under React 18).
import { closeDom } from "./dom.mjs";
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import React from "react";
import { cleanup } from "@testing-library/react";
import { startServer } from "./helpers.mjs";
import { strictModeScenario } from "./strict-scenario.mjs";

let srv;
before(async () => {
  srv = await startServer();
});
after(async () => {
  cleanup();
  await srv?.stop();
  closeDom();
});

test("React 19 StrictMode: one connection, one sub, one reference per mounted user", async () => {
  assert.match(React.version, /^19\./);
  await strictModeScenario(srv);
});
