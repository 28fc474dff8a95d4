/**
 * bun-daemon benchmarks (issues 3 and 7).
 *
 *   npx bun scripts/bench.ts [SECTION...] [--runs N] [--json]
 *   npx bun scripts/bench.ts sweep              # the app-size sweep only
 *   npm run bench -- --runs 10 ready signals
 *
 * Sections: ready, fds, heap, signals, memory, import, sweep, notify, reload,
 * logging, pid1, churn (default: all; `--only a,b` is the same as naming them). Each
 * section is a module of scripts/bench/sections/; scripts/bench/harness.ts
 * has what they share. Each comparison runs its variants interleaved in one
 * run (one round = every variant once, the order rotating between rounds),
 * after one warm-up round that is not counted. Markdown on stdout (JSON with
 * --json); progress on stderr.
 *
 * Figures on a shared machine are noisy: the ratios within one run are what
 * to compare. Never turn them into pass/fail thresholds in tests.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { cleanups, runsOf, setTmp, stopPid, tmpDir, tracked, type Options, type Section } from "./bench/harness.ts";
import { machineInfo, markdown, type Report } from "./bench/report.ts";
import { becomeSubreaper } from "./bench/sys.ts";
import { timeToReady } from "./bench/sections/ready.ts";
import { inheritedFds } from "./bench/sections/fds.ts";
import { launcherMemory } from "./bench/sections/heap.ts";
import { signals } from "./bench/sections/signals.ts";
import { memory } from "./bench/sections/memory.ts";
import { importCost } from "./bench/sections/import.ts";
import { SWEEP_RUNS, sweep } from "./bench/sections/sweep.ts";
import { notifyCost } from "./bench/sections/notify.ts";
import { reloadCost } from "./bench/sections/reload.ts";
import { logThroughput } from "./bench/sections/logging.ts";
import { pid1Cost } from "./bench/sections/pid1.ts";
import { churn } from "./bench/sections/churn.ts";

const RUNNERS = {
  ready: timeToReady,
  fds: inheritedFds,
  heap: launcherMemory,
  signals,
  memory,
  import: importCost,
  sweep,
  notify: notifyCost,
  reload: reloadCost,
  logging: logThroughput,
  pid1: pid1Cost,
  churn,
} satisfies Record<string, (o: Options) => Promise<Section>>;
type SectionId = keyof typeof RUNNERS;
const SECTIONS = Object.keys(RUNNERS) as SectionId[];
/** Sections whose default round count is not 30 (they take longer per round). */
const DEFAULT_RUNS: Partial<Record<SectionId, number>> = { sweep: SWEEP_RUNS, pid1: 10, churn: 1 };

function usage(): never {
  process.stderr.write(`usage: npx bun scripts/bench.ts [${SECTIONS.join("|")} ...] [--runs N] [--only SECTION[,SECTION]] [--json]\n`);
  process.exit(2);
}

function parseOptions(argv: string[]): Options & { sections: SectionId[] } {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { runs: { type: "string" }, only: { type: "string" }, json: { type: "boolean" }, help: { type: "boolean", short: "h" } },
    });
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    usage();
  }
  const { values, positionals } = parsed;
  if (values.help) usage();
  const runs = values.runs === undefined ? undefined : Number(values.runs);
  if (runs !== undefined && (!Number.isInteger(runs) || runs < 1)) usage();
  const named = [...positionals, ...(values.only?.split(",") ?? [])].map((s) => s.trim()).filter(Boolean);
  for (const s of named) if (!(SECTIONS as string[]).includes(s)) usage();
  const sections = named.length ? SECTIONS.filter((id) => named.includes(id)) : SECTIONS;
  return { runs, json: Boolean(values.json), sections };
}

function cleanup(): void {
  for (const pid of [...tracked]) stopPid(pid);
  for (const fn of cleanups.splice(0)) {
    try {
      fn();
    } catch (err) {
      process.stderr.write(`cleanup: ${(err as Error).message}\n`);
    }
  }
  if (tmpDir()) rmSync(tmpDir(), { recursive: true, force: true });
}

async function main(): Promise<void> {
  const o = parseOptions(process.argv.slice(2));
  if (process.platform !== "linux") throw new Error("the benchmarks read /proc: Linux only");
  setTmp(mkdtempSync(join(tmpdir(), "bun-daemon-bench-")));
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.on(sig, () => {
      cleanup();
      process.exit(130);
    });
  }
  if (!becomeSubreaper()) process.stderr.write("warning: not a child subreaper; daemons are left to pid 1 to reap\n");

  const counts = [...new Set(o.sections.map((id) => runsOf(o, DEFAULT_RUNS[id])))];
  const report: Report = {
    command: ["npx bun scripts/bench.ts", ...process.argv.slice(2)].join(" "),
    runs: counts.length === 1 ? String(counts[0]) : o.sections.map((id) => `${id}: ${runsOf(o, DEFAULT_RUNS[id])}`).join(", "),
    machine: machineInfo(),
    sections: [],
  };
  try {
    for (const id of o.sections) report.sections.push(await RUNNERS[id](o));
  } finally {
    cleanup();
  }
  report.machine.loadAverageAtEnd = loadavg().map((x) => Math.round(x * 100) / 100);
  process.stdout.write(o.json ? `${JSON.stringify(report, null, 2)}\n` : markdown(report));
}

await main();
