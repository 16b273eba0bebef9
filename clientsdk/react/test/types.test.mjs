// The typed payloads: test/types/usage.tsx must compile under strict
// TypeScript against the built declarations, and each of its
// @ts-expect-error lines must be an error (tsc fails on an unused one).
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");

test("usage.tsx typechecks, and wrong payloads do not", async () => {
  const { code, out } = await new Promise((ok) => {
    execFile(process.execPath, [tsc, "-p", join(here, "types/tsconfig.json")], { timeout: 120_000 }, (err, stdout, stderr) =>
      ok({ code: err ? (err.code ?? 1) : 0, out: stdout + stderr }));
  });
  assert.equal(code, 0, out);
});
