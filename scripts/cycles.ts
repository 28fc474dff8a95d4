/**
 * Start/stop cycles of one daemon through the CLI, each checked from outside
 * (exit codes, the PID file, its flock in /proc/locks, /proc/PID). A command
 * that does not finish within its timeout is a hang: it is SIGKILLed (by pid)
 * and counted. The stress suite runs 200 cycles in CI
 * (test/stress/cycles.test.ts); run the full 1 000 by hand:
 *
 *   bun scripts/cycles.ts [--count 1000] [--timeout 30000]
 *
 * Prints a JSON report; exits 0 when every cycle passed and nothing was left behind.
 */
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
// The same outside-view readers as the tests (alive: until every thread is gone).
import { alive, isFlocked, pidsMentioning, stopPid } from "../test/helpers.ts";

const ROOT = resolve(import.meta.dir, "..");
export const CYCLE_APP = join(ROOT, "test/stress/fixtures/stress-app.ts");

export interface CycleOptions {
  count: number;
  /** Directory for the PID file (its path also identifies our processes). */
  dir: string;
  /** ms one start or stop may take before it counts as a hang. Default 30000. */
  timeoutMs?: number;
  onProgress?: (done: number, report: CycleReport) => void;
}

export interface CycleReport {
  cycles: number;
  ok: number;
  hangs: number;
  failures: string[];
  /** Live processes mentioning the PID file path after the last cycle (should be none). */
  leftover: number[];
  ms: number;
  startMs: { p50: number; p99: number; max: number };
  stopMs: { p50: number; p99: number; max: number };
}

interface Outcome {
  code: number | null; // null: hung and killed
  stdout: string;
  stderr: string;
  ms: number;
}

async function exec(cmd: string[], timeoutMs: number): Promise<Outcome> {
  const t0 = performance.now();
  const p = Bun.spawn(cmd, { cwd: ROOT, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  let hung = false;
  const timer = setTimeout(() => {
    hung = true;
    p.kill("SIGKILL");
  }, timeoutMs);
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  clearTimeout(timer);
  return { code: hung ? null : code, stdout, stderr, ms: performance.now() - t0 };
}

function pidIn(path: string): number | undefined {
  try {
    const m = /^(\d+)\n$/.exec(readFileSync(path, "utf8"));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

function exists(path: string): boolean {
  try {
    statSync(path);
    return true;
  } catch {
    return false;
  }
}

function stats(xs: number[]) {
  const s = [...xs].sort((a, b) => a - b);
  const at = (q: number) => Math.round(s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? 0);
  return { p50: at(0.5), p99: at(0.99), max: Math.round(s.at(-1) ?? 0) };
}

export async function runCycles(o: CycleOptions): Promise<CycleReport> {
  const timeoutMs = o.timeoutMs ?? 30_000;
  const pidFile = join(o.dir, "cycles.pid");
  const app = [process.execPath, CYCLE_APP];
  const starts: number[] = [];
  const stops: number[] = [];
  const report: CycleReport = { cycles: 0, ok: 0, hangs: 0, failures: [], leftover: [], ms: 0, startMs: stats([]), stopMs: stats([]) };
  // Every daemon pid this run learnt (start's output, the PID file): the only
  // processes it may stop. Command lines are searched to report leftovers, never to kill.
  const ours = new Set<number>();
  const learn = (p: number | undefined) => {
    if (p !== undefined && Number.isInteger(p) && p > 1) ours.add(p);
  };
  const t0 = performance.now();

  for (let i = 1; i <= o.count; i++) {
    report.cycles = i;
    const problems: string[] = [];
    const start = await exec([...app, "start", "--pid-file", pidFile], timeoutMs);
    starts.push(start.ms);
    const pid = Number(/^started stress \(pid (\d+)\)$/m.exec(start.stdout)?.[1] ?? NaN);
    learn(pid);
    learn(pidIn(pidFile));
    if (start.code === null) {
      report.hangs++;
      problems.push(`start hung (> ${timeoutMs} ms)`);
    } else if (start.code !== 0 || !Number.isInteger(pid)) {
      problems.push(`start exited ${start.code}: ${start.stderr.trim()}`);
    } else {
      if (pidIn(pidFile) !== pid) problems.push(`PID file holds ${JSON.stringify(exists(pidFile) ? readFileSync(pidFile, "utf8") : null)}, not ${pid}`);
      if (!alive(pid)) problems.push(`daemon ${pid} is not alive after start`);
      if (!exists(pidFile) || !isFlocked(pidFile)) problems.push("PID file not locked after start");
    }

    const stop = await exec([...app, "stop", "--pid-file", pidFile, "--timeout", String(Math.ceil(timeoutMs / 1000))], timeoutMs + 5000);
    stops.push(stop.ms);
    if (stop.code === null) {
      report.hangs++;
      problems.push(`stop hung (> ${timeoutMs} ms)`);
    } else if (stop.code !== 0) {
      problems.push(`stop exited ${stop.code}: ${stop.stderr.trim()}`);
    } else if (Number.isInteger(pid)) {
      if (!stop.stdout.includes(`stopped stress (pid ${pid})`)) problems.push(`stop said ${JSON.stringify(stop.stdout.trim())}`);
      if (alive(pid)) problems.push(`daemon ${pid} still alive after stop`);
    }
    if (exists(pidFile)) problems.push("PID file left after stop");

    if (problems.length === 0) {
      report.ok++;
    } else {
      report.failures.push(`cycle ${i}: ${problems.join("; ")}`);
      // Recover so the next cycle starts clean: only pids we learnt.
      for (const p of ours) await stopPid(p);
      rmSync(pidFile, { force: true });
    }
    o.onProgress?.(i, report);
  }

  report.ms = Math.round(performance.now() - t0);
  report.startMs = stats(starts);
  report.stopMs = stats(stops);
  report.leftover = pidsMentioning(pidFile);
  for (const p of ours) await stopPid(p);
  return report;
}

if (import.meta.main) {
  const arg = (name: string, fallback: number) => {
    const i = process.argv.indexOf(`--${name}`);
    const v = i >= 0 ? Number(process.argv[i + 1]) : fallback;
    if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} takes a positive number`);
    return v;
  };
  const count = arg("count", 1000);
  const dir = mkdtempSync(join(tmpdir(), "bun-daemon-cycles-"));
  try {
    const report = await runCycles({
      count,
      dir,
      timeoutMs: arg("timeout", 30_000),
      onProgress: (done, r) => {
        if (done % 100 === 0 || done === count) console.error(`${done}/${count}: ok ${r.ok}, hangs ${r.hangs}, failures ${r.failures.length}`);
      },
    });
    console.log(JSON.stringify(report, null, 2));
    process.exitCode = report.ok === count && report.hangs === 0 && report.leftover.length === 0 ? 0 : 1;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
