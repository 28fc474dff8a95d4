/**
 * 9. reload (issue 10): `reload` from command to outcome beside `reload
 * --no-wait` (the signal only), `status` and a bare runtime start, and the
 * same round trip in-process, without a process start-up, against one real
 * daemon configured by a file.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { readState, statePathFor } from "../../../src/state.ts";
import {
  BARE, BUN, FIXTURES, ROOT, Samples, freePort, interleave, runsOf, startedPid, stopPid, table, timed, tmpFile, waitPort,
  type Options, type Section, type Step,
} from "../harness.ts";

const APP = join(ROOT, "test/fixtures/config-app.ts");
const PROBE = join(FIXTURES, "reload-probe.ts");
/** reload() calls timed per probe process (after 5 uncounted ones). */
const CALLS = 100;

interface Probe {
  calls: number;
  ok: number;
  medianMs: number;
  meanMs: number;
  minMs: number;
  /** Timed calls under 5 ms: answered before the first 10 ms pause. */
  fast: number;
}

/** The daemon's reloads as its state file tells them: begun so far, and whether the latest has an outcome. */
function reloads(pidFile: string, pid: number): { started: number; settled: boolean } {
  const r = readState(statePathFor(pidFile), pid);
  if (!r.ok) throw new Error(`pid ${pid}: unreadable state file beside ${pidFile}: ${r.reason}`);
  const last = r.record.reloads.at(-1);
  return { started: r.record.reloadsStarted, settled: r.record.state === "running" && (r.record.reloadsStarted === 0 || last?.seq === r.record.reloadsStarted) };
}

/** Until a reload after `before` has run to its outcome (untimed: `--no-wait` returns before it does). */
async function settle(pidFile: string, pid: number, before: number): Promise<void> {
  const end = performance.now() + 10_000;
  for (;;) {
    const r = reloads(pidFile, pid);
    if (r.started > before && r.settled) return;
    if (performance.now() > end) throw new Error(`pid ${pid}: the reload after --no-wait has no outcome within 10 s (started ${r.started}, before ${before})`);
    await Bun.sleep(1);
  }
}

/** Section 9: the reload commands' wall time and the in-process round trip, against one daemon it starts and stops. Rounds: --runs, default 30. */
export async function reloadCost(o: Options): Promise<Section> {
  const name = `bdbench${process.pid}`;
  const port = freePort();
  const conf = `${tmpFile("reload")}.conf`;
  const pidFile = tmpFile("pid");
  const logFile = tmpFile("reload.log");
  // The seed's daemon.conf format. log_file keeps the daemon's "reloading"/"reloaded" lines in the run's temp dir, off any syslog.
  writeFileSync(conf, `# bun-daemon bench\nport=${port}\nlog_level=INFO\npid_file=${pidFile}\nlog_file=${logFile}\n`);
  // No events file (the hook does no I/O of its own), nor any other setting the fixture would take from
  // our environment: empty is unset to it, and timed() lays these over the inherited environment.
  const env: Record<string, string> = { CFG_NAME: name, CFG_EVENTS: "", CFG_FILE: "", CFG_DEFAULTS: "", CFG_SYSLOG: "", JOURNAL_STREAM: "" };
  const cli = (...args: string[]) => timed([BUN, APP, ...args, "--config", conf], env);

  const pid = startedPid(cli("start").stdout);
  let s: Samples;
  let inproc = 0;
  try {
    await waitPort(port);
    const steps: Step[] = [
      async (s) => {
        const r = cli("reload");
        if (!r.stdout.startsWith(`reloaded ${name} (pid ${pid})`)) throw new Error(`reload printed ${JSON.stringify(r.stdout + r.stderr)}`);
        s.add("reload", r.ms);
      },
      async (s) => {
        const before = reloads(pidFile, pid).started;
        const r = cli("reload", "--no-wait");
        if (!r.stdout.startsWith(`reloading ${name} (pid ${pid})`)) throw new Error(`reload --no-wait printed ${JSON.stringify(r.stdout + r.stderr)}`);
        s.add("nowait", r.ms);
        await settle(pidFile, pid, before);
      },
      async (s) => {
        const r = cli("status");
        if (!r.stdout.startsWith(`${name} is running (pid ${pid}`)) throw new Error(`status printed ${JSON.stringify(r.stdout + r.stderr)}`);
        s.add("status", r.ms);
      },
      async (s) => {
        s.add("bare", timed(BARE).ms);
      },
      async (s) => {
        const r = timed([BUN, PROBE, name, pidFile], { ...env, BENCH_RELOAD_CALLS: String(CALLS) });
        const p = JSON.parse(r.stdout.trim().split("\n").at(-1) ?? "") as Probe;
        if (p.ok !== p.calls) throw new Error(`reload-probe.ts: ${p.ok} of ${p.calls} reload() calls returned 0`);
        inproc += p.calls;
        s.add("inproc", p.medianMs);
        s.add("inproc-mean", p.meanMs);
        s.add("inproc-min", p.minMs);
        s.add("inproc-fast", p.fast / CALLS);
      },
    ];
    s = await interleave("reload", runsOf(o), steps);
  } finally {
    stopPid(pid);
  }

  return {
    id: "reload",
    title: "9. `reload` round trip (command to outcome)",
    tables: [
      table("Control commands against one running daemon, spawn to exit", "ms", s, [
        ["bare", "bare runtime start (`bun -e 0`)"],
        ["status", "`status --config FILE`"],
        ["nowait", "`reload --no-wait --config FILE` (SIGHUP only)"],
        ["reload", "`reload --config FILE` (SIGHUP, wait for the outcome)"],
        ["inproc", `in-process \`reload()\`, no start-up (median of ${CALLS} calls per process)`],
      ], "bare"),
    ],
    derived: [
      { label: "reload wait overhead: `reload` − `reload --no-wait`", value: s.median("reload") - s.median("nowait"), unit: "ms" },
      { label: "`reload` − bare runtime start", value: s.median("reload") - s.median("bare"), unit: "ms" },
      { label: "`reload --no-wait` − `status`", value: s.median("nowait") - s.median("status"), unit: "ms" },
      { label: "`reload` − in-process `reload()` (what the command's process adds)", value: s.median("reload") - s.median("inproc"), unit: "ms" },
    ],
    notes: [
      `One daemon for the whole section: \`bun test/fixtures/config-app.ts start --config FILE\` (CFG_NAME set, CFG_EVENTS not: its reload hook only swaps the config it serves), FILE in the seed's daemon.conf format (port, log_level=INFO, pid_file, and log_file in the run's temp dir). Each round runs every variant once, interleaved, the first rotating; stopped by pid at the end.`,
      "Commands: wall time from spawn to exit of `bun test/fixtures/config-app.ts COMMAND --config FILE`, each a fresh process that loads the app module (zod and src/index.ts) and reads FILE for pid_file before it acts. `reload` reads the state file beside the PID file, sends SIGHUP through a pidfd, then reads the state file again about every 10 ms (a poll(2) on the pidfd is the pause, so a daemon that dies ends it early) until the outcome of a reload begun after its signal is there: the daemon re-reads and validates FILE, runs the reload hook, publishes the outcome. `reload --no-wait` sends the signal and exits; that reload's outcome is then waited for, untimed, before the next variant. `status` reads the PID file and the state file.",
      `In-process: scripts/bench/reload-probe.ts imports \`reload\` from src/control.ts and, after 5 uncounted calls, times each of ${CALLS} \`reload(NAME, PID_FILE)\` calls (each waits for its outcome, as the command does) with Bun.nanoseconds(); a sample is that process's median. Medians of the rounds: mean ${s.median("inproc-mean").toFixed(2)} ms, min ${s.median("inproc-min").toFixed(2)} ms per call; all ${inproc} calls (warm-up included) returned 0. A call ends either at the read of the state file right after the signal (the daemon, on another core, had already published the outcome, or did so while that read retried a record caught mid-rewrite) or after one or more 10 ms pauses: ${(s.median("inproc-fast") * 100).toFixed(0)} % of a process's calls took under 5 ms (median of the rounds; min ${(Math.min(...s.get("inproc-fast")) * 100).toFixed(0)} %, max ${(Math.max(...s.get("inproc-fast")) * 100).toFixed(0)} %), so the per-process median is one mode or the other.`,
      "Wait overhead is the difference of two medians of whole commands: what waiting for the outcome adds to the signal, the daemon's reload included; the 10 ms poll step bounds how finely it can end.",
    ],
  };
}
