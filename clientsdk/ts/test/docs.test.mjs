// docs/api (the API reference, generated from the doc comments by
// `npm run docs`) matches the sources: regenerated into a scratch
// directory, it is the same, file for file.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const pkgDir = resolve(dirname(fileURLToPath(import.meta.url)), "..");

function files(dir) {
  const out = {};
  const walk = (d) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else out[relative(dir, p)] = readFileSync(p, "utf8");
    }
  };
  walk(dir);
  return out;
}

test("docs/api is up to date with the doc comments (npm run docs)", { timeout: 120_000 }, async (t) => {
  const out = mkdtempSync(join(tmpdir(), "huddle-docs-"));
  t.after(() => rmSync(out, { recursive: true, force: true }));
  await promisify(execFile)("npx", ["typedoc", "--out", out], { cwd: pkgDir });
  const want = files(out);
  const have = files(join(pkgDir, "docs/api"));
  assert.deepEqual(Object.keys(have).sort(), Object.keys(want).sort(), "docs/api has other files than typedoc makes: run npm run docs");
  for (const [name, text] of Object.entries(want)) {
    assert.equal(have[name], text, `docs/api/${name} is stale: run npm run docs and commit it`);
  }
});
