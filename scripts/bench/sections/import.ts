/** 6. Import cost of bun-daemon and of its dependencies, and the check that importing it does no work. */
import { join } from "node:path";
import { BUN, FIXTURES, interleave, runsOf, table, timed, type Options, type Section, type Step } from "../harness.ts";

export async function importCost(o: Options): Promise<Section> {
  const steps: Step[] = [
    async (s) => s.add("empty", timed([BUN, join(FIXTURES, "empty.ts")]).ms),
    async (s) => s.add("deps", timed([BUN, join(FIXTURES, "import-deps.ts")]).ms),
    async (s) => s.add("import", timed([BUN, join(FIXTURES, "import.ts")]).ms),
  ];
  const s = await interleave("import", runsOf(o), steps);
  const probe = JSON.parse(timed([BUN, join(FIXTURES, "import-probe.ts")]).stdout) as {
    same: boolean;
    before: Record<string, unknown>;
    after: Record<string, unknown>;
  };
  const notes = [
    probe.same
      ? `No work at import: open fds, caught/ignored/blocked signals and libc mappings are the same before and after \`await import("bun-daemon")\` (scripts/bench/import-probe.ts; threads ${probe.before.threads} → ${probe.after.threads} are Bun's own, loader and JIT, and not compared).`
      : `**Importing bun-daemon changed the process**: before ${JSON.stringify(probe.before)}, after ${JSON.stringify(probe.after)}.`,
  ];
  return {
    id: "import",
    title: "6. Import cost",
    tables: [
      table("Whole process, spawn to exit", "ms", s, [
        ["empty", "empty script"],
        ["deps", "its dependencies only (`citty`, `consola/core`)"],
        ["import", '`import "bun-daemon"`'],
      ], "empty"),
    ],
    derived: [
      { label: "import − empty", value: s.median("import") - s.median("empty"), unit: "ms" },
      { label: "of which dependencies", value: s.median("deps") - s.median("empty"), unit: "ms" },
    ],
    notes,
  };
}
