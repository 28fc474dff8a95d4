/**
 * Part 2 of the fork-hang evaluation: `start` of the GC-busy fixture N times
 * against whatever src/ is now. Each start is bounded (a launcher still
 * running after --bound ms is a hang: it is diagnosed, then it and its
 * descendants are SIGKILLed); each started daemon is checked (/proc, the PID
 * file) and stopped by pid, SIGTERM then SIGKILL. This process is a child
 * subreaper, so every descendant that outlives its parent comes back here
 * and is stopped too. PID files live in a fresh temp dir.
 *
 *   bun scripts/bench/fork-hang/start-loop.ts [N=3000] [--bound 20000] [--app PATH]
 *
 * Prints one JSON line: {n, ok, hung, failed, medianStartMs, ...}.
 */
import { dlopen, FFIType as T, ptr } from "bun:ffi";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const args = process.argv.slice(2);
const opt = (name: string, dflt: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1]! : dflt;
};
const N = Number(args.find((a) => /^\d+$/.test(a)) ?? 3000);
const BOUND = Number(opt("--bound", "20000"));
const APP = opt("--app", join(import.meta.dir, "gc-busy-app.ts"));

const l = dlopen("libc.so.6", {
  prctl: { args: [T.i32, T.u64, T.u64, T.u64, T.u64], returns: T.i32 },
  waitpid: { args: [T.i32, T.ptr, T.i32], returns: T.i32 },
  kill: { args: [T.i32, T.i32], returns: T.i32 },
}).symbols;
l.prctl(36, 1, 0, 0, 0); // PR_SET_CHILD_SUBREAPER
const wst = new Int32Array(1);

function readOr(path: string): string {
  try {
    return readFileSync(path, "utf8").trim();
  } catch (e) {
    return `(${(e as NodeJS.ErrnoException).code})`;
  }
}
function stat(pid: number): string[] | undefined {
  const s = readOr(`/proc/${pid}/stat`);
  if (s.startsWith("(")) return undefined;
  return s.slice(s.lastIndexOf(")") + 2).split(" ");
}
/** Alive and not a zombie. */
function alive(pid: number): boolean {
  const f = stat(pid);
  return f !== undefined && f[0] !== "Z";
}
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    const f = stat(Number(d));
    if (f && Number(f[1]) === pid) out.push(Number(d));
  }
  return out;
}
function descendants(pid: number): number[] {
  const out: number[] = [];
  for (const c of childrenOf(pid)) out.push(c, ...descendants(c));
  return out;
}
function diagnose(pid: number): Record<string, unknown> {
  const f = stat(pid) ?? [];
  return {
    pid,
    comm: readOr(`/proc/${pid}/comm`),
    state: f[0],
    ppid: f[1],
    threads: readOr(`/proc/${pid}/status`).match(/Threads:\s+(\d+)/)?.[1],
    wchan: readOr(`/proc/${pid}/wchan`),
    syscall: readOr(`/proc/${pid}/syscall`),
    stack: readOr(`/proc/${pid}/stack`).split("\n").slice(0, 8),
  };
}
/** Reap our own exited children that Bun does not wait for (reparented orphans). */
function reap(pids: number[]): void {
  for (const pid of pids) l.waitpid(pid, ptr(wst), 1);
}
/** SIGTERM, up to 5 s, SIGKILL; then reap if it is ours. */
async function stop(pid: number): Promise<"term" | "kill" | "gone"> {
  if (!alive(pid)) return (reap([pid]), "gone");
  l.kill(pid, 15);
  for (let i = 0; i < 500 && alive(pid); i++) {
    reap([pid]);
    await Bun.sleep(10);
  }
  let how: "term" | "kill" = "term";
  if (alive(pid)) {
    l.kill(pid, 9);
    how = "kill";
    for (let i = 0; i < 200 && alive(pid); i++) await Bun.sleep(10);
  }
  reap([pid]);
  return how;
}

const dir = mkdtempSync(join(tmpdir(), "fork-hang-start-"));
const bun = process.execPath;
let ok = 0;
let hung = 0;
let failed = 0;
let killedAtStop = 0;
let badPid = 0;
let retried = 0;
const retryLines: string[] = [];
const times: number[] = [];
const diags: unknown[] = [];
const failures: string[] = [];
const t0 = performance.now();

for (let i = 0; i < N; i++) {
  const pidFile = join(dir, `d${i % 50}.pid`);
  const ts = performance.now();
  const argv = [bun, APP, "start", "--pid-file", pidFile];
  const proc = Bun.spawn(argv, { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
  }, BOUND);
  // Poll, so a hang is seen (and diagnosed) while the processes still hang.
  while (proc.exitCode === null && proc.signalCode === null && !timedOut) await Bun.sleep(2);
  clearTimeout(timer);
  if (timedOut) {
    hung++;
    const tree = [proc.pid, ...descendants(proc.pid), ...childrenOf(process.pid).filter((p) => p !== proc.pid)];
    if (diags.length < 3) diags.push({ start: i, procs: tree.map(diagnose) });
    for (const pid of tree) l.kill(pid, 9);
    await proc.exited;
    for (const pid of tree) await stop(pid);
  } else {
    await proc.exited;
    const ms = performance.now() - ts;
    const out = await new Response(proc.stdout).text();
    const err = await new Response(proc.stderr).text();
    const m = /started \S+ \(pid (\d+)\)/.exec(out);
    const filePid = Number(readOr(pidFile).split("\n")[0]);
    // The launcher says so on stderr when it killed a hung child and forked again.
    if (/hung/.test(err)) {
      retried++;
      if (retryLines.length < 5) retryLines.push(`start ${i} (${ms.toFixed(0)} ms): ${err.trim().slice(0, 300)}`);
    }
    if (proc.exitCode === 0 && m) {
      const pid = Number(m[1]);
      if (filePid !== pid || !alive(pid)) {
        badPid++;
        if (failures.length < 5) failures.push(`start ${i}: pid ${pid} file says ${filePid}, alive ${alive(pid)}`);
      }
      ok++;
      times.push(ms);
      if ((await stop(pid)) === "kill") killedAtStop++;
    } else {
      failed++;
      if (failures.length < 5) failures.push(`start ${i}: exit ${proc.exitCode} sig ${proc.signalCode}: ${(out + err).trim().slice(0, 300)}`);
      if (filePid > 0 && alive(filePid)) await stop(filePid);
    }
  }
  // Anything else that came back to us (an orphaned intermediate or daemon).
  for (const pid of childrenOf(process.pid)) if (pid !== proc.pid) await stop(pid);
  if ((i + 1) % 250 === 0) {
    console.error(`${i + 1}/${N}: ok ${ok} hung ${hung} failed ${failed} retried ${retried} (${((performance.now() - t0) / 1000).toFixed(0)} s)`);
  }
}
rmSync(dir, { recursive: true, force: true });
const sorted = [...times].sort((x, y) => x - y);
console.log(
  JSON.stringify({
    n: N,
    ok,
    hung,
    failed,
    badPid,
    retried,
    killedAtStop,
    boundMs: BOUND,
    medianStartMs: +(sorted[Math.floor(sorted.length / 2)] ?? NaN).toFixed(1),
    p99StartMs: +(sorted[Math.floor(sorted.length * 0.99)] ?? NaN).toFixed(1),
    wallS: +((performance.now() - t0) / 1000).toFixed(0),
    failures,
    retryLines,
    diags,
  }),
);
process.exit(hung || failed ? 1 : 0);
