/** 5. Memory: resident set of the daemon and the foreground, peaks of the launcher and a bare start. */
import { existsSync, readFileSync } from "node:fs";
import type { Subprocess } from "bun";
import {
  BARE, GNU_TIME, foreground, interleave, runsOf, slot, startTiny, statusKB, stopChild, stopPid, table, timed, tmpFile,
  type Derived, type Options, type Section, type Step,
} from "../harness.ts";

/** GNU time, whose fork (not vfork) gives a child maxrss that is the child's own. */
function hasGnuTime(): boolean {
  if (!existsSync(GNU_TIME)) return false;
  return Bun.spawnSync([GNU_TIME, "-f", "%M", "-o", "/dev/null", "true"]).exitCode === 0;
}

function maxRssMiB(file: string): number {
  const kb = Number(readFileSync(file, "utf8").trim().split("\n").at(-1));
  if (!Number.isFinite(kb)) throw new Error(`no max RSS in ${file}`);
  return kb / 1024;
}

export async function memory(o: Options): Promise<Section> {
  const notes: string[] = [];
  const gnuTime = hasGnuTime();
  if (!gnuTime) notes.push(`No GNU time at ${GNU_TIME}: launcher and bare peak RSS were skipped.`);
  let round = 0;
  const step: Step = async (s) => {
    const flip = round++ % 2 === 1;
    const d = slot();
    const f = slot();
    const launcherLog = tmpFile("time");
    const startIt = () => startTiny(d.port, d.pidFile, {}, gnuTime ? [GNU_TIME, "-f", "%M", "-o", launcherLog] : []);
    const fgIt = () => foreground(f.port, f.pidFile);
    let daemon: { pid: number };
    let fg: { proc: Subprocess };
    if (flip) {
      fg = await fgIt();
      daemon = startIt();
    } else {
      daemon = startIt();
      fg = await fgIt();
    }
    await Bun.sleep(300); // past ready hooks and the first GC
    s.add("rss-daemon", statusKB(daemon.pid, "VmRSS") / 1024);
    s.add("rss-fg", statusKB(fg.proc.pid, "VmRSS") / 1024);
    s.add("hwm-daemon", statusKB(daemon.pid, "VmHWM") / 1024);
    s.add("hwm-fg", statusKB(fg.proc.pid, "VmHWM") / 1024);
    if (gnuTime) {
      s.add("peak-launcher", maxRssMiB(launcherLog));
      const bareLog = tmpFile("time");
      timed([GNU_TIME, "-f", "%M", "-o", bareLog, ...BARE]);
      s.add("peak-bare", maxRssMiB(bareLog));
    }
    stopPid(daemon.pid);
    await stopChild(fg.proc);
  };
  const s = await interleave("memory", runsOf(o), [step]);
  notes.push(
    "VmRSS and VmHWM from /proc/PID/status 300 ms after ready. Launcher and bare peaks: maxrss from GNU time (Bun.spawn's resourceUsage().maxRSS is useless here: a vfork-spawned child reports the parent's RSS when that is higher).",
  );
  const derived: Derived[] = [{ label: "daemon VmRSS − foreground VmRSS", value: s.median("rss-daemon") - s.median("rss-fg"), unit: "MiB" }];
  if (gnuTime) derived.push({ label: "launcher peak / bare peak", value: s.median("peak-launcher") / s.median("peak-bare"), unit: "×" });
  return {
    id: "memory",
    title: "5. Memory",
    tables: [
      table("Resident set after ready", "MiB", s, [["rss-daemon", "daemon (`start`) VmRSS"], ["rss-fg", "foreground (`run`) VmRSS"]], "rss-fg"),
      table("Peak resident set", "MiB", s, [
        ["hwm-daemon", "daemon VmHWM"],
        ["hwm-fg", "foreground VmHWM"],
        ["peak-launcher", "launcher (`start` process) maxrss"],
        ["peak-bare", "bare `bun -e 0` maxrss"],
      ], "hwm-fg"),
    ],
    derived,
    notes,
  };
}
