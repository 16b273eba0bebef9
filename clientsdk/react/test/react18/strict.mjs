// The StrictMode scenario under React 18 (run by react18.test.mjs with
// --import ./test/react18/register.mjs). Prints one JSON line on success.
import { closeDom } from "../dom.mjs";
import React from "react";
import { cleanup } from "@testing-library/react";
import { startServer } from "../helpers.mjs";
import { strictModeScenario } from "../strict-scenario.mjs";

const srv = await startServer();
try {
  const out = await strictModeScenario(srv, "strict18:room");
  console.log(JSON.stringify({ react: React.version, ...out }));
} finally {
  cleanup();
  await srv.stop();
  closeDom();
}
