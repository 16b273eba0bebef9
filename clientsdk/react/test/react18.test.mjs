// The StrictMode scenario again under React 18, in a child process whose
// react and react-dom are the react-18 / react-dom-18 aliases.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { huddleBin } from "./helpers.mjs";

const here = dirname(fileURLToPath(import.meta.url));

test("React 18 StrictMode: one connection, one sub, one reference per mounted user", async () => {
  const bin = await huddleBin();
  const env = { ...process.env, HUDDLE_BIN: bin };
  delete env.NODE_TEST_CONTEXT;
  const { code, stdout, stderr } = await new Promise((ok) => {
    execFile(process.execPath, ["--import", join(here, "react18/register.mjs"), join(here, "react18/strict.mjs")],
      { cwd: join(here, ".."), env, timeout: 90_000 }, (err, stdout, stderr) => ok({ code: err ? (err.code ?? 1) : 0, stdout, stderr }));
  });
  assert.equal(code, 0, `child failed:\n${stderr}\n${stdout}`);
  const line = stdout.trim().split("\n").pop();
  const out = JSON.parse(line);
  assert.match(out.react, /^18\./, "the child ran React 18");
  assert.equal(out.sent.filter((t) => t === "sub").length, 1);
});
