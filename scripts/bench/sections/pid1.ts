/**
 * 11. PID 1 and probes (issue 12): the orphan reaper's CPU per idle second
 * and per burst of orphans, with bun-daemon's reaper as the init of a
 * private pid namespace; then an exec readiness probe (`status --ready`)
 * beside HTTP probes of /readyz, CPU and wall time per call for the prober
 * and for the daemon probed.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { BunFile, Subprocess } from "bun";
import {
  BARE, BUN, FIXTURES, ROOT, Samples, childEnv, freePort, interleave, runsOf, stopChild, stopPid, table, tmpFile, tracked,
  type Derived, type Options, type Section, type Step, type Table,
} from "../harness.ts";
import { monoMs } from "../sys.ts";

const INIT = join(FIXTURES, "pid1-init.ts");
const FETCH = join(FIXTURES, "pid1-fetch.ts");
const HELLO = join(ROOT, "examples/hello.ts");
/** Orphans per burst, and how long after their release PID 1's CPU is counted (the reaper takes a zombie on its second look, ≥ 50 ms after the first). */
const BURST = 100;
const BURST_WINDOW_MS = 300;
/** Idle CPU: one window per round, read from outside. */
const IDLE_WINDOW_MS = 10_000;
/** The first idle window starts at least this long after the inits are up. */
const IDLE_SETTLE_MS = 40_000;
/** Calls per round: probe processes (each a fresh process), and in-process fetches (after 5 uncounted ones). */
const PROC_BATCH = 10;
const FETCH_BATCH = 200;
const FETCH_WARMUP = 5;
/** The paced fetch variant: calls this far apart (about a probe process's run), so the daemon idles between requests as with the process probes. */
const PACE_MS = 10;
const PACED_BATCH = 20;

// ---------------------------------------------------------------- helpers

/**
 * Reads other processes' CPU clocks: clock_gettime() of
 * clock_getcpuclockid(pid) (glibc's ((~pid) << 3) | 2), ns of every thread
 * of the process, those that ended too, without waking it. One line of
 * pids in, one line of ns out (-1: no such process). python3, because the
 * benchmark's own libc calls (scripts/bench/sys.ts) have no such clock.
 */
const CPU_CLOCKS = `
import sys, time
for line in sys.stdin:
    out = []
    for p in line.split():
        try:
            out.append(str(time.clock_gettime_ns(((~int(p)) << 3) | 2)))
        except OSError:
            out.append("-1")
    sys.stdout.write(" ".join(out) + "\\n")
    sys.stdout.flush()
`;

/** CPU time of whole processes, ns, as a running total per pid: only differences between two reads mean anything. */
interface CpuReader {
  /** How it reads, for the notes. */
  how: string;
  read(pids: number[]): Promise<number[]>;
  stop(): Promise<void>;
}

function clockReader(python: string): CpuReader {
  const d = spawnDriven([python, "-c", CPU_CLOCKS], "the python3 CPU-clock reader");
  return {
    how: "clock_gettime() of each process's CPU clock (clock_getcpuclockid(); ns, every thread, those that ended too), read by a python3 helper so the process is not woken",
    async read(pids) {
      d.proc.stdin.write(`${pids.join(" ")}\n`);
      await d.proc.stdin.flush();
      const ns = (await d.lines.next(10_000)).trim().split(" ").map(Number);
      ns.forEach((v, k) => {
        if (!(v >= 0)) throw new Error(`no CPU clock for pid ${pids[k]}: it has exited`);
      });
      return ns;
    },
    stop: () => stopChild(d.proc),
  };
}

/**
 * Without python3: /proc/PID/task/TID/schedstat run times, summed per
 * thread between reads. Not a difference of sums: the runtime ends idle
 * threads (JIT workers, the collector) and their whole past would come off
 * a sum. A thread that ended in between loses its time since the last read.
 */
function schedstatReader(): CpuReader {
  const seen = new Map<number, { last: Map<string, number>; total: number }>();
  return {
    how: "/proc/PID/task/TID/schedstat run times summed per thread between reads (no python3 for the CPU clock: a thread that ended in between loses its time since the read before)",
    async read(pids) {
      return pids.map((pid) => {
        const now = new Map<string, number>();
        for (const tid of readdirSync(`/proc/${pid}/task`)) {
          try {
            now.set(tid, Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ")[0]));
          } catch {
            // A thread that exited between the listing and the read.
          }
        }
        const st = seen.get(pid) ?? { last: new Map<string, number>(), total: 0 };
        for (const [tid, ns] of now) st.total += ns - (st.last.get(tid) ?? 0);
        st.last = now;
        seen.set(pid, st);
        return st.total;
      });
    },
    stop: async () => {},
  };
}

function cpuReader(): CpuReader {
  const python = Bun.which("python3");
  return python ? clockReader(python) : schedstatReader();
}

/** Lines of a child's stdout, one at a time, each within a deadline. */
interface Lines {
  next(ms: number): Promise<string>;
}

function lineReader(stream: ReadableStream<Uint8Array>, what: string): Lines {
  const reader = stream.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  return {
    async next(ms) {
      const end = performance.now() + ms;
      for (;;) {
        const i = buf.indexOf("\n");
        if (i >= 0) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          return line;
        }
        let timer: ReturnType<typeof setTimeout> | undefined;
        const late = new Promise<"late">((done) => (timer = setTimeout(() => done("late"), Math.max(0, end - performance.now()))));
        const r = await Promise.race([reader.read(), late]).finally(() => clearTimeout(timer));
        if (r === "late") throw new Error(`${what}: no answer within ${ms} ms`);
        if (r.done) throw new Error(`${what}: its output ended (so far: ${JSON.stringify(buf)})`);
        buf += decoder.decode(r.value, { stream: true });
      }
    },
  };
}

/** A long-lived child that reads commands from stdin and answers each with one JSON line. */
interface Driven {
  proc: Subprocess<"pipe", "pipe", BunFile>;
  lines: Lines;
  err: string;
}

function spawnDriven(cmd: string[], what: string): Driven {
  const err = tmpFile("pid1.err");
  const proc = Bun.spawn(cmd, { cwd: ROOT, env: childEnv, stdin: "pipe", stdout: "pipe", stderr: Bun.file(err) });
  tracked.add(proc.pid);
  return { proc, lines: lineReader(proc.stdout, what), err };
}

const errTail = (d: Driven) => {
  try {
    return readFileSync(d.err, "utf8").trim().split("\n").slice(-3).join(" | ");
  } catch {
    return "";
  }
};

async function ask<T>(d: Driven, cmd: string, ms: number): Promise<T> {
  d.proc.stdin.write(`${cmd}\n`);
  await d.proc.stdin.flush();
  const line = await d.lines.next(ms);
  let o: T & { error?: string };
  try {
    o = JSON.parse(line) as T & { error?: string };
  } catch {
    throw new Error(`${cmd}: answered ${JSON.stringify(line)}, not one JSON line (${errTail(d)})`);
  }
  if (o.error) throw new Error(`${cmd}: ${o.error}`);
  return o;
}

/** One process run to exit: wall µs from spawn to exit, and its own CPU (user + sys from wait4's rusage), µs. */
function call(cmd: string[]): { wallUs: number; cpuUs: number; stdout: string } {
  const t0 = performance.now();
  const r = Bun.spawnSync(cmd, { cwd: ROOT, env: childEnv, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const wallUs = (performance.now() - t0) * 1000;
  const stdout = r.stdout.toString();
  if (r.exitCode !== 0) throw new Error(`${cmd.join(" ")} exited ${r.exitCode ?? r.signalCode}: ${stdout}${r.stderr.toString()}`);
  const u = r.resourceUsage.cpuTime;
  return { wallUs, cpuUs: Number(u.user + u.system), stdout };
}

// ---------------------------------------------------------------- 1. the reaper as PID 1

type Mode = "reap" | "off" | "tick";

interface Init extends Driven {
  mode: Mode;
  /** The namespace's PID 1, as our /proc numbers it. */
  pid: number;
  started: boolean;
  warns: string[];
}

interface Burst {
  n: number;
  cpuUs: number;
  windowMs: number;
  reaped: number;
  doneMs: number | null;
  reapingSweeps: number;
  zombies: number;
  live: number;
  cleaned: number;
}

/** Why the namespace part cannot run here, or undefined. */
function pid1Unavailable(): string | undefined {
  if (process.getuid?.() !== 0) return "not root (a private pid namespace needs CAP_SYS_ADMIN)";
  if (!Bun.which("unshare")) return "no `unshare` (util-linux) on PATH";
  const r = Bun.spawnSync(["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", "--", "true"], { stdin: "ignore", stdout: "ignore", stderr: "pipe" });
  if (r.exitCode !== 0) return `\`unshare --pid --fork --mount-proc true\` failed: ${r.stderr.toString().trim().split("\n")[0]}`;
  return undefined;
}

async function startInit(mode: Mode, envCmd: string[]): Promise<Init> {
  const d = spawnDriven(["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", "--", ...envCmd, BUN, INIT, mode], `pid1-init.ts ${mode}`);
  let first: string;
  try {
    first = await d.lines.next(30_000);
  } catch (err) {
    throw new Error(`${(err as Error).message}: ${errTail(d)}`);
  }
  if (!first.startsWith("READY ")) throw new Error(`pid1-init.ts ${mode} did not start: ${first} ${errTail(d)}`);
  const ready = JSON.parse(first.slice(6)) as { started: boolean; warns: string[] };
  // unshare --fork's one child; env execs bun in place.
  const kids = readFileSync(`/proc/${d.proc.pid}/task/${d.proc.pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
  const pid = kids[0];
  if (kids.length !== 1 || pid === undefined || !/^NSpid:\s*\d+\s+1\s*$/m.test(readFileSync(`/proc/${pid}/status`, "utf8"))) {
    throw new Error(`unshare (pid ${d.proc.pid}) has children ${JSON.stringify(kids)}, not one PID 1 of a namespace`);
  }
  // Stopped first: the init exits on SIGTERM, and unshare (which blocks SIGTERM) with it.
  tracked.delete(d.proc.pid);
  tracked.add(pid);
  tracked.add(d.proc.pid);
  return { ...d, mode, pid, ...ready };
}

async function stopInit(i: Init): Promise<void> {
  stopPid(i.pid, false);
  // unshare ends once its child has: this only waits for that.
  await stopChild(i.proc);
}

/** The five inits, up for the whole section. */
interface Inits {
  burst: { reap: Init; off: Init };
  idle: { reap: Init; off: Init; tick: Init };
  all: Init[];
  /** When the last one was up (monoMs). */
  upAt: number;
  defaultSignal: boolean;
}

/**
 * Start the inits, or say in `notes` why not (undefined). Started before
 * the probe part, which gives them time to settle: a fresh runtime spends
 * its first ~30 s on JIT and GC work even with nothing to do.
 */
async function startInits(notes: string[]): Promise<Inits | undefined> {
  const why = pid1Unavailable();
  if (why) {
    notes.push(`The reaper as PID 1 was skipped: ${why}.`);
    return undefined;
  }
  // env --default-signal resets inherited ignored signals; without it the init checks that SIGCHLD is not ignored.
  const defaultSignal = Bun.spawnSync(["env", "--default-signal", "true"], { stdout: "ignore", stderr: "ignore" }).exitCode === 0;
  const envCmd = defaultSignal ? ["env", "--default-signal"] : [];
  const all: Init[] = [];
  const start = async (m: Mode) => {
    const i = await startInit(m, envCmd);
    all.push(i);
    return i;
  };
  try {
    const reap = await start("reap");
    if (!reap.started) {
      notes.push(`The reaper as PID 1 was skipped: startReaper() refused (${reap.warns.join("; ") || "no reason given"}).`);
      await stopInits(all);
      return undefined;
    }
    const burst = { reap, off: await start("off") };
    const idle = { reap: await start("reap"), off: await start("off"), tick: await start("tick") };
    return { burst, idle, all, upAt: monoMs(), defaultSignal };
  } catch (err) {
    await stopInits(all);
    throw err;
  }
}

async function stopInits(all: Init[]): Promise<void> {
  for (const i of all) await stopInit(i);
}

async function reaperPart(inits: Inits, runs: number, cpu: CpuReader, tables: Table[], derived: Derived[], notes: string[]): Promise<void> {
  const { burst, idle, defaultSignal } = inits;
  const bursts: Burst[] = [];
  const burstStep = (i: Init, key: string): Step => async (s) => {
    const b = await ask<Burst>(i, `burst ${BURST} ${BURST_WINDOW_MS}`, 30_000);
    bursts.push(b);
    if (i.mode === "reap" && (b.reaped !== BURST || b.zombies !== 0 || b.live !== 0 || b.doneMs === null)) {
      throw new Error(`burst with the reaper: ${b.reaped} of ${BURST} reaped within ${BURST_WINDOW_MS} ms (${b.zombies} zombies, ${b.live} running left)`);
    }
    if (i.mode === "off" && (b.zombies !== BURST || b.cleaned !== BURST || b.live !== 0)) {
      throw new Error(`burst without the reaper: ${b.zombies} of ${BURST} zombies after ${BURST_WINDOW_MS} ms (${b.live} still running, ${b.cleaned} reaped after)`);
    }
    s.add(`burst-${key}`, b.cpuUs);
    if (b.doneMs !== null) s.add(`done-${key}`, b.doneMs);
  };
  const steps: Step[] = [
    burstStep(burst.reap, "reap"),
    burstStep(burst.off, "off"),
    async (s) => {
      const c = call(BARE);
      s.add("bare-cpu", c.cpuUs);
      s.add("bare-wall", c.wallUs / 1000);
    },
    async (s) => {
      const all = [idle.reap, idle.off, idle.tick];
      const c0 = await cpu.read(all.map((i) => i.pid));
      const t0 = monoMs();
      await Bun.sleep(IDLE_WINDOW_MS);
      const c1 = await cpu.read(all.map((i) => i.pid));
      const sec = (monoMs() - t0) / 1000;
      all.forEach((i, k) => s.add(`idle-${i.mode}`, (c1[k]! - c0[k]!) / 1000 / sec));
    },
  ];
  const wait = inits.upAt + IDLE_SETTLE_MS - monoMs();
  if (wait > 0) {
    process.stderr.write(`[pid1] letting the idle inits settle for ${(wait / 1000).toFixed(0)} s more\n`);
    await Bun.sleep(wait);
  }
  const settledFor = (monoMs() - inits.upAt) / 1000;
  process.stderr.write(`[pid1] reaper: ${runs + 1} rounds of a ${BURST}-orphan burst each way and a ${IDLE_WINDOW_MS / 1000} s idle window\n`);
  const s = await interleave("pid1", runs, steps);

  const counted = bursts.filter((b) => b.doneMs !== null).slice(1); // the warm-up round's is the first
  const sweepsPerBurst = counted.map((b) => b.reapingSweeps).sort((a, b) => a - b);
  tables.push(
    table(`PID 1 idle: CPU µs per second (one ${IDLE_WINDOW_MS / 1000} s window per round)`, "µs", s, [
      ["idle-off", "no reaper (waits on stdin)"],
      ["idle-tick", "no reaper, an empty 1 s setInterval"],
      ["idle-reap", "`startReaper({ log })` (SIGCHLD + 1 s sweep)"],
    ], "idle-off"),
    table(`One burst: PID 1's CPU from the release of ${BURST} orphans to ${BURST_WINDOW_MS} ms after`, "µs", s, [
      ["bare-cpu", "bare runtime start (`bun -e 0`): its own CPU, user + sys"],
      ["burst-off", `no reaper: ${BURST} zombies left`],
      ["burst-reap", `\`startReaper({ log })\`: all ${BURST} reaped`],
    ], "bare-cpu"),
    table(`One burst: from the release of ${BURST} orphans to the end of the sweep that reaped the last`, "ms", s, [
      ["bare-wall", "bare runtime start (`bun -e 0`), spawn to exit"],
      ["done-reap", `\`startReaper({ log })\`: release → all ${BURST} reaped`],
    ], "bare-wall"),
  );
  derived.push(
    { label: `reaper CPU per orphan: (with − without the reaper) / ${BURST}`, value: (s.median("burst-reap") - s.median("burst-off")) / BURST, unit: "µs" },
    { label: "reaper CPU per idle second: with − without", value: s.median("idle-reap") - s.median("idle-off"), unit: "µs" },
    { label: "the sweep's own share: reaper − an empty 1 s timer, per idle second", value: s.median("idle-reap") - s.median("idle-tick"), unit: "µs" },
  );
  notes.push(
    `Reaper: each variant is \`bun scripts/bench/pid1-init.ts MODE\` as PID 1 of its own pid namespace (\`unshare --pid --fork --mount-proc --kill-child --${defaultSignal ? " env --default-signal" : ""}\`; ${defaultSignal ? "env resets inherited signal dispositions" : "this env(1) has no --default-signal, so the init checks instead that SIGCHLD is not ignored, which would make the kernel discard the orphans itself"}), five of them up for the whole section: two for the bursts (reap: \`startReaper({ log })\` with its defaults, 1 s sweep; off: none) and three that only idle (reap, off, tick: no reaper and an empty 1 s setInterval, the event loop waking as often as the reaper's sweep with nothing to do). Each round runs every variant once, interleaved, the first rotating.`,
    `Burst: the init spawns a shell that forks ${BURST} \`cat\`s of one pipe and exits, leaving them to PID 1; once all ${BURST} run and 100 ms have passed, the init reads its own CPU (getrusage(RUSAGE_SELF) user + sys, through process.cpuUsage(): every thread's, those the runtime ends when idle too), closes the pipe's write end (all ${BURST} exit at once) and reads its CPU again ${BURST_WINDOW_MS} ms later: the CPU row is that difference, the SIGCHLD handling and the sweeps included; the same fixed window both ways, so the reaper's cost is the difference of the two rows. Without the reaper all ${BURST} were zombies at the end of every window (then reaped, untimed, with waitid); with it all ${BURST} were reaped in every window. The release → reaped time runs from the close to the end of the sweep that reaped the last one (the reaper's debug line): a zombie is reaped by the first look at least 50 ms after the one that first saw it (SETTLE_MS, which leaves out a Worker's spawn window), and looks are at least 10 ms apart, so about 60 ms is the design, not the work. Sweeps that reaped something per burst: ${sweepsPerBurst[0] ?? "n/a"}–${sweepsPerBurst.at(-1) ?? "n/a"} (median ${sweepsPerBurst[Math.floor(sweepsPerBurst.length / 2)] ?? "n/a"}).`,
    `Idle: each idle init's CPU, read from outside (see the last note), the first window ${settledFor.toFixed(0)} s after all five were up (a fresh runtime spends its first ~30 s on JIT and GC work even with nothing to do; the probe part ran meanwhile), before and after a ${IDLE_WINDOW_MS / 1000} s window in which nothing else of this section runs; per second of the window. The sweep lists the init's children (/proc/self/task/TID/children, one file per thread) once a second and finds none; a window holds ${IDLE_WINDOW_MS / 1000} or ${IDLE_WINDOW_MS / 1000 + 1} sweeps, by phase.`,
    "The bare `bun -e 0` rows are a machine reference measured in the same rounds: its own CPU (wait4's rusage, user + sys) and its wall time from spawn to exit.",
  );
}

// ---------------------------------------------------------------- 2. exec probe against HTTP probes

interface Fetched {
  calls: number;
  ok: number;
  meanUs: number;
  medianUs: number;
  cpuUs: number;
}

async function probePart(runs: number, cpu: CpuReader, tables: Table[], derived: Derived[], notes: string[]): Promise<void> {
  const pidFile = tmpFile("pid");
  const port = freePort();
  const health = freePort();
  const url = `http://127.0.0.1:${health}/readyz`;
  const log = tmpFile("hello.log");
  const daemon = Bun.spawn([BUN, HELLO, "run", "--port", String(port), "--health-port", String(health), "--pid-file", pidFile], {
    cwd: ROOT,
    env: childEnv,
    stdin: "ignore",
    stdout: Bun.file(log),
    stderr: Bun.file(`${log}.err`),
  });
  tracked.add(daemon.pid);
  let client: Driven | undefined;
  let s: Samples;
  let fetches = 0;
  try {
    const end = performance.now() + 30_000;
    for (;;) {
      const ok = await fetch(url, { signal: AbortSignal.timeout(1000) }).then((r) => r.status === 200, () => false);
      if (ok) break;
      if (daemon.exitCode !== null || performance.now() > end) {
        throw new Error(`examples/hello.ts run --health-port ${health} never answered 200 on /readyz: ${readFileSync(`${log}.err`, "utf8").trim().split("\n").slice(-3).join(" | ")}`);
      }
      await Bun.sleep(20);
    }
    client = spawnDriven([BUN, FETCH, url], "pid1-fetch.ts");
    if ((await client.lines.next(30_000)) !== "READY") throw new Error(`pid1-fetch.ts did not start: ${errTail(client)}`);
    const c = client;

    const procStep = (key: string, cmd: string[], check: (stdout: string) => boolean): Step => async (s) => {
      let wall = 0;
      let own = 0;
      const [d0] = await cpu.read([daemon.pid]);
      for (let k = 0; k < PROC_BATCH; k++) {
        const r = call(cmd);
        if (!check(r.stdout)) throw new Error(`${cmd.join(" ")} printed ${JSON.stringify(r.stdout)}`);
        wall += r.wallUs;
        own += r.cpuUs;
      }
      const [d1] = await cpu.read([daemon.pid]);
      const d = d1! - d0!;
      s.add(`${key}-wall`, wall / PROC_BATCH);
      s.add(`${key}-cpu`, own / PROC_BATCH);
      s.add(`${key}-daemon`, d / 1000 / PROC_BATCH);
    };
    const fetchStep = (key: string, how: "close" | "keep", batch: number, paceMs: number): Step => async (s) => {
      await ask<Fetched>(c, `${FETCH_WARMUP} ${how}`, 30_000);
      const [d0] = await cpu.read([daemon.pid]);
      const f = await ask<Fetched>(c, `${batch} ${how} ${paceMs}`, 60_000);
      const [d1] = await cpu.read([daemon.pid]);
      const d = d1! - d0!;
      if (f.ok !== f.calls) throw new Error(`pid1-fetch.ts ${how}: ${f.ok} of ${f.calls} fetches of ${url} answered 200 "ready"`);
      fetches += f.calls + FETCH_WARMUP;
      s.add(`${key}-wall`, f.meanUs);
      s.add(`${key}-median`, f.medianUs);
      s.add(`${key}-cpu`, f.cpuUs / f.calls);
      s.add(`${key}-daemon`, d / 1000 / f.calls);
    };
    const steps: Step[] = [
      procStep("status", [BUN, HELLO, "status", "--ready", "--pid-file", pidFile], (o) => o.startsWith(`hello is running (pid ${daemon.pid}`)),
      procStep("curl", ["curl", "-fsS", url], (o) => o === "ready\n"),
      fetchStep("paced", "close", PACED_BATCH, PACE_MS),
      fetchStep("close", "close", FETCH_BATCH, 0),
      fetchStep("keep", "keep", FETCH_BATCH, 0),
      procStep("bare", BARE, () => true),
    ];
    if (!Bun.which("curl")) {
      steps.splice(1, 1);
      notes.push("No `curl` on PATH: its row was skipped.");
    }
    s = await interleave("pid1 probes", runs, steps);
  } finally {
    if (client) await stopChild(client.proc);
    await stopChild(daemon);
  }

  const rows = (what: string): Array<[string, string]> => [
    [`bare-${what}`, "bare runtime start (`bun -e 0`)"],
    [`status-${what}`, "exec probe: `bun examples/hello.ts status --ready`"],
    [`curl-${what}`, "`curl -fsS http://127.0.0.1:P/readyz` (a process)"],
    [`paced-${what}`, `in-process fetch /readyz, a new connection each (as kubelet), ${PACE_MS} ms apart`],
    [`close-${what}`, "in-process fetch /readyz, a new connection each, back to back"],
    [`keep-${what}`, "in-process fetch /readyz, one kept-alive connection, back to back"],
  ];
  tables.push(
    table("Probe wall time per call", "µs", s, rows("wall"), "bare-wall"),
    table("The prober's own CPU per call (user + sys)", "µs", s, rows("cpu"), "bare-cpu"),
    table("The daemon's CPU per call (its CPU clock over the batch)", "µs", s, rows("daemon"), "paced-daemon"),
  );
  const total = (k: string) => s.median(`${k}-cpu`) + s.median(`${k}-daemon`);
  derived.push(
    { label: "exec probe − bare runtime start, wall per call", value: (s.median("status-wall") - s.median("bare-wall")) / 1000, unit: "ms" },
    { label: `exec probe's CPU (prober + daemon) / an HTTP probe's (in-process fetch, new connection, ${PACE_MS} ms apart)`, value: total("status") / total("paced"), unit: "×" },
    { label: "exec probe's CPU (prober + daemon) / `curl` as a process (prober + daemon)", value: total("status") / total("curl"), unit: "×" },
    { label: `the daemon's CPU per HTTP probe (new connection, ${PACE_MS} ms apart) − per exec probe`, value: s.median("paced-daemon") - s.median("status-daemon"), unit: "µs" },
    { label: "the daemon's CPU per HTTP probe: paced / back to back (both a new connection each)", value: s.median("paced-daemon") / s.median("close-daemon"), unit: "×" },
  );
  notes.push(
    `Probes: one daemon for this part, \`bun examples/hello.ts run --port P --health-port H --pid-file FILE\` in the foreground (its log in the run's temp dir), stopped by pid at the end. Each round runs every variant once, interleaved, the first rotating: ${PROC_BATCH} calls of each process variant, and ${FETCH_BATCH} back-to-back fetches (${PACED_BATCH} paced ones), after ${FETCH_WARMUP} uncounted ones, of each in-process variant; a sample is that batch's total / calls.`,
    `Process rows: each call a fresh process run to exit by Bun.spawnSync; wall from spawn to exit, the prober's CPU from wait4's rusage (user + sys, all its threads). \`status --ready\` loads examples/hello.ts (not its app module), reads the PID file and the state file beside it and exits 0 while the daemon is running: the daemon itself does nothing for it.`,
    `In-process rows: scripts/bench/pid1-fetch.ts, one process up for the whole part, times each \`fetch()\` of /readyz read to its end with Bun.nanoseconds() (the row is the mean; medians of the rounds' medians: ${s.median("paced-median").toFixed(0)} µs paced, ${s.median("close-median").toFixed(0)} µs back to back with a new connection each, ${s.median("keep-median").toFixed(0)} µs kept alive) and reads its own CPU (rusage, as the inits do) around the batch, the paced variant's timer wake-ups included. "A new connection each" sends \`Connection: close\` with \`keepalive: false\`, as kubelet's HTTP prober does (its transport disables keep-alives); "kept alive" reuses the runtime's pooled connection. Paced, the calls are ${PACE_MS} ms apart, about as long as a probe process runs: the daemon sleeps between requests, as a real probe (every few seconds) finds it; back to back it stays hot, so that pair of rows shows what an idle daemon's wake-up adds to a request. All ${fetches} fetches answered 200 "ready".`,
    "The daemon's CPU: read from outside (see the last note) before and after each batch, over the batch's calls. It includes whatever the daemon does meanwhile unasked; the bare row (nothing asks the daemon anything) is that background over the time of a bare runtime start.",
  );
}

// ---------------------------------------------------------------- the section

/** Section 11: the reaper's cost as PID 1 (root and unshare, else skipped with a note), and probe costs against one daemon. Rounds: --runs, default 30. */
export async function pid1Cost(o: Options): Promise<Section> {
  const runs = runsOf(o);
  const tables: Table[] = [];
  const derived: Derived[] = [];
  const notes: string[] = [];
  const probe = { tables: [] as Table[], derived: [] as Derived[], notes: [] as string[] };
  const cpu = cpuReader();
  let inits: Inits | undefined;
  try {
    inits = await startInits(notes);
    await probePart(runs, cpu, probe.tables, probe.derived, probe.notes);
    if (inits) await reaperPart(inits, runs, cpu, tables, derived, notes);
  } finally {
    if (inits) await stopInits(inits.all);
    await cpu.stop();
  }
  tables.push(...probe.tables);
  derived.push(...probe.derived);
  notes.push(...probe.notes, `CPU of a process read from outside (the idle inits, the daemon): ${cpu.how}.`);
  return { id: "pid1", title: "11. PID 1: the reaper's cost, and exec against HTTP readiness probes", tables, derived, notes };
}
