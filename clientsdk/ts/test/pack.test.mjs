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
  // Typed payloads: what a stream's publications, presence states and
  // cursors hold; a wrong type is a compile error (@ts-expect-error fails
  // the build if the line compiles).
  writeFileSync(join(project, "main.ts"), `import { Huddle, type Publication } from "@huddle/client";
import WebSocket from "ws";
const c = new Huddle({ url: "ws://127.0.0.1:1/ws", WebSocket, autoConnect: false });
c.on("connected", (e) => console.log(e.transport));
type Op = { op: "insert" | "delete"; at: number };
const doc = c.stream<Op, { name: string }, { x: number; y: number }>("doc:1", { presence: true, join: { name: "Ann" } });
doc.on("publication", (p: Publication<Op>) => console.log(p.data.at + 1));
void doc.publish({ op: "insert", at: 3 });
// @ts-expect-error: not an Op
void doc.publish({ op: "paste" });
doc.presence.on("change", (users) => users.forEach((u) => console.log(u.state?.name.toUpperCase())));
// @ts-expect-error: name is a string
doc.presence.update({ name: 42 });
const cur = doc.cursors();
cur.move({ x: 1, y: 2 });
cur.on("change", (m) => m.forEach((k) => console.log(k.data.x)));
// @ts-expect-error: not a cursor
cur.move("here");
const untyped = c.stream("other");
untyped.on("publication", (p) => console.log(p.data));
`);
  writeFileSync(join(project, "tsconfig.json"), JSON.stringify({ compilerOptions: { strict: true, module: "nodenext", moduleResolution: "nodenext", target: "es2022", noEmit: true } }));
  await run("npx", ["tsc", "-p", "."], { cwd: project }).catch((err) => assert.fail(`strict tsc: ${err.stdout}${err.stderr}`));
});
