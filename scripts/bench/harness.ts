/**
 * What every benchmark section shares: interleaved rounds, medians and
 * ratios, the run's temp dir, ports, and stopping every process the run
 * started by its pid (SIGTERM, then SIGKILL), whatever happens.
 */
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Subprocess } from "bun";
import { reap, usleep } from "./sys.ts";

export const ROOT = resolve(import.meta.dir, "../..");
export const BUN = process.execPath;
export const FIXTURES = join(ROOT, "scripts/bench");
export const TINY = join(FIXTURES, "tiny.ts");
export const RESPAWN = join(FIXTURES, "respawn.ts");
export const BARE = [BUN, "-e", "0"];
export const GNU_TIME = "/usr/bin/time";

// ---------------------------------------------------------------- options

export interface Options {
  /** --runs; undefined: each section's own default. */
  runs: number | undefined;
  json: boolean;
}

/** Rounds for a section: --runs if given, else the section's default. */
export const runsOf = (o: Options, fallback = 30): number => o.runs ?? fallback;

// ---------------------------------------------------------------- results

export interface Row {
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

export interface Table {
  title: string;
  unit: "ms" | "MiB" | "µs";
  reference: string;
  rows: Row[];
}

export interface Derived {
  label: string;
  value: number;
  unit: "×" | "ms" | "MiB" | "µs";
  target?: string;
  met?: boolean;
}

export interface Section {
  id: string;
  title: string;
  /** Markdown shown before the tables: a section's own overview, when its tables are long. */
  summary?: string;
  tables: Table[];
  derived: Derived[];
  notes: string[];
}

/** Every sample of one section, by key. */
export class Samples {
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

export function summarize(xs: number[]) {
  const s = [...xs].sort((a, b) => a - b);
  return { median: quantile(s, 0.5), p25: quantile(s, 0.25), p75: quantile(s, 0.75), min: s[0] ?? NaN, max: s[s.length - 1] ?? NaN, n: s.length };
}

/** A table of the rows that have samples (a skipped variant simply has none). */
export function table(title: string, unit: Table["unit"], s: Samples, rows: Array<[key: string, label: string]>, reference: string): Table {
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
export function noise(s: Samples, key: string): number {
  const st = summarize(s.get(key));
  return (st.p75 - st.p25) / 2 / st.median;
}

// ---------------------------------------------------------------- processes

/** Pids this run started: stopped by pid on the way out, whatever happens. */
export const tracked = new Set<number>();

export const childEnv: Record<string, string> = Object.fromEntries(
  // A NOTIFY_SOCKET of our own would make every benchmark daemon talk to systemd.
  Object.entries(process.env).filter((e): e is [string, string] => e[1] !== undefined && e[0] !== "NOTIFY_SOCKET"),
);

export interface Ran {
  ms: number;
  stdout: string;
  stderr: string;
}

/** Run a command to completion: wall time from spawn to exit. Throws unless it exits 0. */
export function timed(cmd: string[], env: Record<string, string> = {}, cwd = ROOT): Ran {
  const t0 = performance.now();
  const r = Bun.spawnSync(cmd, { cwd, env: { ...childEnv, ...env }, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
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
export function alive(pid: number): boolean {
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
export function waitGone(pid: number, ms: number): boolean {
  const end = performance.now() + ms;
  while (alive(pid)) {
    if (performance.now() > end) return false;
    usleep(100);
  }
  return true;
}

/** SIGTERM, then SIGKILL; only this pid. `reapIt` for daemons we adopted (not Bun's own children). */
export function stopPid(pid: number, reapIt = true): void {
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

export async function stopChild(proc: Subprocess): Promise<void> {
  stopPid(proc.pid, false);
  await proc.exited;
}

export function startedPid(stdout: string): number {
  const m = /started \S+ \(pid (\d+)\)/.exec(stdout);
  if (!m) throw new Error(`no "started NAME (pid N)" in: ${stdout}`);
  const pid = Number(m[1]);
  tracked.add(pid);
  return pid;
}

export function statusKB(pid: number, field: "VmRSS" | "VmHWM"): number {
  const m = new RegExp(`^${field}:\\s*(\\d+)`, "m").exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  if (!m) throw new Error(`no ${field} for pid ${pid}`);
  return Number(m[1]);
}

/** Run on the way out (after every tracked pid is stopped, before the temp dir goes). */
export const cleanups: Array<() => void> = [];

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
export function freePort(): number {
  for (let i = 0; i < 10000; i++) {
    const port = nextPort;
    nextPort = nextPort >= 29999 ? 20000 : nextPort + 1;
    if (portFree(port)) return port;
  }
  throw new Error("no free port in 20000-29999");
}

let tmp = "";
let fileSeq = 0;

/** The run's temp dir (removed at the end); set once by the runner. */
export function setTmp(dir: string): void {
  tmp = dir;
}
export const tmpDir = () => tmp;
export const tmpFile = (prefix: string) => join(tmp, `${prefix}-${++fileSeq}`);

/** A fresh port and PID file for one daemon. */
export function slot() {
  return { port: freePort(), pidFile: tmpFile("pid") };
}

/** The daemon answers HTTP: time to ready means listening, not just "a process exists". */
export async function verify(port: number): Promise<void> {
  const res = await fetch(`http://127.0.0.1:${port}/`, { headers: { connection: "close" }, signal: AbortSignal.timeout(3000) });
  const body = await res.text();
  if (res.status !== 200 || !body.startsWith("hello from")) throw new Error(`port ${port} answered ${res.status} ${JSON.stringify(body)}`);
}

/** One TCP connect to 127.0.0.1:port: true once it is accepted. */
export function portAnswers(port: number): Promise<boolean> {
  return new Promise((done) => {
    Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: {
        open(sock) {
          sock.end();
          done(true);
        },
        data() {},
        error() {
          done(false);
        },
        connectError() {
          done(false);
        },
      },
    }).catch(() => done(false));
  });
}

/** Until a TCP connect to `port` is accepted (retrying every ~1 ms); throws after `ms`. */
export async function waitPort(port: number, ms = 10_000): Promise<void> {
  const end = performance.now() + ms;
  while (!(await portAnswers(port))) {
    if (performance.now() > end) throw new Error(`nothing answers on 127.0.0.1:${port} after ${ms} ms`);
    await Bun.sleep(1);
  }
}

export function lines(path: string): string[] {
  try {
    return readFileSync(path, "utf8").split("\n").filter(Boolean);
  } catch {
    return [];
  }
}

/** What the fixture spent on its own launcher-side load (RLIMIT, fds, heap). */
export function readSetup(path: string): { ms: number; rssMB: number } {
  return JSON.parse(readFileSync(path, "utf8")) as { ms: number; rssMB: number };
}

// ---------------------------------------------------------------- the daemons

export const startArgs = (port: number, pidFile: string) => ["--port", String(port), "--pid-file", pidFile];

/** bun-daemon's `start`: returns once it has exited 0, i.e. once the daemon is ready. */
export function startTiny(port: number, pidFile: string, env: Record<string, string> = {}, wrapper: string[] = []): { ms: number; pid: number } {
  const r = timed([...wrapper, BUN, TINY, "start", ...startArgs(port, pidFile)], env);
  return { ms: r.ms, pid: startedPid(r.stdout) };
}

/** Read `stream` until what it printed matches `re`; returns that output. Throws if it ends first or `ms` pass. */
export async function readUntil(stream: ReadableStream<Uint8Array>, re: RegExp, ms: number): Promise<string> {
  const reader = stream.getReader();
  const timer = setTimeout(() => void reader.cancel(), ms);
  const decoder = new TextDecoder();
  let seen = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`never printed ${re} (output: ${JSON.stringify(seen)})`);
      seen += decoder.decode(value, { stream: true });
      if (re.test(seen)) return seen;
    }
  } finally {
    clearTimeout(timer);
    reader.releaseLock();
  }
}

/** Read `stream` until a line starting with READY. */
export async function readyLine(stream: ReadableStream<Uint8Array>, ms: number): Promise<void> {
  await readUntil(stream, /^READY\b/m, ms);
}

/**
 * A command in the foreground, timed from spawn until it prints a READY
 * line (and, with `port`, until that port also accepts a connection).
 */
export async function foregroundCmd(cmd: string[], env: Record<string, string> = {}, port?: number): Promise<{ proc: Subprocess; ms: number }> {
  const t0 = performance.now();
  const proc = Bun.spawn(cmd, {
    cwd: ROOT,
    env: { ...childEnv, ...env },
    stdin: "ignore",
    stdout: "pipe",
    stderr: Bun.file(join(tmp, "foreground.log")),
  });
  tracked.add(proc.pid);
  await readyLine(proc.stdout, 30_000);
  if (port !== undefined) await waitPort(port);
  return { proc, ms: performance.now() - t0 };
}

/** tiny.ts in the foreground (`run`), timed until it says it is listening. */
export function foreground(port: number, pidFile: string, env: Record<string, string> = {}): Promise<{ proc: Subprocess; ms: number }> {
  return foregroundCmd([BUN, TINY, "run", ...startArgs(port, pidFile)], env);
}

/** The native floor, compiled for this run; undefined (with a note) without a C compiler. */
export function compileCDaemon(notes: string[]): string | undefined {
  const out = join(tmp, "cdaemon");
  if (existsSync(out)) return out;
  const cc = Bun.which("cc");
  if (!cc) {
    notes.push("No `cc` on PATH: the C double-fork daemon was skipped.");
    return undefined;
  }
  const r = Bun.spawnSync([cc, "-O2", "-o", out, join(FIXTURES, "cdaemon.c")], { stderr: "pipe" });
  if (r.exitCode !== 0) {
    notes.push(`\`cc\` failed on scripts/bench/cdaemon.c: the C variant was skipped (${r.stderr.toString().trim().split("\n")[0]}).`);
    return undefined;
  }
  return out;
}

// ---------------------------------------------------------------- marks (tiny.ts BENCH_MARKS)

/** Wall clock in ms, comparable with the marks tiny.ts writes (timeOrigin + now). */
export const wallMs = () => performance.timeOrigin + performance.now();

/** "<first|daemon> <origin|main|listening> <ms>" lines → { "first origin": ms, ... } */
export function readMarks(path: string): Record<string, number> {
  return Object.fromEntries(
    lines(path).map((l) => {
      const [who, what, at] = l.split(" ");
      return [`${who} ${what}`, Number(at)];
    }),
  );
}

/** Launcher main() → daemon runtime up: the part of `start` that forks, from a marks file. */
export function detachMs(marksFile: string): number {
  const m = readMarks(marksFile);
  return (m["daemon origin"] ?? NaN) - (m["first main"] ?? NaN);
}

export const DETACH_NOTE =
  "main() → daemon up: from tiny.ts's wall-clock marks (the launcher's just before main(), the daemon's `performance.timeOrigin`), the part of `start` where fork and execve work; it excludes both module loads, so it shows scaling with less noise.";

// ---------------------------------------------------------------- rounds

export type Step = (s: Samples) => Promise<void>;

function progress(id: string, done: number, total: number): void {
  if (process.stderr.isTTY) process.stderr.write(`\r[${id}] round ${done}/${total}   `);
  else if (done === 0 || done === total || done % 5 === 0) process.stderr.write(`[${id}] round ${done}/${total}\n`);
}

/** One warm-up round (discarded), then `runs` rounds of every step, the starting step rotating. */
export async function interleave(id: string, runs: number, steps: Step[]): Promise<Samples> {
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

// ---------------------------------------------------------------- numbers

/** 1 048 576, as the issue writes numbers. */
export function fmt(n: number): string {
  return n.toLocaleString("en-US").replaceAll(",", " ");
}

export function num(v: number, unit: string): string {
  if (!Number.isFinite(v)) return "n/a";
  if (unit === "×") return v.toFixed(2);
  const a = Math.abs(v);
  return a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : v.toFixed(2);
}
