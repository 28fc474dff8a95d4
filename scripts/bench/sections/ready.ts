/** 1. Time to ready: foreground, `start`, re-spawn, the C floor and a bare runtime start, with where the time goes. */
import {
  BARE, BUN, RESPAWN, TINY, compileCDaemon, foreground, interleave, readMarks, runsOf, slot, startArgs, startTiny, startedPid,
  stopChild, stopPid, table, timed, tmpFile, verify, wallMs,
  type Derived, type Options, type Samples, type Section, type Step,
} from "../harness.ts";

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

export async function timeToReady(o: Options): Promise<Section> {
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
  const s = await interleave("ready", runsOf(o), steps);
  const phaseRuns = Math.min(runsOf(o), 10);
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
