/**
 * 200 start/stop cycles with zero hangs (the full 1 000: `bun scripts/cycles.ts`).
 * Every cycle is checked from outside by runCycles: start exits 0 and the PID
 * file names a live, flock'd daemon; stop exits 0, the daemon is gone and so
 * is the PID file.
 */
import { expect, test } from "bun:test";
import { runCycles } from "../../scripts/cycles.ts";
import { cleanupProcesses, pidsMentioning, tempDir } from "../helpers.ts";

cleanupProcesses();
const dir = tempDir("bun-daemon-stress-cycles-");

test("200 start/stop cycles: no hang, every cycle clean, nothing left behind", async () => {
  const report = await runCycles({ count: 200, dir, timeoutMs: 30_000 });
  console.log(`cycles: ${report.ok}/${report.cycles} ok, ${report.hangs} hangs, ${report.ms} ms; start ms ${JSON.stringify(report.startMs)}, stop ms ${JSON.stringify(report.stopMs)}`);
  expect(report.failures).toEqual([]);
  expect(report.hangs).toBe(0);
  expect(report.ok).toBe(200);
  expect(report.leftover).toEqual([]);
  expect(pidsMentioning(dir)).toEqual([]);
}, 600_000);
