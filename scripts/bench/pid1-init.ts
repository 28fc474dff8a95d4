/**
 * PID 1 of a private pid namespace, for the pid1 section of scripts/bench.ts:
 *
 *   unshare --pid --fork --mount-proc --kill-child -- [env --default-signal] bun scripts/bench/pid1-init.ts MODE
 *
 * MODE: reap (startReaper() with its defaults: SIGCHLD and a 1 s sweep),
 * off (no reaper), tick (no reaper, an empty 1 s setInterval: the event
 * loop waking as often as the reaper's sweep, with nothing to do). Once set
 * up (in reap mode, once the reaper's start-up child is gone) it prints
 * "READY <json>" and idles on stdin, where each line is a command answered
 * with one JSON line. CPU time is getrusage(RUSAGE_SELF)'s user + sys
 * (process.cpuUsage(): every thread, those that ended too, in µs).
 *
 *   burst N WINDOW_MS
 *     A shell leaves N orphans to PID 1 (each a `cat` of one pipe, so none
 *     can end before they all do) and exits. Once all N run and 100 ms have
 *     passed, this process's CPU time is read, the pipe's write end
 *     closed (all N exit at once) and, WINDOW_MS later, the CPU time read
 *     again. Answers that CPU in µs, how many the reaper reaped in the
 *     window and when the sweep that reaped the last one ended, and what
 *     was left; zombies the reaper did not take (off) are then reaped,
 *     untimed, so each burst starts from none.
 *
 * Exits 0 at EOF on stdin, or on SIGTERM (an init is sent only the signals
 * it has a handler for).
 */
import { readdirSync, readFileSync } from "node:fs";
import { closeFd, pipe, reapExited } from "../../src/ffi.ts";
import { startReaper, type Reaper } from "../../src/reaper.ts";

const mode = process.argv[2];
if (mode !== "reap" && mode !== "off" && mode !== "tick") {
  process.stderr.write("usage: bun scripts/bench/pid1-init.ts reap|off|tick (as PID 1 of a pid namespace)\n");
  process.exit(2);
}
const fail = (msg: string): never => {
  process.stderr.write(`pid1-init.ts: ${msg}\n`);
  process.exit(1);
};
if (process.pid !== 1) fail(`must be PID 1 of its pid namespace (is ${process.pid}); run it under unshare --pid --fork --mount-proc`);
// Inherited SIG_IGN for SIGCHLD would make the kernel discard every orphan
// itself: "off" would leave no zombie and "reap" find nothing to do.
const sigIgn = /^SigIgn:\s*([0-9a-f]+)/m.exec(readFileSync("/proc/self/status", "utf8"))?.[1] ?? "0";
if ((BigInt(`0x${sigIgn}`) >> 16n) & 1n) fail("SIGCHLD is ignored (inherited from the parent): run it under env --default-signal");
process.on("SIGTERM", () => process.exit(0));

const out = (o: unknown) => process.stdout.write(`${JSON.stringify(o)}\n`);

/** This process's children (every thread's), live or zombie. */
function children(): number[] {
  const pids: number[] = [];
  for (const tid of readdirSync("/proc/self/task")) {
    try {
      for (const p of readFileSync(`/proc/self/task/${tid}/children`, "utf8").split(" ")) if (p.trim()) pids.push(Number(p));
    } catch {
      // A thread that ended between the listing and the read has no children to list.
    }
  }
  return pids;
}

function stat(pid: number): { state: string; cmd: string } | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, "utf8");
    return { state: s.slice(s.lastIndexOf(")") + 2)[0] ?? "?", cmd: s.slice(s.indexOf("(") + 1, s.lastIndexOf(")")) };
  } catch {
    return undefined;
  }
}

/** CPU time of the whole process, µs: summing each thread's schedstat would lose the threads the runtime ends when idle (JIT workers, the collector). */
function cpuUs(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

async function until(cond: () => boolean, ms: number): Promise<boolean> {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) return false;
    await Bun.sleep(5);
  }
  return true;
}

// The reaper's debug line per sweep that reaped: when the burst's last orphan went.
let reaper: Reaper | undefined;
let target: number | undefined;
let doneAt: number | undefined;
let reapingSweeps = 0;
const warns: string[] = [];
const log = {
  warn: (m: string) => warns.push(m),
  debug: (m: string) => {
    if (!m.startsWith("reaped ")) return;
    reapingSweeps++;
    if (target !== undefined && doneAt === undefined && (reaper?.reaped ?? 0) >= target) doneAt = performance.now();
  },
};

if (mode === "reap") {
  reaper = startReaper({ log });
  // Its start-up child (`true`) is the runtime's to reap: let it, before READY.
  if (reaper && !(await until(() => children().length === 0, 10_000))) fail("the reaper's start-up child was never reaped");
}
if (mode === "tick") setInterval(() => {}, 1000);

const STAGE_SETTLE_MS = 100;

async function burst(n: number, windowMs: number) {
  if (!(Number.isInteger(n) && n > 0 && windowMs > 0)) throw new Error(`burst takes N > 0 and WINDOW_MS > 0, not ${n} ${windowMs}`);
  if (children().length) throw new Error(`children left from before: ${children().join(" ")}`);
  const [r, w] = pipe("orphan pipe");
  // A background job's stdin is /dev/null: the pipe goes to each cat as fd 3.
  const shell = Bun.spawn(["sh", "-c", `exec 3<&0; i=0; while [ $i -lt ${n} ]; do cat <&3 >/dev/null & i=$((i+1)); done; exit 0`], {
    stdin: r,
    stdout: "ignore",
    stderr: "ignore",
  });
  closeFd(r);
  const code = await shell.exited;
  // A shell can exit before its last forks have exec'd cat.
  const cats = () => children().filter((p) => { const s = stat(p); return s?.cmd === "cat" && s.state !== "Z"; }).length;
  if (code !== 0 || !(await until(() => cats() === n, 10_000))) {
    closeFd(w);
    throw new Error(`the orphan-making shell exited ${code}; ${cats()} of ${n} cats running`);
  }
  // The shell's SIGCHLD (and the sweep it triggers) is over before the window.
  await Bun.sleep(STAGE_SETTLE_MS);
  const before = reaper?.reaped ?? 0;
  const sweeps0 = reapingSweeps;
  target = before + n;
  doneAt = undefined;
  const cpu0 = cpuUs();
  const t0 = performance.now();
  closeFd(w);
  await Bun.sleep(windowMs);
  const t1 = performance.now();
  const cpu1 = cpuUs();
  target = undefined;
  const kids = children();
  const zombies = kids.filter((p) => stat(p)?.state === "Z");
  let cleaned = 0;
  for (const pid of zombies) if (reapExited(pid)) cleaned++;
  return {
    n,
    cpuUs: cpu1 - cpu0,
    windowMs: t1 - t0,
    reaped: (reaper?.reaped ?? 0) - before,
    doneMs: doneAt === undefined ? null : doneAt - t0,
    reapingSweeps: reapingSweeps - sweeps0,
    zombies: zombies.length,
    live: kids.length - zombies.length,
    cleaned,
  };
}

process.stdout.write(`READY ${JSON.stringify({ mode, started: reaper !== undefined, warns })}\n`);
for await (const line of console) {
  const [cmd, a, b] = line.trim().split(/\s+/);
  if (!cmd) continue;
  try {
    if (cmd === "burst") out(await burst(Number(a), Number(b)));
    else out({ error: `unknown command ${JSON.stringify(line)}` });
  } catch (err) {
    out({ error: (err as Error).message });
  }
}
process.exit(0);
