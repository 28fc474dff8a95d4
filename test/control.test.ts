/**
 * `stop` between its check and its signal: the pid it checked is recycled
 * by an unrelated process (staged for real in a private pid namespace, see
 * test/fixtures/pidfile-race.ts). The unrelated process must get nothing.
 */
import { expect, test } from "bun:test";
import { join } from "node:path";
import { BUN, cleanupProcesses, ROOT, run, tempDir } from "./helpers.ts";

cleanupProcesses();
const dir = tempDir("bd-control-");
const RACE = join(ROOT, "test/fixtures/pidfile-race.ts");

const isRoot = process.getuid?.() === 0;
const hasStrace = Bun.spawnSync(["sh", "-c", "command -v strace && command -v unshare"]).exitCode === 0;
const why = !isRoot ? "needs root for a private pid namespace and ns_last_pid" : !hasStrace ? "needs strace and unshare (apt-get install strace util-linux)" : "";

test.skipIf(why !== "")(`stop: a pid recycled between the check and the signal is never signalled${why ? ` (skipped: ${why})` : ""}`, async () => {
  const r = await run(["unshare", "--pid", "--fork", "--mount-proc", "--", BUN, RACE, join(dir, "race.pid"), join(dir, "victim.signals")], { timeoutMs: 60_000 });
  const report = JSON.parse(r.stdout.trim().split("\n").pop() || "{}");
  if (report.stop?.stdout !== "app is not running\n") console.error(`race report: ${r.stdout} ${r.stderr}`);
  expect(report.error).toBeUndefined();
  // The race was really staged: the unrelated process has the checked pid, and stop was still waiting to signal.
  expect(report.victim).toBe(report.daemon);
  expect(report.stillInDelay).toBe(true);
  expect(report.signals).toBe("");
  expect(report.victimAlive).toBe(true);
  expect(report.stop.stdout).toBe("app is not running\n");
  expect(report.stop.code).toBe(0);
}, 90_000);
