/** 3. Scaling with the live heap the launcher holds when it forks. */
import {
  DETACH_NOTE, detachMs, interleave, readMarks, readSetup, runsOf, slot, startTiny, statusKB, stopPid, table, tmpFile, verify, wallMs,
  type Derived, type Options, type Section, type Step,
} from "../harness.ts";

export async function launcherMemory(o: Options): Promise<Section> {
  const variants = [
    { key: "0", mb: 0, label: "no extra heap" },
    { key: "50", mb: 50, label: "50 MiB live heap" },
    { key: "500", mb: 500, label: "500 MiB live heap" },
    { key: "2048", mb: 2048, label: "2 GiB live heap" },
  ];
  const steps: Step[] = variants.map((v) => async (s) => {
    const { port, pidFile } = slot();
    const log = tmpFile("setup");
    const marks = tmpFile("marks");
    const env: Record<string, string> = v.mb ? { BENCH_HEAP_MB: String(v.mb), BENCH_SETUP_LOG: log, BENCH_MARKS: marks } : { BENCH_MARKS: marks };
    const d = startTiny(port, pidFile, env);
    const exited = wallMs();
    const setup = v.mb ? readSetup(log) : { ms: 0, rssMB: 0 };
    s.add(v.key, d.ms - setup.ms);
    s.add(`${v.key}:detach`, detachMs(marks));
    s.add(`${v.key}:exit`, exited - (readMarks(marks)["daemon listening"] ?? NaN));
    s.add(`${v.key}:setup`, setup.ms);
    s.add(`${v.key}:rss`, setup.rssMB);
    s.add(`${v.key}:daemon-rss`, statusKB(d.pid, "VmRSS") / 1024);
    await verify(port);
    stopPid(d.pid);
  });
  const s = await interleave("heap", runsOf(o), steps);

  const extra = (key: string) => s.median(key) - s.median("0");
  const extraDetach = (key: string) => s.median(`${key}:detach`) - s.median("0:detach");
  const extraExit = (key: string) => s.median(`${key}:exit`) - s.median("0:exit");
  const loaded = variants.filter((v) => v.mb);
  return {
    id: "heap",
    title: "3. Scaling with launcher memory",
    tables: [
      table("`start` wall time − fixture setup, live heap in the launcher", "ms", s, variants.map((v) => [v.key, v.label]), "0"),
      table("Of which: launcher main() → daemon runtime up (fork, fork, execve)", "ms", s, variants.map((v) => [`${v.key}:detach`, v.label]), "0:detach"),
      table("Of which: daemon listening → `start` exits (ready frame, launcher exit)", "ms", s, variants.map((v) => [`${v.key}:exit`, v.label]), "0:exit"),
    ],
    derived: [
      ...loaded.map((v): Derived => ({ label: `${v.label}: extra time, whole \`start\``, value: extra(v.key), unit: "ms" })),
      ...loaded.map((v): Derived => ({ label: `${v.label}: extra time, main() → daemon up`, value: extraDetach(v.key), unit: "ms" })),
      ...loaded.map((v): Derived => ({ label: `${v.label}: extra time, listening → \`start\` exits`, value: extraExit(v.key), unit: "ms" })),
      { label: "cost per GiB of launcher heap, whole `start` (from the 2 GiB point)", value: extra("2048") / 2, unit: "ms" },
    ],
    notes: [
      "Before main(), the launcher allocates the heap in 1 MiB Buffers and writes every page (untouched pages would cost fork nothing). Whole `start`: the wall time minus that allocation, which the fixture measures itself (median " +
        loaded.map((v) => `${v.mb} MiB: ${s.median(`${v.key}:setup`).toFixed(0)} ms`).join(", ") + ").",
      DETACH_NOTE,
      "Listening → `start` exits: until the caller has reaped the launcher, i.e. including the kernel freeing the launcher's memory at its exit.",
      `Launcher VmRSS after allocating (median): ${loaded.map((v) => `${v.mb} MiB: ${s.median(`${v.key}:rss`).toFixed(0)} MiB`).join(", ")}. The daemon's own VmRSS stays ${variants.map((v) => s.median(`${v.key}:daemon-rss`).toFixed(0)).join(" / ")} MiB: the heap is not carried across execve.`,
    ],
  };
}
