/**
 * bun-daemon benchmarks (issue #3).
 *
 *   bun scripts/bench.ts [--runs N] [--only SECTION[,SECTION]] [--json]
 *   npm run bench -- --runs 10
 *
 * Sections: ready, fds, heap, signals, memory, import. Each comparison runs
 * its variants interleaved in one run (one round = every variant once, the
 * order rotating between rounds), after one warm-up round that is not counted.
 * Markdown on stdout (JSON with --json); progress on stderr.
 *
 * Figures on a shared machine are noisy: the ratios within one run are what
 * to compare. Never turn them into pass/fail thresholds in tests.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { loadavg, machine as cpuArch, release, tmpdir, totalmem, type as osType } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import type { Subprocess } from "bun";
import { becomeSubreaper, monoMs, reap, usleep } from "./bench/sys.ts";

const ROOT = resolve(import.meta.dir, "..");
const BUN = process.execPath;
const FIXTURES = join(ROOT, "scripts/bench");
const TINY = join(FIXTURES, "tiny.ts");
const RESPAWN = join(FIXTURES, "respawn.ts");
const BARE = [BUN, "-e", "0"];
const GNU_TIME = "/usr/bin/time";

const SECTIONS = ["ready", "fds", "heap", "signals", "memory", "import"] as const;
type SectionId = (typeof SECTIONS)[number];

// ---------------------------------------------------------------- options

interface Options {
  runs: number;
  only: SectionId[];
  json: boolean;
}

function usage(): never {
  process.stderr.write(`usage: bun scripts/bench.ts [--runs N] [--only ${SECTIONS.join("|")}[,...]] [--json]\n`);
  process.exit(2);
}

function parseOptions(argv: string[]): Options {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: { runs: { type: "string" }, only: { type: "string" }, json: { type: "boolean" }, help: { type: "boolean", short: "h" } },
    }));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    usage();
  }
  if (values.help) usage();
  const runs = Number(values.runs ?? 30);
  if (!Number.isInteger(runs) || runs < 1) usage();
  const only = values.only === undefined ? [...SECTIONS] : values.only.split(",").map((s) => s.trim());
  for (const s of only) if (!(SECTIONS as readonly string[]).includes(s)) usage();
  return { runs, only: only as SectionId[], json: Boolean(values.json) };
}

// ---------------------------------------------------------------- results

interface Row {
  key: string;
  label: string;
  median: number;
  min: number;
  max: number;
  p25: number;
  p75: number;
  n: number;
  /** median / the reference row's median */
  ratio: number;
  samples: number[];
}

interface Table {
  title: string;
  unit: "ms" | "MiB";
  reference: string;
  rows: Row[];
}

interface Derived {
  label: string;
  value: number;
  unit: "×" | "ms" | "MiB";
  target?: string;
  met?: boolean;
}

interface Section {
  id: SectionId;
  title: string;
  tables: Table[];
  derived: Derived[];
  notes: string[];
}

/** Every sample of one section, by key. */
class Samples {
  private readonly byKey = new Map<string, number[]>();

  add(key: string, value: number): void {
    const list = this.byKey.get(key);
    if (list) list.push(value);
    else this.byKey.set(key, [value]);
  }

  get(key: string): number[] {
    return this.byKey.get(key) ?? [];
  }

  median(key: string): number {
    return summarize(this.get(key)).median;
  }
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const i = (sorted.length - 1) * q;
  const lo = sorted[Math.floor(i)]!;
  const hi = sorted[Math.ceil(i)]!;
  return lo + (hi - lo) * (i - Math.floor(i));
}

function summarize(xs: number[]) {
  const s = [...xs].sort((a, b) => a - b);
  return { median: quantile(s, 0.5), p25: quantile(s, 0.25), p75: quantile(s, 0.75), min: s[0] ?? NaN, max: s[s.length - 1] ?? NaN, n: s.length };
}

/** A table of the rows that have samples (a skipped variant simply has none). */
function table(title: string, unit: Table["unit"], s: Samples, rows: Array<[key: string, label: string]>, reference: string): Table {
  const ref = s.median(reference);
  const built = rows
    .filter(([key]) => s.get(key).length > 0)
    .map(([key, label]): Row => {
      const st = summarize(s.get(key));
      return { key, label, ...st, ratio: st.median / ref, samples: s.get(key) };
    });
  return { title, unit, reference: rows.find(([k]) => k === reference)?.[1] ?? reference, rows: built };
}

/** Relative interquartile half-range: what "within noise" means for one row. */
function noise(s: Samples, key: string): number {
  const st = summarize(s.get(key));
  return (st.p75 - st.p25) / 2 / st.median;
}

// ---------------------------------------------------------------- processes

/** Pids this run started: stopped by pid on the way out, whatever happens. */
const tracked = new Set<number>();

const childEnv: Record<string, string> = Object.fromEntries(
  // A NOTIFY_SOCKET of our own would make every benchmark daemon talk to systemd.
  Object.entries(process.env).filter((e): e is [string, string] => e[1] !== undefined && e[0] !== "NOTIFY_SOCKET"),
);

interface Ran {
  ms: number;
  stdout: string;
  stderr: string;
}

/** Run a command to completion: wall time from spawn to exit. Throws unless it exits 0. */
function timed(cmd: string[], env: Record<string, string> = {}): Ran {
  const t0 = performance.now();
  const r = Bun.spawnSync(cmd, { cwd: ROOT, env: { ...childEnv, ...env }, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const ms = performance.now() - t0;
  const out = { ms, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
  if (r.exitCode !== 0) throw new Error(`${cmd.join(" ")} exited ${r.exitCode ?? r.signalCode}:\n${out.stdout}${out.stderr}`);
  return out;
}

/**
 * Still running, as far as its resources go. A zombie thread-group leader is
 * not enough: its other threads (and with them its fds, its listening
 * socket) live on for a few ms; only "Z" with one thread left is gone.
 */
function alive(pid: number): boolean {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, "utf8");
  } catch {
    return false;
  }
  const state = /^State:\s*(\S)/m.exec(status)?.[1];
  const threads = Number(/^Threads:\s*(\d+)/m.exec(status)?.[1] ?? 1);
  return !((state === "Z" || state === "X") && threads <= 1);
}

/**
 * Busy-wait (0.1 ms steps) until `pid` has wholly exited. Synchronous on
 * purpose: an event-loop timer would add a millisecond of granularity.
 */
function waitGone(pid: number, ms: number): boolean {
  const end = performance.now() + ms;
  while (alive(pid)) {
    if (performance.now() > end) return false;
    usleep(100);
  }
  return true;
}

/** SIGTERM, then SIGKILL; only this pid. `reapIt` for daemons we adopted (not Bun's own children). */
function stopPid(pid: number, reapIt = true): void {
  for (const sig of ["SIGTERM", "SIGKILL"] as const) {
    if (!alive(pid)) break;
    try {
      process.kill(pid, sig);
    } catch {
      break;
    }
    if (waitGone(pid, 3000)) break;
  }
  if (reapIt) reap(pid);
  tracked.delete(pid);
}

async function stopChild(proc: Subprocess): Promise<void> {
  stopPid(proc.pid, false);
  await proc.exited;
}

function startedPid(stdout: string): number {
  const m = /started \S+ \(pid (\d+)\)/.exec(stdout);
  if (!m) throw new Error(`no "started NAME (pid N)" in: ${stdout}`);
  const pid = Number(m[1]);
  tracked.add(pid);
  return pid;
}

function statusKB(pid: number, field: "VmRSS" | "VmHWM"): number {
  const m = new RegExp(`^${field}:\\s*(\\d+)`, "m").exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  if (!m) throw new Error(`no ${field} for pid ${pid}`);
  return Number(m[1]);
}

// ---------------------------------------------------------------- ports, files, checks

let nextPort = 20000 + Math.floor(Math.random() * 9000);

function portFree(port: number): boolean {
  try {
    Bun.listen({ hostname: "127.0.0.1", port, socket: { data() {} } }).stop(true);
    return true;
  } catch {
    return false;
  }
}

/** A port in 20000-29999 nobody listens on; a new one per daemon, so no run waits on the last one's sockets. */
function freePort(): number {
  for (let i = 0; i < 10000; i++) {
    const port = nextPort;
    nextPort = nextPort >= 29999 ? 20000 : nextPort + 1;
    if (portFree(port)) return port;
  }
  throw new Error("no free port in 20000-29999");
}

let tmp = "";
let fileSeq = 0;
const tmpFile = (prefix: string) => join(tmp, `${prefix}-${++fileSeq}`);

/** A fresh port and PID file for one daemon. */
function slot() {
  return { port: freePort(), pidFile: tmpFile("pid") };
}

/** The daemon answers HTTP: time to ready means listening, not just "a process exists". */
async function verify(port: number): Promise<void> {
  const res = await fetch(`http://127.0.0.1:${port}/`, { headers: { connection: "close" }, signal: AbortSignal.timeout(3000) });
  const body = await res.text();
  if (res.status !== 200 || !body.startsWith("hello from")) throw new Error(`port ${port} answered ${res.status} ${JSON.stringify(body)}`);
}

function lines(path: string): string[] {
  try {
    return readFileSync(path, "utf8").split("\n").filter(Boolean);
  } catch {
    return [];
  }
}

/** What the fixture spent on its own launcher-side load (RLIMIT, fds, heap). */
function readSetup(path: string): { ms: number; rssMB: number } {
  return JSON.parse(readFileSync(path, "utf8")) as { ms: number; rssMB: number };
}

// ---------------------------------------------------------------- the daemons

const startArgs = (port: number, pidFile: string) => ["--port", String(port), "--pid-file", pidFile];

/** bun-daemon's `start`: returns once it has exited 0, i.e. once the daemon is ready. */
function startTiny(port: number, pidFile: string, env: Record<string, string> = {}, wrapper: string[] = []): { ms: number; pid: number } {
  const r = timed([...wrapper, BUN, TINY, "start", ...startArgs(port, pidFile)], env);
  return { ms: r.ms, pid: startedPid(r.stdout) };
}

/** Read `stream` until a line starting with READY; throws if it ends first or `ms` pass. */
async function readyLine(stream: ReadableStream<Uint8Array>, ms: number): Promise<void> {
  const reader = stream.getReader();
  const timer = setTimeout(() => void reader.cancel(), ms);
  const decoder = new TextDecoder();
  let seen = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`no READY line (output: ${JSON.stringify(seen)})`);
      seen += decoder.decode(value, { stream: true });
      if (/^READY\b/m.test(seen)) return;
    }
  } finally {
    clearTimeout(timer);
    reader.releaseLock();
  }
}

/** The same program in the foreground (`run`), timed until it says it is listening. */
async function foreground(port: number, pidFile: string, env: Record<string, string> = {}): Promise<{ proc: Subprocess; ms: number }> {
  const t0 = performance.now();
  const proc = Bun.spawn([BUN, TINY, "run", ...startArgs(port, pidFile)], {
    cwd: ROOT,
    env: { ...childEnv, ...env },
    stdin: "ignore",
    stdout: "pipe",
    stderr: Bun.file(join(tmp, "foreground.log")),
  });
  tracked.add(proc.pid);
  await readyLine(proc.stdout, 30_000);
  return { proc, ms: performance.now() - t0 };
}

/** The native floor, compiled for this run; undefined (with a note) without a C compiler. */
function compileCDaemon(notes: string[]): string | undefined {
  const cc = Bun.which("cc");
  if (!cc) {
    notes.push("No `cc` on PATH: the C double-fork daemon was skipped.");
    return undefined;
  }
  const out = join(tmp, "cdaemon");
  const r = Bun.spawnSync([cc, "-O2", "-o", out, join(FIXTURES, "cdaemon.c")], { stderr: "pipe" });
  if (r.exitCode !== 0) {
    notes.push(`\`cc\` failed on scripts/bench/cdaemon.c: the C variant was skipped (${r.stderr.toString().trim().split("\n")[0]}).`);
    return undefined;
  }
  return out;
}

// ---------------------------------------------------------------- marks (tiny.ts BENCH_MARKS)

/** Wall clock in ms, comparable with the marks tiny.ts writes (timeOrigin + now). */
const wallMs = () => performance.timeOrigin + performance.now();

/** "<first|daemon> <origin|main|listening> <ms>" lines → { "first origin": ms, ... } */
function readMarks(path: string): Record<string, number> {
  return Object.fromEntries(
    lines(path).map((l) => {
      const [who, what, at] = l.split(" ");
      return [`${who} ${what}`, Number(at)];
    }),
  );
}

/** Launcher main() → daemon runtime up: the part of `start` that forks, from a marks file. */
function detachMs(marksFile: string): number {
  const m = readMarks(marksFile);
  return (m["daemon origin"] ?? NaN) - (m["first main"] ?? NaN);
}

const DETACH_NOTE =
  "main() → daemon up: from tiny.ts's wall-clock marks (the launcher's just before main(), the daemon's `performance.timeOrigin`), the part of `start` where fork and execve work; it excludes both module loads, so it shows scaling with less noise.";

// ---------------------------------------------------------------- rounds

type Step = (s: Samples) => Promise<void>;

function progress(id: string, done: number, total: number): void {
  if (process.stderr.isTTY) process.stderr.write(`\r[${id}] round ${done}/${total}   `);
  else if (done === 0 || done === total) process.stderr.write(`[${id}] round ${done}/${total}\n`);
}

/** One warm-up round (discarded), then `runs` rounds of every step, the starting step rotating. */
async function interleave(id: string, runs: number, steps: Step[]): Promise<Samples> {
  const samples = new Samples();
  for (let round = -1; round < runs; round++) {
    const into = round < 0 ? new Samples() : samples;
    const first = Math.max(round, 0);
    for (let k = 0; k < steps.length; k++) await steps[(first + k) % steps.length]!(into);
    progress(id, round + 1, runs);
  }
  if (process.stderr.isTTY) process.stderr.write("\n");
  return samples;
}

// ---------------------------------------------------------------- 1. time to ready

const START_PHASES: Array<[key: string, label: string]> = [
  ["p-spawn", "spawn → launcher runtime up"],
  ["p-load", "launcher: runtime up → main() (loads the app and bun-daemon)"],
  ["p-detach", "launcher main() → daemon runtime up (CLI, libc, PID file, fork, setsid, fork, execve)"],
  ["p-dload", "daemon: runtime up → main()"],
  ["p-init", "daemon main() → listening (stage, CLI, lifecycle, init hook)"],
  ["p-ready", "listening → `start` exits (ready frame, launcher exit)"],
  ["p-total", "total"],
];

const FG_PHASES: Array<[key: string, label: string]> = [
  ["f-spawn", "spawn → runtime up"],
  ["f-load", "runtime up → main() (loads the app and bun-daemon)"],
  ["f-init", "main() → listening (CLI, PID file, lifecycle, init hook)"],
  ["f-ready", "listening → READY line read"],
  ["f-total", "total"],
];

/**
 * Where the time goes, from marks the fixture writes. Separate runs: the
 * marks cost little, but the headline figures are measured without them.
 */
async function phases(runs: number): Promise<Samples> {
  const steps: Step[] = [
    async (s) => {
      const { port, pidFile } = slot();
      const marks = tmpFile("marks");
      const t0 = wallMs();
      const d = startTiny(port, pidFile, { BENCH_MARKS: marks });
      const t1 = wallMs();
      const m = readMarks(marks);
      const at = (k: string) => m[k] ?? NaN;
      s.add("p-spawn", at("first origin") - t0);
      s.add("p-load", at("first main") - at("first origin"));
      s.add("p-detach", at("daemon origin") - at("first main"));
      s.add("p-dload", at("daemon main") - at("daemon origin"));
      s.add("p-init", at("daemon listening") - at("daemon main"));
      s.add("p-ready", t1 - at("daemon listening"));
      s.add("p-total", t1 - t0);
      stopPid(d.pid);
    },
    async (s) => {
      const { port, pidFile } = slot();
      const marks = tmpFile("marks");
      const t0 = wallMs();
      const fg = await foreground(port, pidFile, { BENCH_MARKS: marks });
      const t1 = wallMs();
      const m = readMarks(marks);
      const at = (k: string) => m[k] ?? NaN;
      s.add("f-spawn", at("first origin") - t0);
      s.add("f-load", at("first main") - at("first origin"));
      s.add("f-init", at("first listening") - at("first main"));
      s.add("f-ready", t1 - at("first listening"));
      s.add("f-total", t1 - t0);
      await stopChild(fg.proc);
    },
  ];
  return interleave("ready: phases", runs, steps);
}

async function timeToReady(o: Options): Promise<Section> {
  const notes: string[] = [];
  const cdaemon = compileCDaemon(notes);
  const steps: Step[] = [
    async (s) => s.add("bare", timed(BARE).ms),
    async (s) => {
      const { port, pidFile } = slot();
      const fg = await foreground(port, pidFile);
      await verify(port);
      s.add("fg", fg.ms);
      await stopChild(fg.proc);
    },
    async (s) => {
      const { port, pidFile } = slot();
      const d = startTiny(port, pidFile);
      await verify(port);
      s.add("start", d.ms);
      stopPid(d.pid);
    },
    async (s) => {
      const { port, pidFile } = slot();
      const r = timed([BUN, RESPAWN, TINY, "run", ...startArgs(port, pidFile)]);
      const pid = startedPid(r.stdout);
      await verify(port);
      s.add("respawn", r.ms);
      stopPid(pid);
    },
  ];
  if (cdaemon) {
    steps.push(async (s) => {
      const { port, pidFile } = slot();
      const r = timed([cdaemon, String(port), pidFile]);
      const pid = startedPid(r.stdout);
      await verify(port);
      s.add("c", r.ms);
      stopPid(pid);
    });
  }
  const s = await interleave("ready", o.runs, steps);
  const phaseRuns = Math.min(o.runs, 10);
  const p = await phases(phaseRuns);

  const bare = s.median("bare");
  const fg = s.median("fg");
  const start = s.median("start");
  const vsFloor = start / (bare + fg);
  const derived: Derived[] = [
    { label: "start / foreground", value: start / fg, unit: "×" },
    { label: "start / (2 × bare)", value: start / (2 * bare), unit: "×" },
    { label: "app's own init (foreground − bare)", value: fg - bare, unit: "ms" },
    {
      label: "start / (2 × bare + app's init) = start / (bare + foreground)",
      value: vsFloor,
      unit: "×",
      target: "≤ 1.25",
      met: vsFloor <= 1.25,
    },
    { label: "start / re-spawn", value: start / s.median("respawn"), unit: "×" },
  ];
  if (cdaemon) derived.push({ label: "start / C daemon", value: start / s.median("c"), unit: "×" });
  notes.push(
    "Every variant runs the same daemon (scripts/bench/tiny.ts: `Bun.serve` on 127.0.0.1 in its init hook), except the C one.",
    "`start`, re-spawn, C and bare: wall time from spawn to exit 0 of the command (each exits once its daemon is ready). Foreground: from spawn to the READY line its ready hook prints. After each timing the port is checked with an HTTP GET, then the daemon is stopped.",
    "`bun -e ''` prints Bun's usage text without starting the JS runtime (4.7 MB RSS), so the bare start is `bun -e 0`.",
    `Phases: ${phaseRuns} separate runs each of \`start\` and the foreground, instrumented by tiny.ts with wall-clock marks (\`performance.timeOrigin\` is when each runtime came up); × is the share of the total.`,
  );
  return {
    id: "ready",
    title: "1. Time to ready",
    tables: [
      table("Time to ready", "ms", s, [
        ["fg", "foreground `run` until listening"],
        ["start", "`start` (bun-daemon: fork, setsid, fork, execve, readiness pipe)"],
        ["respawn", "re-spawn (`Bun.spawn` detached, ready line on a pipe)"],
        ["c", "C double-fork daemon, readiness pipe (native floor)"],
        ["bare", "bare runtime start (`bun -e 0`)"],
      ], "fg"),
      table("Where `start`'s time goes (instrumented runs)", "ms", p, START_PHASES, "p-total"),
      table("Where the foreground's time goes (instrumented runs)", "ms", p, FG_PHASES, "f-total"),
    ],
    derived,
    notes,
  };
}

// ---------------------------------------------------------------- 2. inherited fds

/** The highest hard RLIMIT_NOFILE we can give the launcher: 1 048 576 if the kernel and our privileges allow. */
function nofileCeiling(notes: string[]): number {
  const want = 1_048_576;
  const nrOpen = Number(readFileSync("/proc/sys/fs/nr_open", "utf8").trim());
  const hardText = /^Max open files\s+\S+\s+(\S+)/m.exec(readFileSync("/proc/self/limits", "utf8"))?.[1] ?? "1024";
  const hard = hardText === "unlimited" ? nrOpen : Number(hardText);
  const capEff = BigInt(`0x${/^CapEff:\s*([0-9a-f]+)/m.exec(readFileSync("/proc/self/status", "utf8"))?.[1] ?? "0"}`);
  const canRaise = ((capEff >> 24n) & 1n) === 1n; // CAP_SYS_RESOURCE
  const ceiling = canRaise ? Math.min(want, nrOpen) : Math.min(want, hard);
  if (ceiling < want) {
    notes.push(
      `**Hard RLIMIT_NOFILE is ${fmt(ceiling)}, not ${fmt(want)}**: ${canRaise ? `fs.nr_open is ${nrOpen}` : "no CAP_SYS_RESOURCE here, so the inherited hard limit cannot be raised"}. The largest fd count is capped to fit it.`,
    );
  }
  return ceiling;
}

async function inheritedFds(o: Options): Promise<Section> {
  const notes: string[] = [];
  const limit = nofileCeiling(notes);
  const most = limit >= 50_000 + 512 ? 50_000 : Math.floor((limit - 512) / 1000) * 1000;
  const variants = [
    { key: "small-limit", fds: 10, nofile: 1024, label: "10 fds, hard limit 1 024" },
    { key: "10", fds: 10, nofile: limit, label: `10 fds, hard limit ${fmt(limit)}` },
    { key: "1000", fds: 1000, nofile: limit, label: `1 000 fds, hard limit ${fmt(limit)}` },
    { key: "most", fds: most, nofile: limit, label: `${fmt(most)} fds, hard limit ${fmt(limit)}` },
  ].filter((v) => v.fds + 512 <= v.nofile && (v.key !== "most" || most > 1000));
  const steps: Step[] = variants.map((v) => async (s) => {
    const { port, pidFile } = slot();
    const log = tmpFile("setup");
    const marks = tmpFile("marks");
    const d = startTiny(port, pidFile, { BENCH_NOFILE: String(v.nofile), BENCH_FDS: String(v.fds), BENCH_SETUP_LOG: log, BENCH_MARKS: marks });
    const setup = readSetup(log);
    s.add(v.key, d.ms - setup.ms);
    s.add(`${v.key}:detach`, detachMs(marks));
    s.add(`${v.key}:setup`, setup.ms);
    s.add(`${v.key}:daemon-fds`, readdirSync(`/proc/${d.pid}/fd`).length);
    await verify(port);
    stopPid(d.pid);
  });
  const s = await interleave("fds", o.runs, steps);

  const last = variants[variants.length - 1]!;
  // "Within noise": the ratio is off 1 by less than the rows' own spread.
  const flat = (label: string, key: string, ref: string): Derived => {
    const ratio = s.median(key) / s.median(ref);
    const tolerance = Math.max(0.05, noise(s, key), noise(s, ref));
    return { label, value: ratio, unit: "×", target: `flat, within noise: ±${(tolerance * 100).toFixed(0)} %`, met: Math.abs(ratio - 1) <= tolerance };
  };
  notes.push(
    "The launcher (the `start` process) sets its RLIMIT_NOFILE and dup()s /dev/null to hold the fds, not close-on-exec, before main(). Whole `start`: the wall time minus that setup, which the fixture measures itself (median " +
      variants.map((v) => `${v.label}: ${s.median(`${v.key}:setup`).toFixed(1)} ms`).join("; ") + ").",
    DETACH_NOTE,
    `Open fds in the daemon (median): ${variants.map((v) => `${v.label}: ${s.median(`${v.key}:daemon-fds`)}`).join("; ")}. None of the launcher's fds reach it.`,
  );
  return {
    id: "fds",
    title: "2. Scaling with inherited fds",
    tables: [
      table("`start` wall time − fixture setup, N fds open in the launcher", "ms", s, variants.map((v) => [v.key, v.label]), "10"),
      table("Of which: launcher main() → daemon runtime up (fork, fork, execve)", "ms", s, variants.map((v) => [`${v.key}:detach`, v.label]), "10:detach"),
    ],
    derived: [
      flat(`${fmt(last.fds)} / 10 fds, whole \`start\``, last.key, "10"),
      flat(`${fmt(last.fds)} / 10 fds, main() → daemon up`, `${last.key}:detach`, "10:detach"),
      flat(`hard limit ${fmt(limit)} / 1 024 (10 fds), whole \`start\``, "10", "small-limit"),
      flat(`hard limit ${fmt(limit)} / 1 024 (10 fds), main() → daemon up`, "10:detach", "small-limit:detach"),
    ],
    notes,
  };
}

// ---------------------------------------------------------------- 3. launcher memory

async function launcherMemory(o: Options): Promise<Section> {
  const variants = [
    { key: "0", mb: 0, label: "no extra heap" },
    { key: "50", mb: 50, label: "50 MiB live heap" },
    { key: "500", mb: 500, label: "500 MiB live heap" },
    { key: "2048", mb: 2048, label: "2 GiB live heap" },
  ];
  const steps: Step[] = variants.map((v) => async (s) => {
    const { port, pidFile } = slot();
    const log = tmpFile("setup");
    const marks = tmpFile("marks");
    const env: Record<string, string> = v.mb ? { BENCH_HEAP_MB: String(v.mb), BENCH_SETUP_LOG: log, BENCH_MARKS: marks } : { BENCH_MARKS: marks };
    const d = startTiny(port, pidFile, env);
    const exited = wallMs();
    const setup = v.mb ? readSetup(log) : { ms: 0, rssMB: 0 };
    s.add(v.key, d.ms - setup.ms);
    s.add(`${v.key}:detach`, detachMs(marks));
    s.add(`${v.key}:exit`, exited - (readMarks(marks)["daemon listening"] ?? NaN));
    s.add(`${v.key}:setup`, setup.ms);
    s.add(`${v.key}:rss`, setup.rssMB);
    s.add(`${v.key}:daemon-rss`, statusKB(d.pid, "VmRSS") / 1024);
    await verify(port);
    stopPid(d.pid);
  });
  const s = await interleave("heap", o.runs, steps);

  const extra = (key: string) => s.median(key) - s.median("0");
  const extraDetach = (key: string) => s.median(`${key}:detach`) - s.median("0:detach");
  const extraExit = (key: string) => s.median(`${key}:exit`) - s.median("0:exit");
  const loaded = variants.filter((v) => v.mb);
  return {
    id: "heap",
    title: "3. Scaling with launcher memory",
    tables: [
      table("`start` wall time − fixture setup, live heap in the launcher", "ms", s, variants.map((v) => [v.key, v.label]), "0"),
      table("Of which: launcher main() → daemon runtime up (fork, fork, execve)", "ms", s, variants.map((v) => [`${v.key}:detach`, v.label]), "0:detach"),
      table("Of which: daemon listening → `start` exits (ready frame, launcher exit)", "ms", s, variants.map((v) => [`${v.key}:exit`, v.label]), "0:exit"),
    ],
    derived: [
      ...loaded.map((v): Derived => ({ label: `${v.label}: extra time, whole \`start\``, value: extra(v.key), unit: "ms" })),
      ...loaded.map((v): Derived => ({ label: `${v.label}: extra time, main() → daemon up`, value: extraDetach(v.key), unit: "ms" })),
      ...loaded.map((v): Derived => ({ label: `${v.label}: extra time, listening → \`start\` exits`, value: extraExit(v.key), unit: "ms" })),
      { label: "cost per GiB of launcher heap, whole `start` (from the 2 GiB point)", value: extra("2048") / 2, unit: "ms" },
    ],
    notes: [
      "Before main(), the launcher allocates the heap in 1 MiB Buffers and writes every page (untouched pages would cost fork nothing). Whole `start`: the wall time minus that allocation, which the fixture measures itself (median " +
        loaded.map((v) => `${v.mb} MiB: ${s.median(`${v.key}:setup`).toFixed(0)} ms`).join(", ") + ").",
      DETACH_NOTE,
      "Listening → `start` exits: until the caller has reaped the launcher, i.e. including the kernel freeing the launcher's memory at its exit.",
      `Launcher VmRSS after allocating (median): ${loaded.map((v) => `${v.mb} MiB: ${s.median(`${v.key}:rss`).toFixed(0)} MiB`).join(", ")}. The daemon's own VmRSS stays ${variants.map((v) => s.median(`${v.key}:daemon-rss`).toFixed(0)).join(" / ")} MiB: the heap is not carried across execve.`,
    ],
  };
}

// ---------------------------------------------------------------- 4. signals

/** ms from our SIGHUP to the first line of the daemon's reload hook (both on CLOCK_MONOTONIC). */
async function hupLatency(pid: number, log: string): Promise<number> {
  const before = lines(log).length;
  const t0 = monoMs();
  process.kill(pid, "SIGHUP");
  // The hook stamps its own start: polling slowly here costs no precision.
  const end = performance.now() + 5000;
  while (lines(log).length === before) {
    if (performance.now() > end) throw new Error(`pid ${pid}: no reload hook within 5 s of SIGHUP`);
    await Bun.sleep(2);
  }
  return Number(lines(log).at(-1)) - t0;
}

function termToGone(pid: number): number {
  const t0 = performance.now();
  process.kill(pid, "SIGTERM");
  if (!waitGone(pid, 10_000)) throw new Error(`pid ${pid} still alive 10 s after SIGTERM`);
  return performance.now() - t0;
}

async function signals(o: Options): Promise<Section> {
  let round = 0;
  // Stateful: the daemons of one round serve several measurements, so one
  // step per round; daemon and foreground alternate which goes first.
  const step: Step = async (s) => {
    const flip = round++ % 2 === 1;
    const a = { ...slot(), hup: tmpFile("hup") };
    const b = slot();
    const f = { ...slot(), hup: tmpFile("hup") };
    const da = startTiny(a.port, a.pidFile, { BENCH_HUP_LOG: a.hup });
    const db = startTiny(b.port, b.pidFile);
    const fg = await foreground(f.port, f.pidFile, { BENCH_HUP_LOG: f.hup });
    await Bun.sleep(50); // let ready hooks and startup GC settle

    const hups: Array<[string, () => Promise<number>]> = [
      ["hup-daemon", () => hupLatency(da.pid, a.hup)],
      ["hup-fg", () => hupLatency(fg.proc.pid, f.hup)],
    ];
    for (const [key, measure] of flip ? hups.reverse() : hups) s.add(key, await measure());

    s.add("bare", timed(BARE).ms);
    s.add("status", timed([BUN, TINY, "status", "--pid-file", a.pidFile]).ms);

    const terms: Array<[string, number]> = [
      ["term-daemon", da.pid],
      ["term-fg", fg.proc.pid],
    ];
    for (const [key, pid] of flip ? terms.reverse() : terms) s.add(key, termToGone(pid));

    s.add("stop", timed([BUN, TINY, "stop", "--pid-file", b.pidFile]).ms);
    if (alive(db.pid)) throw new Error(`\`stop\` exited 0 but pid ${db.pid} is alive`);

    stopPid(da.pid);
    stopPid(db.pid);
    await stopChild(fg.proc);
  };
  const s = await interleave("signals", o.runs, [step]);
  return {
    id: "signals",
    title: "4. Signal to hook latency",
    tables: [
      table("SIGHUP → reload hook starts", "ms", s, [["hup-daemon", "daemon (`start`)"], ["hup-fg", "foreground (`run`)"]], "hup-fg"),
      table("SIGTERM → process gone (empty shutdown hook)", "ms", s, [["term-daemon", "daemon (`start`)"], ["term-fg", "foreground (`run`)"]], "term-fg"),
      table("Control commands, wall time", "ms", s, [
        ["bare", "bare runtime start (`bun -e 0`)"],
        ["status", "`status` (daemon running)"],
        ["stop", "`stop` (SIGTERM, wait until gone)"],
      ], "bare"),
    ],
    derived: [{ label: "`stop` − bare − SIGTERM→gone (daemon)", value: s.median("stop") - s.median("bare") - s.median("term-daemon"), unit: "ms" }],
    notes: [
      "SIGHUP: the reload hook appends CLOCK_MONOTONIC at its first line; the benchmark reads the same clock just before kill(2).",
      "SIGTERM → gone: kill(2), then /proc/PID/status polled every 0.1 ms until the last thread has exited (a zombie leader whose other threads still run still holds its fds and port).",
      "Each round starts two daemons and one foreground process (untimed), takes the measurements above from them, then stops them; daemon and foreground alternate which is measured first.",
    ],
  };
}

// ---------------------------------------------------------------- 5. memory

/** GNU time, whose fork (not vfork) gives a child maxrss that is the child's own. */
function hasGnuTime(): boolean {
  if (!existsSync(GNU_TIME)) return false;
  return Bun.spawnSync([GNU_TIME, "-f", "%M", "-o", "/dev/null", "true"]).exitCode === 0;
}

function maxRssMiB(file: string): number {
  const kb = Number(readFileSync(file, "utf8").trim().split("\n").at(-1));
  if (!Number.isFinite(kb)) throw new Error(`no max RSS in ${file}`);
  return kb / 1024;
}

async function memory(o: Options): Promise<Section> {
  const notes: string[] = [];
  const gnuTime = hasGnuTime();
  if (!gnuTime) notes.push(`No GNU time at ${GNU_TIME}: launcher and bare peak RSS were skipped.`);
  let round = 0;
  const step: Step = async (s) => {
    const flip = round++ % 2 === 1;
    const d = slot();
    const f = slot();
    const launcherLog = tmpFile("time");
    const startIt = () => startTiny(d.port, d.pidFile, {}, gnuTime ? [GNU_TIME, "-f", "%M", "-o", launcherLog] : []);
    const fgIt = () => foreground(f.port, f.pidFile);
    let daemon: { pid: number };
    let fg: { proc: Subprocess };
    if (flip) {
      fg = await fgIt();
      daemon = startIt();
    } else {
      daemon = startIt();
      fg = await fgIt();
    }
    await Bun.sleep(300); // past ready hooks and the first GC
    s.add("rss-daemon", statusKB(daemon.pid, "VmRSS") / 1024);
    s.add("rss-fg", statusKB(fg.proc.pid, "VmRSS") / 1024);
    s.add("hwm-daemon", statusKB(daemon.pid, "VmHWM") / 1024);
    s.add("hwm-fg", statusKB(fg.proc.pid, "VmHWM") / 1024);
    if (gnuTime) {
      s.add("peak-launcher", maxRssMiB(launcherLog));
      const bareLog = tmpFile("time");
      timed([GNU_TIME, "-f", "%M", "-o", bareLog, ...BARE]);
      s.add("peak-bare", maxRssMiB(bareLog));
    }
    stopPid(daemon.pid);
    await stopChild(fg.proc);
  };
  const s = await interleave("memory", o.runs, [step]);
  notes.push(
    "VmRSS and VmHWM from /proc/PID/status 300 ms after ready. Launcher and bare peaks: maxrss from GNU time (Bun.spawn's resourceUsage().maxRSS is useless here: a vfork-spawned child reports the parent's RSS when that is higher).",
  );
  const derived: Derived[] = [{ label: "daemon VmRSS − foreground VmRSS", value: s.median("rss-daemon") - s.median("rss-fg"), unit: "MiB" }];
  if (gnuTime) derived.push({ label: "launcher peak / bare peak", value: s.median("peak-launcher") / s.median("peak-bare"), unit: "×" });
  return {
    id: "memory",
    title: "5. Memory",
    tables: [
      table("Resident set after ready", "MiB", s, [["rss-daemon", "daemon (`start`) VmRSS"], ["rss-fg", "foreground (`run`) VmRSS"]], "rss-fg"),
      table("Peak resident set", "MiB", s, [
        ["hwm-daemon", "daemon VmHWM"],
        ["hwm-fg", "foreground VmHWM"],
        ["peak-launcher", "launcher (`start` process) maxrss"],
        ["peak-bare", "bare `bun -e 0` maxrss"],
      ], "hwm-fg"),
    ],
    derived,
    notes,
  };
}

// ---------------------------------------------------------------- 6. import

async function importCost(o: Options): Promise<Section> {
  const steps: Step[] = [
    async (s) => s.add("empty", timed([BUN, join(FIXTURES, "empty.ts")]).ms),
    async (s) => s.add("deps", timed([BUN, join(FIXTURES, "import-deps.ts")]).ms),
    async (s) => s.add("import", timed([BUN, join(FIXTURES, "import.ts")]).ms),
  ];
  const s = await interleave("import", o.runs, steps);
  const probe = JSON.parse(timed([BUN, join(FIXTURES, "import-probe.ts")]).stdout) as {
    same: boolean;
    before: Record<string, unknown>;
    after: Record<string, unknown>;
  };
  const notes = [
    probe.same
      ? `No work at import: open fds, caught/ignored/blocked signals and libc mappings are the same before and after \`await import("bun-daemon")\` (scripts/bench/import-probe.ts; threads ${probe.before.threads} → ${probe.after.threads} are Bun's own, loader and JIT, and not compared).`
      : `**Importing bun-daemon changed the process**: before ${JSON.stringify(probe.before)}, after ${JSON.stringify(probe.after)}.`,
  ];
  return {
    id: "import",
    title: "6. Import cost",
    tables: [
      table("Whole process, spawn to exit", "ms", s, [
        ["empty", "empty script"],
        ["deps", "its dependencies only (`citty`, `consola/core`)"],
        ["import", '`import "bun-daemon"`'],
      ], "empty"),
    ],
    derived: [
      { label: "import − empty", value: s.median("import") - s.median("empty"), unit: "ms" },
      { label: "of which dependencies", value: s.median("deps") - s.median("empty"), unit: "ms" },
    ],
    notes,
  };
}

// ---------------------------------------------------------------- machine

function firstLine(cmd: string[]): string | undefined {
  try {
    const r = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe" });
    return r.exitCode === 0 ? r.stdout.toString().split("\n")[0]?.trim() : undefined;
  } catch {
    return undefined;
  }
}

function machineInfo() {
  const cpuinfo = readFileSync("/proc/cpuinfo", "utf8");
  const thp = (() => {
    try {
      return /\[(\w+)\]/.exec(readFileSync("/sys/kernel/mm/transparent_hugepage/enabled", "utf8"))?.[1];
    } catch {
      return undefined;
    }
  })();
  const head = firstLine(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]);
  const dirty = Bun.spawnSync(["git", "-C", ROOT, "status", "--porcelain", "--", "src"], { stdout: "pipe", stderr: "ignore" }).stdout.toString().trim() !== "";
  return {
    date: new Date().toISOString(),
    code: head ? `${head}${dirty ? " + uncommitted changes in src/" : ""}` : "unknown (not a git checkout)",
    nproc: Number(firstLine(["nproc"]) ?? navigator.hardwareConcurrency),
    cpu: /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1] ?? "unknown",
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    kernel: `${osType()} ${release()} ${cpuArch()}`,
    bun: `${Bun.version} (${Bun.revision.slice(0, 9)})`,
    cc: Bun.which("cc") ? (firstLine(["cc", "--version"]) ?? "present") : "absent",
    transparentHugepages: thp ?? "unknown",
    loadAverageAtStart: loadavg().map((x) => Math.round(x * 100) / 100),
    loadAverageAtEnd: [] as number[],
  };
}

// ---------------------------------------------------------------- output

/** 1 048 576, as the issue writes numbers. */
function fmt(n: number): string {
  return n.toLocaleString("en-US").replaceAll(",", " ");
}

function num(v: number, unit: string): string {
  if (!Number.isFinite(v)) return "n/a";
  if (unit === "×") return v.toFixed(2);
  const a = Math.abs(v);
  return a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : v.toFixed(2);
}

function markdownTable(t: Table): string {
  const counts = [...new Set(t.rows.map((r) => r.n))].join("/");
  const head = `**${t.title}** (${t.unit}, ${counts} runs each; × = median / median of ${t.reference})\n\n| variant | median | min | max | × |\n|---|--:|--:|--:|--:|`;
  const body = t.rows.map((r) => `| ${r.label} | ${num(r.median, t.unit)} | ${num(r.min, t.unit)} | ${num(r.max, t.unit)} | ${num(r.ratio, "×")} |`);
  return [head, ...body].join("\n");
}

function markdownSection(sec: Section): string {
  const parts = [`### ${sec.title}`, ...sec.tables.map((t) => markdownTable(t))];
  if (sec.derived.length) {
    parts.push(
      sec.derived
        .map((d) => {
          const value = d.unit === "×" ? `${num(d.value, "×")}×` : `${num(d.value, d.unit)} ${d.unit}`;
          const target = d.target ? ` (target ${d.target}${d.met === undefined ? "" : d.met ? ": met" : ": **missed**"})` : "";
          return `- ${d.label}: **${value}**${target}`;
        })
        .join("\n"),
    );
  }
  if (sec.notes.length) parts.push(sec.notes.map((n) => `- ${n}`).join("\n"));
  return parts.join("\n\n");
}

function markdown(report: Report): string {
  const m = report.machine;
  const machine = [
    `- Command: \`${report.command}\``,
    `- Date: ${m.date}; code: ${m.code}`,
    `- Machine: ${m.nproc} × ${m.cpu}, ${m.memoryGiB} GiB RAM, ${m.kernel}, transparent hugepages: ${m.transparentHugepages}`,
    `- Bun ${m.bun}; C compiler: ${m.cc}`,
    `- Load average at start / end: ${m.loadAverageAtStart.join(" ")} / ${m.loadAverageAtEnd.join(" ")}`,
    `- ${report.runs} runs per variant, interleaved (round-robin, rotating start), after one uncounted warm-up round. Medians, min and max; × is the ratio of medians to the table's reference.`,
  ].join("\n");
  return [`## Latest run`, machine, ...report.sections.map((s) => markdownSection(s))].join("\n\n") + "\n";
}

interface Report {
  command: string;
  runs: number;
  machine: ReturnType<typeof machineInfo>;
  sections: Section[];
}

// ---------------------------------------------------------------- main

const RUNNERS: Record<SectionId, (o: Options) => Promise<Section>> = {
  ready: timeToReady,
  fds: inheritedFds,
  heap: launcherMemory,
  signals,
  memory,
  import: importCost,
};

function cleanup(): void {
  for (const pid of [...tracked]) stopPid(pid);
  if (tmp) rmSync(tmp, { recursive: true, force: true });
}

async function main(): Promise<void> {
  const o = parseOptions(process.argv.slice(2));
  if (process.platform !== "linux") throw new Error("the benchmarks read /proc: Linux only");
  tmp = mkdtempSync(join(tmpdir(), "bun-daemon-bench-"));
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.on(sig, () => {
      cleanup();
      process.exit(130);
    });
  }
  if (!becomeSubreaper()) process.stderr.write("warning: not a child subreaper; daemons are left to pid 1 to reap\n");

  const report: Report = {
    command: ["bun", "scripts/bench.ts", ...process.argv.slice(2)].join(" "),
    runs: o.runs,
    machine: machineInfo(),
    sections: [],
  };
  try {
    for (const id of SECTIONS) if (o.only.includes(id)) report.sections.push(await RUNNERS[id](o));
  } finally {
    cleanup();
  }
  report.machine.loadAverageAtEnd = loadavg().map((x) => Math.round(x * 100) / 100);
  process.stdout.write(o.json ? `${JSON.stringify(report, null, 2)}\n` : markdown(report));
}

await main();
