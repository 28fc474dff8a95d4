/**
 * 50 concurrent `start`s of one daemon: exactly one runs, 49 fail with
 * "already running", no stray process, the PID file names the survivor.
 */
import { expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { BUN, alive, cleanupProcesses, isFlocked, pidsMentioning, run, tempDir, track } from "../helpers.ts";
import { EventLog, STRESS_APP, expectNothingLeft, pidIn } from "./util.ts";

cleanupProcesses();
const dir = tempDir("bun-daemon-stress-concurrent-");

for (const [what, initMs] of [["instant init", "0"], ["a 1 s init (the others race a daemon still in init)", "1000"]] as const) {
  test(`50 concurrent starts, ${what}: exactly one runs`, async () => {
    const pidFile = join(dir, `one-${initMs}.pid`);
    const events = join(dir, `one-${initMs}.events`);
    const env = { STRESS_EVENTS: events, STRESS_INIT_MS: initMs };
    const results = await Promise.all(
      Array.from({ length: 50 }, () => run([BUN, STRESS_APP, "start", "--pid-file", pidFile], { env, timeoutMs: 120_000 })),
    );
    const winners = results.filter((r) => r.code === 0);
    const losers = results.filter((r) => r.code !== 0);
    expect(winners.length).toBe(1);
    expect(losers.length).toBe(49);
    const pid = Number(/^started stress \(pid (\d+)\)$/m.exec(winners[0]!.stdout)?.[1]);
    track(pid);
    for (const l of losers) {
      expect(l.stderr).toMatch(/^stress: already running \((pid \d+|PID file .* is locked by a starting daemon)\)$/m);
      expect(l.stdout).toBe("");
    }
    // Those that saw a pid saw the survivor's.
    for (const l of losers) {
      const seen = /already running \(pid (\d+)\)/.exec(l.stderr)?.[1];
      if (seen !== undefined) expect(Number(seen)).toBe(pid);
    }

    expect(alive(pid)).toBe(true);
    expect(pidIn(pidFile)).toBe(pid);
    expect(isFlocked(pidFile)).toBe(true);
    expect(pidsMentioning(pidFile)).toEqual([pid]);
    // Only the survivor ever ran init.
    expect(new EventLog(events).poll().filter((l) => l === "init:start")).toEqual(["init:start"]);

    const stop = await run([BUN, STRESS_APP, "stop", "--pid-file", pidFile]);
    expect(stop.code).toBe(0);
    expect(stop.stdout).toContain(`stopped stress (pid ${pid})`);
    await expectNothingLeft(pidFile, pidFile);
    expect(existsSync(pidFile)).toBe(false);
  }, 180_000);
}
