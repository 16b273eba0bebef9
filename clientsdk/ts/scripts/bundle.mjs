// Bundles the SDK (src/index.ts, @msgpack/msgpack inlined) into one minified
// ES module, cmd/huddle/web/huddle.js, which `huddle --dev` serves at
// /huddle.js for pages without a bundler (the demo page has its own bundle,
// from clientsdk/demo). The output is deterministic: the same sources give
// the same bytes.
//
//   node scripts/bundle.mjs           write cmd/huddle/web/huddle.js
//   node scripts/bundle.mjs --size    ... and print its minified and gzip sizes
//   node scripts/bundle.mjs --check   build in memory; exit 1 if the file is stale
import { build } from "esbuild";
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { constants, gzipSync } from "node:zlib";

const pkgDir = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const repoDir = resolve(pkgDir, "../..");
const outFile = join(repoDir, "cmd/huddle/web/huddle.js");
const outRel = relative(repoDir, outFile);

const args = new Set(process.argv.slice(2));
for (const a of args) {
  if (a !== "--size" && a !== "--check") {
    console.error(`unknown argument ${a}; usage: node scripts/bundle.mjs [--size] [--check]`);
    process.exit(2);
  }
}

const pkg = JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8"));
const banner = `// ${outRel}: ${pkg.name} ${pkg.version}, generated from clientsdk/ts by \`npm run bundle\`; do not edit.`;

const result = await build({
  absWorkingDir: pkgDir,
  entryPoints: ["src/index.ts"],
  tsconfig: "tsconfig.json",
  bundle: true,
  format: "esm",
  platform: "browser",
  target: "es2020",
  minify: true,
  sourcemap: false,
  legalComments: "eof",
  charset: "utf8",
  banner: { js: banner },
  outfile: outFile,
  write: false,
  logLevel: "warning",
});
if (result.outputFiles.length !== 1) {
  throw new Error(`expected one output file, got ${result.outputFiles.map((f) => f.path).join(", ")}`);
}
const code = Buffer.from(result.outputFiles[0].contents);

if (args.has("--check")) {
  let current = null;
  try {
    current = readFileSync(outFile);
  } catch {}
  if (!current || !current.equals(code)) {
    console.error(`${outRel} is ${current ? "stale" : "missing"}: run \`npm run bundle\` in clientsdk/ts and commit the result`);
    process.exitCode = 1;
  } else {
    console.log(`${outRel} is up to date`);
  }
} else {
  writeFileSync(outFile, code);
  console.log(`wrote ${outRel}`);
}

if (args.has("--size")) {
  const kib = (n) => (n / 1024).toFixed(1) + " KiB";
  const gz = gzipSync(code, { level: constants.Z_BEST_COMPRESSION }).length;
  console.log(`minified:        ${code.length} bytes (${kib(code.length)})`);
  console.log(`minified + gzip: ${gz} bytes (${kib(gz)})`);
}
