// Bundles the demo (src/main.tsx with React, Yjs and the three @huddle
// packages) into one minified ES module, cmd/huddle/web/demo.js, which
// `huddle --dev` embeds and serves at /. The output is deterministic: the
// same sources and lockfiles give the same bytes.
//
//   node scripts/bundle.mjs           write cmd/huddle/web/demo.js
//   node scripts/bundle.mjs --size    ... and print its minified and gzip sizes
//   node scripts/bundle.mjs --check   build in memory; exit 1 if the file is stale
//
// The @huddle packages are links to ../ts, ../react and ../yjs (build them
// first: npm run build in each), and each of those has its own
// node_modules with its own React or Yjs for its tests. A page must have
// one React and one Yjs, so every import of a shared package resolves
// from this package's node_modules, whoever imports it.
import { build } from "esbuild";
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { constants, gzipSync } from "node:zlib";

const pkgDir = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const repoDir = resolve(pkgDir, "../..");
const outFile = join(repoDir, "cmd/huddle/web/demo.js");
const outRel = relative(repoDir, outFile);

const args = new Set(process.argv.slice(2));
for (const a of args) {
  if (a !== "--size" && a !== "--check") {
    console.error(`unknown argument ${a}; usage: node scripts/bundle.mjs [--size] [--check]`);
    process.exit(2);
  }
}

const pkg = JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8"));
const banner = `// ${outRel}: the huddle --dev demo page, generated from clientsdk/demo by \`npm run bundle\`; do not edit.`;

const SHARED = /^(react|react-dom|scheduler|yjs|y-protocols|lib0|@huddle\/client)(\/.*)?$/;
const onePerPage = {
  name: "one-per-page",
  setup(b) {
    b.onResolve({ filter: SHARED }, async (a) => {
      if (a.pluginData === "one-per-page" || a.resolveDir === pkgDir) return undefined;
      const r = await b.resolve(a.path, { kind: a.kind, resolveDir: pkgDir, pluginData: "one-per-page" });
      return r.errors.length > 0 ? { errors: r.errors } : { path: r.path, sideEffects: r.sideEffects };
    });
  },
};

const result = await build({
  absWorkingDir: pkgDir,
  entryPoints: ["src/main.tsx"],
  tsconfig: "tsconfig.json",
  bundle: true,
  format: "esm",
  platform: "browser",
  target: "es2020",
  minify: true,
  sourcemap: false,
  legalComments: "eof",
  charset: "utf8",
  define: { "process.env.NODE_ENV": '"production"' },
  jsx: "automatic",
  banner: { js: banner },
  plugins: [onePerPage],
  metafile: true,
  outfile: outFile,
  write: false,
  logLevel: "warning",
});
if (result.outputFiles.length !== 1) {
  throw new Error(`expected one output file, got ${result.outputFiles.map((f) => f.path).join(", ")}`);
}
// Every shared package must come from here, once.
const twice = Object.keys(result.metafile.inputs).filter((p) => /(^|\/)\.\.\/(ts|react|yjs)\/node_modules\/(react|react-dom|scheduler|yjs|y-protocols|lib0)\//.test(p));
if (twice.length > 0) throw new Error(`a second copy of a shared package was bundled: ${twice.join(", ")}`);
const code = Buffer.from(result.outputFiles[0].contents);

if (args.has("--check")) {
  let current = null;
  try {
    current = readFileSync(outFile);
  } catch {}
  if (!current || !current.equals(code)) {
    console.error(`${outRel} is ${current ? "stale" : "missing"}: run \`npm run bundle\` in clientsdk/demo (after building ../ts, ../react and ../yjs) and commit the result`);
    process.exitCode = 1;
  } else {
    console.log(`${outRel} is up to date (${pkg.name})`);
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
