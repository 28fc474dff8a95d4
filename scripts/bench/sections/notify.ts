/**
 * 8. sd_notify (issue 8): the cost of one notify() datagram beside the
 * floor with no socket, and the watchdog's CPU on an idle daemon beside the
 * same daemon unsupervised (and one with an empty timer at the watchdog's
 * period, which separates the event loop's wake-up from the ping itself).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import {
  BARE, BUN, FIXTURES, ROOT, Samples, childEnv, interleave, lines, runsOf, stopChild, table, timed, tmpFile, tracked,
  type Options, type Section, type Step,
} from "../harness.ts";
import { monoMs } from "../sys.ts";

const PROBE = join(FIXTURES, "notify-probe.ts");
const IDLE = join(FIXTURES, "idle.ts");
/** notify() calls timed per probe process (after 200 uncounted ones). */
const CALLS = 2000;
/** Watchdog: WATCHDOG_USEC for daemon A (a ping every 0.5 s), the settle time after READY, the measured window. */
const WATCHDOG_USEC = 1_000_000;
const SETTLE_MS = 5_000;
const WINDOW_MS = 60_000;
/** Kernel clock ticks per second for /proc/PID/stat (USER_HZ: 100 on every Linux the kernel ABI allows). */
const CLK_TCK = 100;

/**
 * A real sd_notify receiver: binds an AF_UNIX datagram socket, reads and
 * discards; with a log path, appends "<CLOCK_MONOTONIC ms> <datagram>" per
 * datagram (the watchdog part: two a second). On SIGTERM prints its counts
 * as JSON and exits.
 */
const RECEIVER = `
import json, os, signal, socket, sys, time
path, log = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
out = open(log, "a", buffering=1) if log != "-" else None
counts = {"datagrams": 0, "watchdog": 0}
def done(*_):
    sys.stdout.write(json.dumps(counts) + "\\n"); sys.stdout.flush(); os._exit(0)
signal.signal(signal.SIGTERM, done)
sys.stdout.write("READY\\n"); sys.stdout.flush()
while True:
    d = s.recv(65536)
    counts["datagrams"] += 1
    if d == b"WATCHDOG=1": counts["watchdog"] += 1
    if out: out.write("%.3f %s\\n" % (time.monotonic() * 1000, d.decode(errors="replace").replace("\\n", " ")))
`;

interface Receiver {
  proc: Subprocess<"ignore", "pipe", "pipe">;
  socket: string;
  log: string | undefined;
  /** Its stdout: READY already read, the counts still to come. */
  reader: { read(): Promise<{ done: boolean; value?: Uint8Array }> };
}

async function startReceiver(python: string, withLog: boolean): Promise<Receiver> {
  const socket = tmpFile("notify.sock");
  const log = withLog ? tmpFile("notify.log") : undefined;
  const proc = Bun.spawn([python, "-c", RECEIVER, socket, log ?? "-"], { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  tracked.add(proc.pid);
  const reader = proc.stdout.getReader();
  const { value } = await reader.read();
  if (!value || !new TextDecoder().decode(value).startsWith("READY")) {
    throw new Error(`the python3 datagram receiver did not start: ${await new Response(proc.stderr).text()}`);
  }
  return { proc, socket, log, reader };
}

/** SIGTERM (then SIGKILL) by pid; the counts it printed. */
async function stopReceiver(r: Receiver): Promise<{ datagrams: number; watchdog: number }> {
  await stopChild(r.proc);
  let text = "";
  const decoder = new TextDecoder();
  for (let c = await r.reader.read(); !c.done; c = await r.reader.read()) text += decoder.decode(c.value, { stream: true });
  try {
    return JSON.parse(text) as { datagrams: number; watchdog: number };
  } catch {
    throw new Error(`the datagram receiver printed no counts: ${JSON.stringify(text)}`);
  }
}

/** The environment with none of a supervisor's variables of our own. */
const cleanEnv = (): Record<string, string> => {
  const env = { ...childEnv };
  for (const k of ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"]) delete env[k];
  return env;
};

interface Probe {
  calls: number;
  sent: number;
  medianUs: number;
  meanUs: number;
}

function probe(env: Record<string, string>): Probe {
  const r = Bun.spawnSync([BUN, PROBE], { cwd: ROOT, env: { ...cleanEnv(), BENCH_NOTIFY_CALLS: String(CALLS), ...env }, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`notify-probe.ts exited ${r.exitCode ?? r.signalCode}: ${r.stderr.toString()}`);
  return JSON.parse(r.stdout.toString()) as Probe;
}

/** utime + stime of the whole thread group, in clock ticks (fields 14 and 15, counted after the ")" of comm). */
function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // f[0] is field 3 (state): field n is f[n - 3].
  return Number(f[11]) + Number(f[12]);
}

/** CPU time of every thread, in ns (sum of /proc/PID/task/TID/schedstat's first field): finer than ticks. */
function cpuNs(pid: number): number {
  let sum = 0;
  for (const tid of new Bun.Glob("*").scanSync({ cwd: `/proc/${pid}/task`, onlyFiles: false })) {
    try {
      sum += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ")[0]);
    } catch {
      // A thread that exited between the listing and the read: its time is lost from this sample only.
    }
  }
  return sum;
}

async function startIdle(env: Record<string, string>): Promise<{ proc: Subprocess; out: string; err: string }> {
  const out = tmpFile("idle.out");
  const err = tmpFile("idle.err");
  const proc = Bun.spawn([BUN, IDLE, "run", "--pid-file", tmpFile("pid")], {
    cwd: ROOT,
    env: { ...cleanEnv(), ...env },
    stdin: "ignore",
    stdout: Bun.file(out),
    stderr: Bun.file(err),
  });
  tracked.add(proc.pid);
  return { proc, out, err };
}

async function waitReady(d: { proc: Subprocess; out: string; err: string }): Promise<void> {
  const end = performance.now() + 30_000;
  while (!lines(d.out).some((l) => l.startsWith("READY"))) {
    if (d.proc.exitCode !== null || performance.now() > end) {
      throw new Error(`idle.ts (pid ${d.proc.pid}) never printed READY: ${lines(d.err).slice(-5).join(" | ")}`);
    }
    await Bun.sleep(5);
  }
}

export async function notifyCost(o: Options): Promise<Section> {
  const notes: string[] = [];
  const python = Bun.which("python3");
  if (!python) {
    return { id: "notify", title: "8. sd_notify send cost and watchdog overhead", tables: [], derived: [], notes: ["No `python3` on PATH (the datagram receiver): section skipped."] };
  }

  // -------------------------------------------------------- 1. send cost
  const rx = await startReceiver(python, false);
  let socketCalls = 0;
  const check = (p: Probe, want: number, what: string) => {
    if (p.sent !== want) throw new Error(`notify-probe.ts ${what}: ${p.sent} of ${p.calls} notify() calls returned true, expected ${want}`);
  };
  const steps: Step[] = [
    async (s) => {
      const t0 = performance.now();
      const p = probe({ NOTIFY_SOCKET: rx.socket });
      s.add("proc-socket", performance.now() - t0);
      check(p, p.calls, "with NOTIFY_SOCKET");
      socketCalls += p.calls; // the warm-up round's too: the receiver counts every datagram
      s.add("socket", p.medianUs);
      s.add("socket-mean", p.meanUs);
    },
    async (s) => {
      const t0 = performance.now();
      const p = probe({});
      s.add("proc-unset", performance.now() - t0);
      check(p, 0, "without NOTIFY_SOCKET");
      s.add("unset", p.medianUs);
      s.add("unset-mean", p.meanUs);
    },
    async (s) => {
      s.add("bare", timed(BARE).ms);
    },
  ];
  const s = await interleave("notify", runsOf(o), steps);
  const got = await stopReceiver(rx);
  if (got.datagrams !== socketCalls) throw new Error(`the receiver counted ${got.datagrams} datagrams, the probes sent ${socketCalls}`);

  // -------------------------------------------------------- 2. watchdog on an idle daemon
  process.stderr.write(`[notify] watchdog: ${SETTLE_MS / 1000} s settle + ${WINDOW_MS / 1000} s window\n`);
  const wrx = await startReceiver(python, true);
  const a = await startIdle({ NOTIFY_SOCKET: wrx.socket, WATCHDOG_USEC: String(WATCHDOG_USEC) });
  const b = await startIdle({});
  const c = await startIdle({ BENCH_IDLE_TICK_MS: String(WATCHDOG_USEC / 2000) });
  const all = [a, b, c];
  let cpu: { ticks: number[]; ns: number[]; pings: number; datagrams: number; window: number };
  try {
    await Promise.all(all.map(waitReady));
    await Bun.sleep(SETTLE_MS);
    const t0 = monoMs();
    const ticks0 = all.map((d) => cpuTicks(d.proc.pid));
    const ns0 = all.map((d) => cpuNs(d.proc.pid));
    await Bun.sleep(WINDOW_MS);
    const ticks1 = all.map((d) => cpuTicks(d.proc.pid));
    const ns1 = all.map((d) => cpuNs(d.proc.pid));
    const t1 = monoMs();
    const log = lines(wrx.log!).map((l) => ({ at: Number(l.slice(0, l.indexOf(" "))), text: l.slice(l.indexOf(" ") + 1) }));
    const inWindow = log.filter((d) => d.at >= t0 && d.at <= t1);
    if (!log.some((d) => /\bREADY=1\b/.test(d.text))) throw new Error("daemon A never sent READY=1 to the receiver");
    cpu = {
      ticks: ticks1.map((v, i) => v - ticks0[i]!), ns: ns1.map((v, i) => v - ns0[i]!),
      pings: inWindow.filter((d) => d.text === "WATCHDOG=1").length, datagrams: inWindow.length, window: t1 - t0,
    };
  } finally {
    for (const d of all) await stopChild(d.proc);
    await stopReceiver(wrx);
  }

  const perMin = 60_000 / cpu.window;
  const w = new Samples();
  ["a", "b", "c"].forEach((k, i) => {
    w.add(`${k}-ticks`, ((cpu.ticks[i]! * 1000) / CLK_TCK) * perMin);
    w.add(`${k}-ns`, (cpu.ns[i]! / 1e6) * perMin);
  });
  const expected = Math.floor(cpu.window / (WATCHDOG_USEC / 2000));

  notes.push(
    `Send cost: each round runs scripts/bench/notify-probe.ts in a fresh \`bun\`, which takes the supervisor's variables as the daemon's lifecycle does, makes 200 uncounted calls (the first loads src/ffi.ts), then times each of ${CALLS} \`notify({ STATUS: "x" })\` calls alone with Bun.nanoseconds(); a sample is that process's median. With NOTIFY_SOCKET, at a python3 AF_UNIX SOCK_DGRAM receiver that reads and discards (running on the other core); each call is socket(2) + sendto(2) + close(2), and the receiver counted all ${socketCalls} datagrams. Without it, notify() validates and formats the fields and returns false: the floor. Mean per call (total / ${CALLS}), medians of the rounds: ${s.median("socket-mean").toFixed(2)} µs with the socket, ${s.median("unset-mean").toFixed(2)} µs without.`,
    `Watchdog: three \`bun scripts/bench/idle.ts run\` (a defineDaemon app whose only hook is an init that prints READY) started together: A with WATCHDOG_USEC=${WATCHDOG_USEC} (a WATCHDOG=1 every ${WATCHDOG_USEC / 2000} ms) and NOTIFY_SOCKET at a second receiver, B with neither, C with neither but an empty, unref'd 500 ms setInterval in its init (the event loop waking as often, no datagram). ${SETTLE_MS / 1000} s after all three are ready, CPU time is read for each, then again after a ${(cpu.window / 1000).toFixed(1)} s window (one window, not rounds): utime + stime from /proc/PID/stat (${CLK_TCK} ticks/s, so ±${((1000 / CLK_TCK) * perMin).toFixed(0)} ms per minute of resolution) and, finer, the sum of every thread's /proc/PID/task/TID/schedstat run time (ns).`,
    `The receiver counted ${cpu.pings} WATCHDOG=1 datagrams from A in the window (${expected} expected at one per ${WATCHDOG_USEC / 2000} ms; ${cpu.datagrams} datagrams in all).`,
  );

  return {
    id: "notify",
    title: "8. sd_notify send cost and watchdog overhead",
    tables: [
      table("One `notify({ STATUS: \"x\" })` call, in-process (median per process)", "µs", s, [
        ["socket", "NOTIFY_SOCKET at a receiver (datagram sent)"],
        ["unset", "NOTIFY_SOCKET unset (nothing sent)"],
      ], "unset"),
      table(`Whole probe process (${CALLS + 200} calls), spawn to exit`, "ms", s, [
        ["bare", "bare runtime start (`bun -e 0`)"],
        ["proc-unset", "probe, NOTIFY_SOCKET unset"],
        ["proc-socket", "probe, NOTIFY_SOCKET at a receiver"],
      ], "bare"),
      table(`Idle daemon, CPU ms per minute (one ${(cpu.window / 1000).toFixed(0)} s window)`, "ms", w, [
        ["a-ticks", "A: watchdog every 0.5 s (/proc/PID/stat)"],
        ["b-ticks", "B: no watchdog (/proc/PID/stat)"],
        ["c-ticks", "C: no watchdog, empty 0.5 s timer (/proc/PID/stat)"],
        ["a-ns", "A: watchdog every 0.5 s (schedstat)"],
        ["b-ns", "B: no watchdog (schedstat)"],
        ["c-ns", "C: no watchdog, empty 0.5 s timer (schedstat)"],
      ], "b-ticks"),
    ],
    derived: [
      { label: "notify() with a socket − without, per call", value: s.median("socket") - s.median("unset"), unit: "µs" },
      { label: "watchdog A − B, CPU per minute (/proc/PID/stat)", value: w.median("a-ticks") - w.median("b-ticks"), unit: "ms" },
      { label: "watchdog A − B, CPU per minute (schedstat)", value: w.median("a-ns") - w.median("b-ns"), unit: "ms" },
      { label: "A − B per ping (schedstat)", value: (cpu.ns[0]! - cpu.ns[1]!) / 1000 / Math.max(cpu.pings, 1), unit: "µs" },
      { label: "C − B, an empty timer at the same period, CPU per minute (schedstat)", value: w.median("c-ns") - w.median("b-ns"), unit: "ms" },
    ],
    notes,
  };
}
