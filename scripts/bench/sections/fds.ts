/** 2. Scaling with the fds the launcher holds open, and with its hard RLIMIT_NOFILE. */
import { readdirSync, readFileSync } from "node:fs";
import {
  DETACH_NOTE, detachMs, fmt, interleave, noise, readSetup, runsOf, slot, startTiny, stopPid, table, tmpFile, verify,
  type Derived, type Options, type Section, type Step,
} from "../harness.ts";

/** The highest hard RLIMIT_NOFILE we can give the launcher: 1 048 576 if the kernel and our privileges allow. */
function nofileCeiling(notes: string[]): number {
  const want = 1_048_576;
  const nrOpen = Number(readFileSync("/proc/sys/fs/nr_open", "utf8").trim());
  const hardText = /^Max open files\s+\S+\s+(\S+)/m.exec(readFileSync("/proc/self/limits", "utf8"))?.[1] ?? "1024";
  const hard = hardText === "unlimited" ? nrOpen : Number(hardText);
  const capEff = BigInt(`0x${/^CapEff:\s*([0-9a-f]+)/m.exec(readFileSync("/proc/self/status", "utf8"))?.[1] ?? "0"}`);
  const canRaise = ((capEff >> 24n) & 1n) === 1n; // CAP_SYS_RESOURCE
  const ceiling = canRaise ? Math.min(want, nrOpen) : Math.min(want, hard);
  if (ceiling < want) {
    notes.push(
      `**Hard RLIMIT_NOFILE is ${fmt(ceiling)}, not ${fmt(want)}**: ${canRaise ? `fs.nr_open is ${nrOpen}` : "no CAP_SYS_RESOURCE here, so the inherited hard limit cannot be raised"}. The largest fd count is capped to fit it.`,
    );
  }
  return ceiling;
}

export async function inheritedFds(o: Options): Promise<Section> {
  const notes: string[] = [];
  const limit = nofileCeiling(notes);
  const most = limit >= 50_000 + 512 ? 50_000 : Math.floor((limit - 512) / 1000) * 1000;
  const variants = [
    { key: "small-limit", fds: 10, nofile: 1024, label: "10 fds, hard limit 1 024" },
    { key: "10", fds: 10, nofile: limit, label: `10 fds, hard limit ${fmt(limit)}` },
    { key: "1000", fds: 1000, nofile: limit, label: `1 000 fds, hard limit ${fmt(limit)}` },
    { key: "most", fds: most, nofile: limit, label: `${fmt(most)} fds, hard limit ${fmt(limit)}` },
  ].filter((v) => v.fds + 512 <= v.nofile && (v.key !== "most" || most > 1000));
  const steps: Step[] = variants.map((v) => async (s) => {
    const { port, pidFile } = slot();
    const log = tmpFile("setup");
    const marks = tmpFile("marks");
    const d = startTiny(port, pidFile, { BENCH_NOFILE: String(v.nofile), BENCH_FDS: String(v.fds), BENCH_SETUP_LOG: log, BENCH_MARKS: marks });
    const setup = readSetup(log);
    s.add(v.key, d.ms - setup.ms);
    s.add(`${v.key}:detach`, detachMs(marks));
    s.add(`${v.key}:setup`, setup.ms);
    s.add(`${v.key}:daemon-fds`, readdirSync(`/proc/${d.pid}/fd`).length);
    await verify(port);
    stopPid(d.pid);
  });
  const s = await interleave("fds", runsOf(o), steps);

  const last = variants[variants.length - 1]!;
  // "Within noise": the ratio is off 1 by less than the rows' own spread.
  const flat = (label: string, key: string, ref: string): Derived => {
    const ratio = s.median(key) / s.median(ref);
    const tolerance = Math.max(0.05, noise(s, key), noise(s, ref));
    return { label, value: ratio, unit: "×", target: `flat, within noise: ±${(tolerance * 100).toFixed(0)} %`, met: Math.abs(ratio - 1) <= tolerance };
  };
  notes.push(
    "The launcher (the `start` process) sets its RLIMIT_NOFILE and dup()s /dev/null to hold the fds, not close-on-exec, before main(). Whole `start`: the wall time minus that setup, which the fixture measures itself (median " +
      variants.map((v) => `${v.label}: ${s.median(`${v.key}:setup`).toFixed(1)} ms`).join("; ") + ").",
    DETACH_NOTE,
    `Open fds in the daemon (median): ${variants.map((v) => `${v.label}: ${s.median(`${v.key}:daemon-fds`)}`).join("; ")}. None of the launcher's fds reach it.`,
  );
  return {
    id: "fds",
    title: "2. Scaling with inherited fds",
    tables: [
      table("`start` wall time − fixture setup, N fds open in the launcher", "ms", s, variants.map((v) => [v.key, v.label]), "10"),
      table("Of which: launcher main() → daemon runtime up (fork, fork, execve)", "ms", s, variants.map((v) => [`${v.key}:detach`, v.label]), "10:detach"),
    ],
    derived: [
      flat(`${fmt(last.fds)} / 10 fds, whole \`start\``, last.key, "10"),
      flat(`${fmt(last.fds)} / 10 fds, main() → daemon up`, `${last.key}:detach`, "10:detach"),
      flat(`hard limit ${fmt(limit)} / 1 024 (10 fds), whole \`start\``, "10", "small-limit"),
      flat(`hard limit ${fmt(limit)} / 1 024 (10 fds), main() → daemon up`, "10:detach", "small-limit:detach"),
    ],
    notes,
  };
}
