/**
 * The package as a TypeScript user receives it: packed with npm, installed
 * into a fresh project, and the README's example type-checked there under
 * the settings such projects commonly use, with the package's own
 * declarations checked too (skipLibCheck off).
 */
import { beforeAll, expect, test } from "bun:test";
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { cleanupProcesses, ROOT, run, tempDir } from "./helpers.ts";

cleanupProcesses();
const dir = tempDir("bd-package-");
const consumer = join(dir, "consumer");
const installed = join(consumer, "node_modules/bun-daemon");
const FIXTURES = join(ROOT, "test/fixtures/consumer");
const CONFIGS = ["tsconfig.bundler.json", "tsconfig.nodenext.json", "tsconfig.strictest.json"];

interface PackResult {
  filename: string;
  files: { path: string }[];
}
let packed: PackResult;
let leftInRepo: string[] = [];

/** The README sections whose ```ts blocks a new user copies (each up to the next section). */
const EXAMPLE_SECTIONS = ["Writing a daemon", "Configuration files, reload and status"];

/**
 * The ```ts blocks under EXAMPLE_SECTIONS. Each opens with a
 * `// FILE.ts: ...` comment naming its file, as the entry and its app
 * module do.
 */
function readmeExample(): Array<{ file: string; code: string }> {
  const readme = readFileSync(join(ROOT, "README.md"), "utf8");
  return EXAMPLE_SECTIONS.flatMap((title) => {
    const start = readme.indexOf(`\n## ${title}\n`);
    if (start < 0) throw new Error(`README.md: no "## ${title}" section`);
    const section = readme.slice(start + 1, readme.indexOf("\n## ", start + 1));
    const blocks = [...section.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((m) => m[1]!);
    if (blocks.length === 0) throw new Error(`README.md: no \`\`\`ts block under "## ${title}"`);
    return blocks.map((code, i) => ({ file: /^\/\/ ([\w.-]+\.ts)\b/.exec(code)?.[1] ?? `example-${title.split(" ")[0]!.toLowerCase()}${i}.ts`, code }));
  });
}

function link(name: string): void {
  const from = join(ROOT, "node_modules", name);
  if (!existsSync(from)) throw new Error(`${name} is not in ${ROOT}/node_modules: run npm ci`);
  const to = join(consumer, "node_modules", name);
  mkdirSync(dirname(to), { recursive: true });
  symlinkSync(from, to);
}

beforeAll(async () => {
  const npm = Bun.which("npm");
  if (!npm) throw new Error("npm not found: it packs the package as a publish would");
  const before = new Set(readdirSync(ROOT));
  // npm runs prepack (the declarations) and postpack here, as it does for a publish.
  const r = await run([npm, "pack", "--json", "--pack-destination", dir], { timeoutMs: 120_000 });
  // Only what packing could leave: other work may add files to the tree meanwhile.
  leftInRepo = readdirSync(ROOT).filter((f) => !before.has(f) && (f.endsWith(".tgz") || f === "types"));
  if (r.code !== 0) throw new Error(`npm pack exited ${r.code}:\n${r.stderr}${r.stdout}`);
  // Lifecycle scripts may print before npm's JSON: it is the last top-level array.
  packed = (JSON.parse(r.stdout.slice(r.stdout.lastIndexOf("\n[") + 1)) as PackResult[])[0]!;

  // What `npm install <tarball>` puts in place, done offline: the tarball
  // unpacked as node_modules/bun-daemon, its declared dependencies and the
  // consumer's own typescript and @types/bun linked from the repo's
  // node_modules (npm ci filled it with the same pinned versions). Only what
  // the packed package.json declares is linked, so an undeclared import in
  // the declarations fails to resolve here as it would for a user.
  mkdirSync(installed, { recursive: true });
  const untar = await run(["tar", "-xzf", join(dir, packed.filename), "-C", installed, "--strip-components=1"]);
  if (untar.code !== 0) throw new Error(`tar: ${untar.stderr}`);
  const pkg = JSON.parse(readFileSync(join(installed, "package.json"), "utf8"));
  for (const dep of Object.keys({ ...pkg.dependencies, ...pkg.peerDependencies })) link(dep);
  link("typescript");
  link("@types/bun");
  // The configuration example's validator: the user's own dependency, not bun-daemon's.
  link("zod");

  writeFileSync(join(consumer, "package.json"), JSON.stringify({
    name: "consumer",
    private: true,
    type: "module",
    dependencies: { "bun-daemon": `file:${join(dir, packed.filename)}`, zod: "*" },
  }));
  for (const { file, code } of readmeExample()) writeFileSync(join(consumer, file), code);
  for (const c of CONFIGS) copyFileSync(join(FIXTURES, c), join(consumer, c));
}, 180_000);

test("npm pack leaves nothing in the repo; the tarball has declarations and the source Bun runs", () => {
  expect(leftInRepo).toEqual([]);
  const files = packed.files.map((f) => f.path);
  expect(files).toContain("src/index.ts");
  expect(files).toContain("types/index.d.ts");
  const pkg = JSON.parse(readFileSync(join(installed, "package.json"), "utf8"));
  // "types" first: conditions are tried in the order written.
  expect(Object.keys(pkg.exports["."])[0]).toBe("types");
  for (const rel of [pkg.types, pkg.exports["."].types, pkg.exports["."].bun, pkg.exports["."].default]) {
    expect(existsSync(join(installed, rel))).toBe(true);
  }
});

for (const config of CONFIGS) {
  test(`the README example type-checks in a fresh project (${config})`, async () => {
    const r = await run(["node", join(consumer, "node_modules/typescript/bin/tsc"), "-p", config, "--listFiles"], {
      cwd: consumer,
      timeoutMs: 120_000,
    });
    const lines = r.stdout.split("\n");
    // The errors, printed whole on failure; tsc continues each one on indented lines.
    expect(lines.filter((l) => /error TS\d+/.test(l))).toEqual([]);
    expect(r.code).toBe(0);
    // The compiler read the package's declarations, and never its .ts source.
    const fromPackage = lines.filter((l) => l.startsWith(installed + "/"));
    expect(fromPackage).toContain(join(installed, "types/index.d.ts"));
    expect(fromPackage.filter((l) => !l.endsWith(".d.ts"))).toEqual([]);
  }, 120_000);
}
