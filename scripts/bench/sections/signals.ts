/** 4. Signal to hook latency, and the control commands' wall time. */
import {
  BARE, BUN, TINY, alive, foreground, interleave, lines, runsOf, slot, startTiny, stopChild, stopPid, table, timed, tmpFile, waitGone,
  type Options, type Section, type Step,
} from "../harness.ts";
import { monoMs } from "../sys.ts";

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

export async function signals(o: Options): Promise<Section> {
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
  const s = await interleave("signals", runsOf(o), [step]);
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
