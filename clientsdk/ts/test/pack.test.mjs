// The package installs and imports in a fresh project: `npm pack` builds
// dist/ by itself (prepack), the tarball installs with its dependency, the
// ESM import works in Node, and a strict TypeScript project accepts the
// `ws` package's WebSocket as the README says.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const run = promisify(execFile);
const pkgDir = resolve(dirname(fileURLToPath(import.meta.url)), "..");

test("npm pack gives a package that installs, imports and typechecks in a fresh project", { timeout: 180_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "huddle-pack-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const { stdout } = await run("npm", ["pack", "--json", "--pack-destination", dir], { cwd: pkgDir });
  const [info] = JSON.parse(stdout.slice(stdout.indexOf("[")));
  const files = info.files.map((f) => f.path);
  assert.ok(files.includes("dist/index.js") && files.includes("dist/index.d.ts"), `dist/ in the tarball: ${files.join(" ")}`);
  const project = join(dir, "app");
  await run("mkdir", ["-p", project]);
  writeFileSync(join(project, "package.json"), JSON.stringify({ name: "app", private: true, type: "module" }));
  const ts = JSON.parse(await import("node:fs").then((fs) => fs.readFileSync(join(pkgDir, "package.json"), "utf8"))).devDependencies.typescript;
  await run("npm", ["install", "--no-audit", "--no-fund", join(dir, info.filename), "ws", "@types/ws", `typescript@${ts}`], { cwd: project });
  writeFileSync(join(project, "main.mjs"), `import { Huddle, Code } from "@huddle/client";
import WebSocket from "ws";
const c = new Huddle({ url: "ws://127.0.0.1:1/ws", WebSocket, autoConnect: false });
console.log(c.state, typeof Code.Shutdown);
`);
  const out = await run("node", ["main.mjs"], { cwd: project });
  assert.equal(out.stdout.trim(), "disconnected number");
  writeFileSync(join(project, "main.ts"), `import { Huddle } from "@huddle/client";
import WebSocket from "ws";
const c = new Huddle({ url: "ws://127.0.0.1:1/ws", WebSocket, autoConnect: false });
c.on("connected", (e) => console.log(e.transport));
`);
  writeFileSync(join(project, "tsconfig.json"), JSON.stringify({ compilerOptions: { strict: true, module: "nodenext", moduleResolution: "nodenext", target: "es2022", noEmit: true } }));
  await run("npx", ["tsc", "-p", "."], { cwd: project }).catch((err) => assert.fail(`strict tsc: ${err.stdout}${err.stderr}`));
});
