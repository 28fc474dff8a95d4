/** Start and stop one daemon 200 times: every start ready, every stop complete, nothing left. */
import { expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { alive, BUN, cleanupProcesses, FIXTURE, pidsMentioning, run, startedPid, tempDir, track } from "./helpers.ts";

cleanupProcesses();
const dir = tempDir();
const CYCLES = Number(process.env.BUN_DAEMON_CYCLES ?? 200);

test(`${CYCLES} start/stop cycles with no hang`, async () => {
  const pidFile = join(dir, "cycle.pid");
  const seen = new Set<number>();
  for (let i = 0; i < CYCLES; i++) {
    // Each command is bounded: a hang fails the cycle that hung, with its number.
    const s = await run([BUN, "run", FIXTURE, "start", "--pid-file", pidFile], { timeoutMs: 20_000 });
    const pid = track(startedPid(s.stdout));
    expect({ i, code: s.code, stderr: s.stderr, pid: pid !== undefined }).toEqual({ i, code: 0, stderr: "", pid: true });
    seen.add(pid!);
    const t = await run([BUN, "run", FIXTURE, "stop", "--pid-file", pidFile], { timeoutMs: 20_000 });
    expect({ i, code: t.code, stdout: t.stdout }).toEqual({ i, code: 0, stdout: `stopped app (pid ${pid})\n` });
    expect({ i, alive: alive(pid!), pidFile: existsSync(pidFile) }).toEqual({ i, alive: false, pidFile: false });
  }
  expect(seen.size).toBe(CYCLES);
  expect(pidsMentioning(pidFile)).toEqual([]);
}, 900_000);
