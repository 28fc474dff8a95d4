/**
 * 7. The app-size sweep (issue 7): what `start`, `status` and `stop` cost as
 * the app grows, for a daemon written in one file (hooks in the entry) and
 * one whose small entry names its app module (`app: () => import(...)`),
 * under `bun run` and as compiled binaries, beside the same app without
 * bun-daemon, a bare runtime start, the C floor and pm2. All in one
 * interleaved run, so every figure shares the machine's load.
 *
 * The apps are generated into the run's temp dir; `typescript` 5.x and pm2
 * are installed there with npm at bench time (skipped, with a note, when npm
 * cannot), and are never dependencies of the package.
 */
import { existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  BARE, BUN, ROOT, alive, childEnv, cleanups, compileCDaemon, foregroundCmd, interleave, lines, runsOf, slot, startArgs, startedPid,
  num, readUntil, stopChild, stopPid, table, timed, tmpDir, tmpFile, tracked, verify, waitPort,
  type Derived, type Options, type Samples, type Section, type Step,
} from "../harness.ts";

/** Rounds when --runs is not given: ~6 s a round on 2 cores with every app and pm2. */
export const SWEEP_RUNS = 20;
/** Rounds of the strace pass (launcher → fork), fewer: it only locates one syscall. */
const STRACE_RUNS = 10;
const MANY_MODULES = 300;
const ESM_WORK_MS = 50;

type AppId = "tiny" | "esm50" | "many" | "ts";
type Style = "single" | "lazy";
type Mode = "run" | "bin";

const APP_LABEL: Record<AppId, string> = {
  tiny: "tiny",
  esm50: `${ESM_WORK_MS} ms ESM`,
  many: `${MANY_MODULES} modules`,
  ts: "typescript",
};
const APP_DESCRIPTION: Record<AppId, string> = {
  tiny: "tiny: `Bun.serve` in init, nothing else",
  esm50: `${ESM_WORK_MS} ms ESM: a module that spins ${ESM_WORK_MS} ms at its top level`,
  many: `${MANY_MODULES} modules: ${MANY_MODULES} small generated modules imported statically`,
  ts: 'typescript: `import ts from "typescript"` (5.x, one 9 MB CommonJS file)',
};
const STYLE_LABEL: Record<Style, string> = { single: "single file", lazy: "lazy `app:`" };
const MODE_LABEL: Record<Mode, string> = { run: "`bun run`", bin: "compiled" };

interface Variant {
  key: string;
  app: AppId;
  style: Style;
  mode: Mode;
  label: string;
  /** The program: [bun, entry] or [binary]; the command word and options follow. */
  cmd: string[];
}

// ---------------------------------------------------------------- generated apps

/** What each app loads beyond the daemon: a module exporting `work`, imported statically by the app. */
function writeHeavy(dir: string, app: AppId): void {
  const heavy = join(dir, "heavy.ts");
  switch (app) {
    case "tiny":
      writeFileSync(heavy, "export const work = 0;\n");
      break;
    case "esm50":
      writeFileSync(
        heavy,
        `// ${ESM_WORK_MS} ms of synchronous top-level work, as an app that builds tables or parses config at import.\nconst end = performance.now() + ${ESM_WORK_MS};\nlet n = 0;\nwhile (performance.now() < end) n++;\nexport const work = n;\n`,
      );
      break;
    case "many": {
      mkdirSync(join(dir, "mods"));
      const imports: string[] = [];
      for (let i = 0; i < MANY_MODULES; i++) {
        writeFileSync(join(dir, "mods", `m${i}.ts`), `export const v${i} = (x: number): number => x * ${i % 7} + ${i};\n`);
        imports.push(`import { v${i} } from "./mods/m${i}.ts";`);
      }
      const sum = Array.from({ length: MANY_MODULES }, (_, i) => `v${i}(1)`).join(" + ");
      writeFileSync(heavy, `${imports.join("\n")}\nexport const work = ${sum};\n`);
      break;
    }
    case "ts":
      writeFileSync(heavy, 'import ts from "typescript";\nexport const work = ts.version;\n');
      break;
  }
}

const SERVE = "Bun.serve({ hostname: \"127.0.0.1\", port: Number(ctx.args.port), fetch: () => new Response(`hello from ${process.pid} ${String(work)}\\n`) });";
const READY = 'if (ctx.mode === "foreground") console.log(`READY ${process.pid}`);';

function writeApp(base: string, app: AppId): void {
  const dir = join(base, app);
  mkdirSync(dir, { recursive: true });
  writeHeavy(dir, app);
  const args = 'args: { port: { type: "string", default: "0" } }';
  // Hooks in the entry: every command loads the app.
  writeFileSync(
    join(dir, "single.ts"),
    `import { defineDaemon } from "bun-daemon";\nimport { work } from "./heavy.ts";\n\nconst daemon = defineDaemon({ name: "sweep-${app}", ${args} });\ndaemon.on("init", (ctx) => { ${SERVE} });\ndaemon.on("ready", (ctx) => { ${READY} });\nawait daemon.main();\n`,
  );
  // The small entry: only the daemon and `run` load app.ts.
  writeFileSync(
    join(dir, "entry.ts"),
    `import { defineDaemon } from "bun-daemon";\n\nexport const daemon = defineDaemon({ name: "sweep-${app}", ${args}, app: () => import("./app.ts") });\nawait daemon.main();\n`,
  );
  writeFileSync(
    join(dir, "app.ts"),
    `import { onInit, onReady } from "bun-daemon";\nimport { work } from "./heavy.ts";\n\nonInit((ctx: any) => { ${SERVE} });\nonReady((ctx: any) => { ${READY} });\n`,
  );
  if (app === "tiny") {
    // The floor for bun-daemon's own foreground cost: the same server, no framework.
    writeFileSync(
      join(dir, "plain.ts"),
      "Bun.serve({ hostname: \"127.0.0.1\", port: Number(process.argv[2]), fetch: () => new Response(`hello from ${process.pid}\\n`) });\nconsole.log(`READY ${process.pid}`);\n",
    );
  }
}

/** npm install into `dir`; true when it worked, else a note says why not. */
function npmInstall(dir: string, spec: string, notes: string[], what: string): boolean {
  const npm = Bun.which("npm");
  if (!npm) {
    notes.push(`No \`npm\` on PATH: ${what} skipped.`);
    return false;
  }
  mkdirSync(dir, { recursive: true });
  if (!existsSync(join(dir, "package.json"))) writeFileSync(join(dir, "package.json"), '{ "private": true }\n');
  process.stderr.write(`[sweep] npm install ${spec} (into the run's temp dir)\n`);
  const r = Bun.spawnSync([npm, "install", "--no-audit", "--no-fund", "--ignore-scripts", "--no-save", "--loglevel=error", spec], {
    cwd: dir,
    env: childEnv,
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    timeout: 240_000,
  });
  if (r.exitCode !== 0) {
    notes.push(`\`npm install ${spec}\` failed (${r.stderr.toString().trim().split("\n").at(-1) ?? `exit ${r.exitCode}`}): ${what} skipped.`);
    return false;
  }
  return true;
}

function build(cwd: string, flags: string[], entry: string, out: string): void {
  const r = Bun.spawnSync([BUN, "build", ...flags, entry, "--outfile", out], { cwd, env: childEnv, stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`bun build ${flags.join(" ")} ${entry} failed:\n${r.stdout}${r.stderr}`);
}

const LAZY_FLAGS = ["--compile", "--splitting", "--bytecode", "--format=esm"];
const SINGLE_FLAGS = ["--compile"];

// ---------------------------------------------------------------- measuring

/** `start` to ready: until the launcher has exited 0 and the daemon's port accepts a connection. */
async function timeStart(cmd: string[], port: number, pidFile: string, cwd: string): Promise<{ ms: number; pid: number }> {
  const t0 = performance.now();
  const r = timed([...cmd, "start", ...startArgs(port, pidFile)], {}, cwd);
  await waitPort(port);
  const ms = performance.now() - t0;
  return { ms, pid: startedPid(r.stdout) };
}

/** Every measurement of one variant, in a fixed order: foreground, start, status, stop. */
function variantStep(v: Variant, cwd: string): Step {
  return async (s) => {
    const f = slot();
    const fg = await foregroundCmd([...v.cmd, "run", ...startArgs(f.port, f.pidFile)], {}, f.port);
    s.add(`${v.key}:fg`, fg.ms);
    await verify(f.port);
    await stopChild(fg.proc);

    const d = slot();
    const st = await timeStart(v.cmd, d.port, d.pidFile, cwd);
    s.add(`${v.key}:start`, st.ms);
    await verify(d.port);
    s.add(`${v.key}:status`, timed([...v.cmd, "status", "--pid-file", d.pidFile], {}, cwd).ms);
    s.add(`${v.key}:stop`, timed([...v.cmd, "stop", "--pid-file", d.pidFile], {}, cwd).ms);
    if (alive(st.pid)) throw new Error(`${v.label}: \`stop\` exited 0 but pid ${st.pid} is alive`);
    stopPid(st.pid);
  };
}

/**
 * Launcher → fork under strace (-f with seccomp-bpf: only the traced calls
 * stop): from the launcher's execve to its first clone that is not a thread,
 * i.e. bun-daemon's first fork. strace follows the daemon too, so it is
 * stopped (by pid) before strace can exit.
 */
function straceStep(v: Variant, strace: string, cwd: string): Step {
  return async (s) => {
    const { port, pidFile } = slot();
    const out = tmpFile("strace");
    const proc = Bun.spawn(
      [strace, "-f", "--seccomp-bpf", "-ttt", "-e", "trace=execve,fork,vfork,clone,clone3", "-o", out, ...v.cmd, "start", ...startArgs(port, pidFile)],
      { cwd, env: childEnv, stdin: "ignore", stdout: "pipe", stderr: "pipe" },
    );
    tracked.add(proc.pid);
    const seen = await readUntil(proc.stdout, /started \S+ \(pid \d+\)/, 30_000);
    const pid = startedPid(seen);
    stopPid(pid);
    await proc.exited;
    tracked.delete(proc.pid);
    const ms = launcherToFork(readFileSync(out, "utf8"));
    if (Number.isFinite(ms)) s.add(`${v.key}:fork`, ms);
  };
}


/** ms from the first line's execve to that pid's first non-thread clone/fork. */
function launcherToFork(trace: string): number {
  const all = trace.split("\n");
  const first = /^(\d+) (\d+\.\d+) execve\(/.exec(all[0] ?? "");
  if (!first) return NaN;
  const pid = first[1];
  for (const l of all) {
    const m = /^(\d+) (\d+\.\d+) (clone3?|v?fork)\(/.exec(l);
    if (m && m[1] === pid && !l.includes("CLONE_THREAD")) return (Number(m[2]) - Number(first[2])) * 1000;
  }
  return NaN;
}

// ---------------------------------------------------------------- pm2

interface Pm2 {
  cli: string[];
  env: Record<string, string>;
  app: string;
  home: string;
}

function pm2Setup(base: string, notes: string[]): Pm2 | undefined {
  const node = Bun.which("node");
  if (!node) {
    notes.push("No `node` on PATH: pm2 skipped.");
    return undefined;
  }
  const dir = join(base, "pm2");
  if (!npmInstall(dir, "pm2", notes, "pm2")) return undefined;
  const home = join(dir, "home");
  const app = join(dir, "app.js");
  writeFileSync(
    app,
    'require("http").createServer((q, r) => r.end(`hello from ${process.pid}\\n`)).listen(Number(process.argv[2]), "127.0.0.1");\n',
  );
  const pm2: Pm2 = { cli: [node, join(dir, "node_modules/pm2/bin/pm2")], env: { PM2_HOME: home }, app, home };
  // Our own God daemon in our own PM2_HOME: stopped by its pid at the end, whatever happens.
  cleanups.push(() => pm2Teardown(pm2));
  timed([...pm2.cli, "ping"], pm2.env, dir);
  const god = pm2God(pm2);
  if (!god) throw new Error(`pm2 ping started no God daemon (no ${join(home, "pm2.pid")})`);
  const version = JSON.parse(readFileSync(join(dir, "node_modules/pm2/package.json"), "utf8")).version as string;
  notes.push(
    `pm2 ${version} (installed with npm into the run's temp dir, PM2_HOME there too), its God daemon started before the first round and warm for every timing, stopped by its pid at the end; app: a Node \`http\` server (\`app.js\`, pm2's default interpreter, node ${Bun.spawnSync([node, "--version"]).stdout.toString().trim()}). \`pm2 start app.js\` is timed until the CLI has exited and the port accepts a connection (polled every ~1 ms); \`pm2 stop\` and \`pm2 delete\` until the CLI exits.`,
  );
  return pm2;
}

function pm2God(pm2: Pm2): number | undefined {
  const text = lines(join(pm2.home, "pm2.pid"))[0];
  return text ? Number(text) : undefined;
}

function pm2Teardown(pm2: Pm2): void {
  // Apps first (each by its pid from pm2's pid files), then the God daemon by its own.
  const pidsDir = join(pm2.home, "pids");
  if (existsSync(pidsDir)) {
    for (const f of new Bun.Glob("*.pid").scanSync(pidsDir)) {
      const pid = Number(lines(join(pidsDir, f))[0]);
      if (pid > 1) stopPid(pid);
    }
  }
  const god = pm2God(pm2);
  if (god && god > 1) stopPid(god);
}

let pm2Seq = 0;

function pm2Step(pm2: Pm2, cwd: string): Step {
  return async (s) => {
    const { port } = slot();
    const name = `sweep-${++pm2Seq}`;
    const t0 = performance.now();
    timed([...pm2.cli, "start", pm2.app, "--name", name, "--", String(port)], pm2.env, cwd);
    await waitPort(port);
    s.add("pm2:start", performance.now() - t0);
    await verify(port);
    const pid = Number(timed([...pm2.cli, "pid", name], pm2.env, cwd).stdout.trim());
    if (pid > 1) tracked.add(pid);
    s.add("pm2:stop", timed([...pm2.cli, "stop", name], pm2.env, cwd).ms);
    s.add("pm2:delete", timed([...pm2.cli, "delete", name], pm2.env, cwd).ms);
    if (pid > 1) stopPid(pid);
  };
}

// ---------------------------------------------------------------- the section

export async function sweep(o: Options): Promise<Section> {
  const runs = runsOf(o, SWEEP_RUNS);
  const notes: string[] = [];
  const base = join(tmpDir(), "sweep");
  mkdirSync(base, { recursive: true });

  const apps: AppId[] = ["tiny", "esm50", "many"];
  if (npmInstall(base, "typescript@5", notes, "the typescript app")) {
    const version = JSON.parse(readFileSync(join(base, "node_modules/typescript/package.json"), "utf8")).version as string;
    notes.push(`typescript ${version}, installed with npm into the run's temp dir for this run.`);
    apps.push("ts");
  }
  // `import "bun-daemon"` resolves as it would for a user: to this checkout, through node_modules.
  mkdirSync(join(base, "node_modules"), { recursive: true });
  symlinkSync(ROOT, join(base, "node_modules/bun-daemon"));
  for (const app of apps) writeApp(base, app);

  process.stderr.write(`[sweep] compiling ${apps.length * 2 + 1} binaries\n`);
  const bin = join(base, "bin");
  mkdirSync(bin);
  const variants: Variant[] = [];
  for (const app of apps) {
    const dir = join(base, app);
    build(dir, SINGLE_FLAGS, "single.ts", join(bin, `${app}-single`));
    build(dir, LAZY_FLAGS, "entry.ts", join(bin, `${app}-lazy`));
    for (const mode of ["run", "bin"] as const) {
      for (const style of ["single", "lazy"] as const) {
        const cmd = mode === "run" ? [BUN, join(dir, style === "single" ? "single.ts" : "entry.ts")] : [join(bin, `${app}-${style}`)];
        variants.push({ key: `${app}/${style}/${mode}`, app, style, mode, label: `${APP_LABEL[app]}, ${STYLE_LABEL[style]}, ${MODE_LABEL[mode]}`, cmd });
      }
    }
  }
  build(join(base, "tiny"), LAZY_FLAGS, "plain.ts", join(bin, "plain"));
  const plain: Array<[key: string, cmd: string[]]> = [
    ["plain/run", [BUN, join(base, "tiny/plain.ts")]],
    ["plain/bin", [join(bin, "plain")]],
  ];

  const steps: Step[] = variants.map((v) => variantStep(v, base));
  steps.push(async (s) => s.add("bare", timed(BARE, {}, base).ms));
  for (const [key, cmd] of plain) {
    steps.push(async (s) => {
      const { port } = slot();
      const fg = await foregroundCmd([...cmd, String(port)], {}, port);
      s.add(`${key}:fg`, fg.ms);
      await verify(port);
      await stopChild(fg.proc);
    });
  }
  const cdaemon = compileCDaemon(notes);
  if (cdaemon) {
    steps.push(async (s) => {
      const { port, pidFile } = slot();
      const t0 = performance.now();
      const r = timed([cdaemon, String(port), pidFile], {}, base);
      await waitPort(port);
      s.add("c:start", performance.now() - t0);
      const pid = startedPid(r.stdout);
      await verify(port);
      stopPid(pid);
    });
  }
  let pm2: Pm2 | undefined;
  try {
    pm2 = pm2Setup(base, notes);
    if (pm2) steps.push(pm2Step(pm2, base));

    const s = await interleave("sweep", runs, steps);

    const strace = Bun.which("strace");
    const straceRuns = Math.min(runs, STRACE_RUNS);
    let f: Samples | undefined;
    if (strace) {
      f = await interleave("sweep: launcher → fork (strace)", straceRuns, variants.map((v) => straceStep(v, strace, base)));
    } else {
      notes.push("No `strace` on PATH: launcher → fork was skipped.");
    }
    return report(s, f, variants, apps, notes, runs, straceRuns, Boolean(pm2));
  } finally {
    if (pm2) pm2Teardown(pm2);
  }
}

// ---------------------------------------------------------------- report

function report(
  s: Samples,
  f: Samples | undefined,
  variants: Variant[],
  apps: AppId[],
  notes: string[],
  runs: number,
  straceRuns: number,
  pm2: boolean,
): Section {
  const bare = s.median("bare");
  const BARE_ROW: [string, string] = ["bare", "bare runtime start (`bun -e 0`)"];
  const rows = (what: string) => variants.map((v): [string, string] => [`${v.key}:${what}`, v.label]);
  const tables = [
    table("Foreground (`run`) to ready", "ms", s, [
      ...rows("fg"),
      ["plain/run:fg", "tiny without bun-daemon (`Bun.serve`, READY line), `bun run`"],
      ["plain/bin:fg", "tiny without bun-daemon, compiled (`--compile --splitting --bytecode --format=esm`)"],
      BARE_ROW,
    ], "bare"),
    table("`start` to ready (launcher exited 0 and the port accepts a connection)", "ms", s, [
      ...rows("start"),
      ["c:start", "C double-fork daemon, readiness pipe (native floor)"],
      ["pm2:start", "`pm2 start app.js`, God daemon warm"],
      BARE_ROW,
    ], "bare"),
    table("`status` (daemon running)", "ms", s, [...rows("status"), BARE_ROW], "bare"),
    table("`stop` (SIGTERM, wait until gone)", "ms", s, [...rows("stop"), ["pm2:stop", "`pm2 stop`"], ["pm2:delete", "`pm2 delete`"], BARE_ROW], "bare"),
  ];
  if (f) {
    // Its own run: the reference is the tiny lazy `bun run` launcher of the same pass.
    tables.push(table(`Launcher → fork (strace, ${straceRuns} runs)`, "ms", f, rows("fork"), "tiny/lazy/run:fork"));
  }

  const m = (k: string) => s.median(k);
  const derived: Derived[] = [];
  // Targets (issue 7), judged on the lazy entry; the single-file figures are in the overview.
  const lazy = variants.filter((v) => v.style === "lazy");
  const atMost = (label: string, value: number, limit: number, target: string): Derived => ({
    label,
    value,
    unit: "ms",
    target: `${target} = ${limit.toFixed(1)} ms`,
    met: value <= limit,
  });
  for (const v of lazy) derived.push(atMost(`${v.label}: \`start\` − foreground`, m(`${v.key}:start`) - m(`${v.key}:fg`), bare + 10, "≤ bare + 10"));
  for (const v of lazy) derived.push(atMost(`${v.label}: \`status\``, m(`${v.key}:status`), bare + 6, "≤ bare + 6"));
  for (const v of lazy) derived.push(atMost(`${v.label}: \`stop\``, m(`${v.key}:stop`), bare + 6, "≤ bare + 6"));
  const fgCost = (label: string, key: string, plainKey: string): Derived => {
    const d = m(`${key}:fg`) - m(`${plainKey}:fg`);
    return { label, value: d, unit: "ms", target: "≤ 4 ms", met: d <= 4 };
  };
  derived.push(fgCost("foreground cost of bun-daemon (tiny lazy − the same server without it), `bun run`", "tiny/lazy/run", "plain/run"));
  derived.push(fgCost("foreground cost of bun-daemon (tiny lazy − the same server without it), compiled with the same flags", "tiny/lazy/bin", "plain/bin"));
  derived.push({ label: "for reference: tiny single file − the same server without it, `bun run`", value: m("tiny/single/run:fg") - m("plain/run:fg"), unit: "ms" });
  if (pm2) {
    const ratio = (label: string, a: string, b: string, want: number): Derived => {
      const r = m(a) / m(b);
      return { label, value: r, unit: "×", target: `≥ ${want}×`, met: r >= want };
    };
    derived.push(ratio("`pm2 start` / `start` (tiny lazy, `bun run`)", "pm2:start", "tiny/lazy/run:start", 5));
    derived.push(ratio("`pm2 stop` / `stop` (tiny lazy, `bun run`)", "pm2:stop", "tiny/lazy/run:stop", 8));
    derived.push(ratio("`pm2 start` / `start` (tiny lazy, compiled)", "pm2:start", "tiny/lazy/bin:start", 5));
    derived.push(ratio("`pm2 stop` / `stop` (tiny lazy, compiled)", "pm2:stop", "tiny/lazy/bin:stop", 8));
  }

  // One line per variant, medians only: the tables below have min, max and ratios.
  const ms = (v: number) => num(v, "ms");
  const head = "| app | style | run as | foreground | `start` | `start` − fg | `status` | `stop` | launcher → fork |\n|---|---|---|--:|--:|--:|--:|--:|--:|";
  const body = variants.map((v) => {
    const fork = f ? ms(f.median(`${v.key}:fork`)) : "";
    return `| ${APP_LABEL[v.app]} | ${STYLE_LABEL[v.style]} | ${MODE_LABEL[v.mode]} | ${ms(m(`${v.key}:fg`))} | ${ms(m(`${v.key}:start`))} | ${ms(m(`${v.key}:start`) - m(`${v.key}:fg`))} | ${ms(m(`${v.key}:status`))} | ${ms(m(`${v.key}:stop`))} | ${fork} |`;
  });
  const refs = [
    `bare \`bun -e 0\` **${ms(bare)} ms**`,
    `tiny without bun-daemon: foreground ${ms(m("plain/run:fg"))} ms (\`bun run\`), ${ms(m("plain/bin:fg"))} ms (compiled)`,
    ...(s.get("c:start").length ? [`C double-fork daemon ${ms(m("c:start"))} ms`] : []),
    ...(pm2 ? [`pm2: start ${ms(m("pm2:start"))} ms, stop ${ms(m("pm2:stop"))} ms, delete ${ms(m("pm2:delete"))} ms`] : []),
  ];
  const summary = `**Overview** (ms, medians of ${runs} interleaved rounds${f ? `; launcher → fork: ${straceRuns} rounds under strace` : ""})\n\n${[head, ...body].join("\n")}\n\nSame run: ${refs.join("; ")}.`;

  notes.push(
    `${runs} rounds after one uncounted warm-up; each round runs every variant once (order rotating): its foreground to ready, then \`start\` to ready, \`status\` and \`stop\` of that daemon; plus \`bun -e 0\`, the app without bun-daemon, the C daemon${pm2 ? " and pm2" : ""}.`,
    `Apps (generated into the run's temp dir): ${apps.map((a) => APP_DESCRIPTION[a]).join("; ")}. Each serves HTTP from \`Bun.serve\` in its init hook and prints READY from its ready hook in the foreground; "single file" has its hooks and the app's imports in the entry, "lazy" has a small entry with \`app: () => import("./app.ts")\`. They import \`bun-daemon\` from this checkout.`,
    "Foreground to ready: from spawn to the READY line and a TCP connect that succeeds. `start` to ready: until the launcher exits 0 and the port accepts a TCP connection (every app here has a port). `status`, `stop`: until the command exits 0.",
    "Compiled: lazy entries with `bun build --compile --splitting --bytecode --format=esm`; single-file entries with plain `bun build --compile` (the whole bundle is parsed at every start, as a single-file daemon compiled the simple way is).",
    "Targets (issue 7) are judged on the lazy entry, the pattern for any app that is not small; the single-file rows show what that style costs (every command loads the whole app), without a verdict.",
    f
      ? `Launcher → fork: ${straceRuns} separate rounds under \`strace -f --seccomp-bpf -ttt -e trace=execve,fork,vfork,clone,clone3\`, from the launcher's execve to its first clone that is not a thread (bun-daemon's first fork); only those syscalls stop, so strace adds little (each thread the runtime starts costs a stop).`
      : "",
  );
  return { id: "sweep", title: "7. App-size sweep: entry styles, `bun run` and compiled, pm2", summary, tables, derived, notes: notes.filter(Boolean) };
}
