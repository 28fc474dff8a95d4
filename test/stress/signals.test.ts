/**
 * Signal storms and shutdown faults, checked from outside: the event log the
 * daemon appends to, /proc, the PID file and its lock, and the daemon's real
 * exit status as its subreaper sees it.
 */
import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { BUN, FIXTURE, alive, cleanupProcesses, isFlocked, run, tempDir, track } from "../helpers.ts";
import { monotonicNs } from "./fixtures/clock.ts";
import { EventLog, STRESS_APP, casePaths, expectNothingLeft, gone, must, reaped, waitForPid } from "./util.ts";

cleanupProcesses();
const dir = tempDir("bun-daemon-stress-signals-");

const fresh = casePaths(dir);

/** `start` the stress fixture; returns the daemon's pid once it is ready. */
async function startReady(pidFile: string, env: Record<string, string>): Promise<number> {
  const r = await run([BUN, STRESS_APP, "start", "--pid-file", pidFile], { env, timeoutMs: 60_000 });
  const pid = /started stress \(pid (\d+)\)/.exec(r.stdout)?.[1];
  if (r.code !== 0 || pid === undefined) throw new Error(`start failed (${r.code}): ${r.stderr}`);
  track(Number(pid));
  return Number(pid);
}

/** Reload runs in the log: number, start time (CLOCK_MONOTONIC ns). */
function reloadRuns(lines: string[]): Array<{ n: number; t: bigint }> {
  return lines.flatMap((l) => {
    const m = /^reload:start:(\d+):(\d+)$/.exec(l);
    return m ? [{ n: Number(m[1]), t: BigInt(m[2]!) }] : [];
  });
}

describe("1 000 SIGHUPs in a burst", () => {
  for (const reloadMs of [0, 20]) {
    test(`reloads never overlap, the daemon stays up, a reload runs after the last signal (reload takes ${reloadMs} ms)`, async () => {
      const { pidFile, events } = fresh("hup");
      const pid = await startReady(pidFile, { STRESS_EVENTS: events, STRESS_RELOAD_MS: String(reloadMs) });
      const log = new EventLog(events);
      await log.waitCount("ready", 1);

      for (let i = 0; i < 999; i++) process.kill(pid, "SIGHUP");
      const beforeLast = monotonicNs();
      process.kill(pid, "SIGHUP");
      const lines = await log.settle(1000);

      const runs = reloadRuns(lines);
      expect(lines.filter((l) => l.includes("OVERLAP"))).toEqual([]);
      expect(runs.length).toBeGreaterThan(0);
      expect(runs.length).toBeLessThanOrEqual(1000);
      // Every run that started also ended, one after the other: start n, end n, start n+1...
      const sequence = lines.filter((l) => l.startsWith("reload:")).map((l) => l.split(":").slice(0, 3).join(":"));
      expect(sequence).toEqual(runs.flatMap((r) => [`reload:start:${r.n}`, `reload:end:${r.n}`]));
      // Requests during a run are coalesced into one more run, so the last run began after the last signal.
      expect(runs.at(-1)!.t).toBeGreaterThan(beforeLast);

      expect(alive(pid)).toBe(true);
      const st = await run([BUN, STRESS_APP, "status", "--pid-file", pidFile]);
      expect(st.code).toBe(0);
      expect(st.stdout).toContain(`stress is running (pid ${pid}`);
      expect(isFlocked(pidFile)).toBe(true);

      // Not wedged: one more SIGHUP, exactly one more run.
      process.kill(pid, "SIGHUP");
      await log.waitCount("reload:end", runs.length + 1);
      await log.settle(300);
      expect(reloadRuns(log.lines).length).toBe(runs.length + 1);

      const stop = await run([BUN, STRESS_APP, "stop", "--pid-file", pidFile]);
      expect(stop.code).toBe(0);
      await expectNothingLeft(pidFile, pidFile);
      expect(existsSync(pidFile)).toBe(false);
    }, 60_000);
  }

  test("SIGHUPs during init are coalesced into one reload after ready", async () => {
    const { pidFile, events } = fresh("hup-init");
    const r = reaped([BUN, STRESS_APP, "start", "--pid-file", pidFile], { STRESS_EVENTS: events, STRESS_INIT_MS: "1500" });
    const pid = await waitForPid(pidFile);
    const log = new EventLog(events);
    await log.waitCount("init:start", 1);
    for (let i = 0; i < 1000; i++) process.kill(pid, "SIGHUP");
    expect(await r.launcher).toBe(0);
    await log.waitCount("reload:end", 1);
    const lines = await log.settle(500);
    expect(lines.filter((l) => l.startsWith("reload:start")).length).toBe(1);
    expect(lines.findIndex((l) => l.startsWith("reload:start"))).toBeGreaterThan(lines.indexOf("ready"));
    expect(alive(pid)).toBe(true);
    process.kill(pid, "SIGTERM");
    expect(await r.daemon(pid)).toBe("exit 0");
    await expectNothingLeft(pidFile, pidFile);
  }, 60_000);

  test("a SIGHUP (e.g. `reload` from logrotate) as soon as the PID file names the daemon does not kill it", async () => {
    const { pidFile, events } = fresh("hup-early");
    // The daemon takes 1 s to load its modules (heavy imports): a window no scheduler delay closes.
    const r = reaped([BUN, STRESS_APP, "start", "--pid-file", pidFile], { STRESS_EVENTS: events, STRESS_IMPORT_MS: "1000" });
    const pid = await waitForPid(pidFile);
    process.kill(pid, "SIGHUP");
    const code = await r.launcher;
    const end = code === 0 ? "still running" : await r.daemon(pid);
    if (code === 0) {
      process.kill(pid, "SIGTERM");
      await r.daemon(pid);
    }
    await expectNothingLeft(pidFile, pidFile);
    must(code === 0, `start exited ${code} (${r.stderr().trim().split("\n").at(-1)}); the daemon ended by ${end} before its SIGHUP handler existed`);
  }, 60_000);
});

describe("SIGTERM at awkward moments", () => {
  test("SIGTERM during init: start fails naming the signal, shutdown runs, PID file removed", async () => {
    const { pidFile, events } = fresh("term-init");
    const r = reaped([BUN, STRESS_APP, "start", "--pid-file", pidFile], { STRESS_EVENTS: events, STRESS_INIT_MS: "1000" });
    const pid = await waitForPid(pidFile);
    const log = new EventLog(events);
    await log.waitCount("init:start", 1);
    process.kill(pid, "SIGTERM");
    expect(await r.launcher).not.toBe(0);
    expect(r.stderr()).toContain("stress: failed to start: stopped by SIGTERM before it was ready");
    expect(await r.daemon(pid)).toBe("exit 1");
    const lines = await log.settle(300);
    // init had not been cut off (it finishes within shutdownTimeout), so its shutdown hook ran.
    expect(lines).toEqual(["init:start", "init:end", "shutdown:start:SIGTERM", "shutdown:end"]);
    await expectNothingLeft(pidFile, pidFile);
    expect(existsSync(pidFile)).toBe(false);
  }, 60_000);

  test("SIGTERM during a reload: the reload finishes first, then shutdown; later SIGHUPs start nothing", async () => {
    const { pidFile, events } = fresh("term-reload");
    const r = reaped([BUN, STRESS_APP, "start", "--pid-file", pidFile], { STRESS_EVENTS: events, STRESS_RELOAD_MS: "800" });
    expect(await r.launcher).toBe(0);
    const pid = await waitForPid(pidFile);
    const log = new EventLog(events);
    process.kill(pid, "SIGHUP");
    await log.waitCount("reload:start", 1);
    process.kill(pid, "SIGTERM");
    for (let i = 0; i < 100; i++) process.kill(pid, "SIGHUP");
    expect(await r.daemon(pid)).toBe("exit 0");
    const lines = new EventLog(events).poll();
    const tail = lines.slice(lines.indexOf("ready") + 1).map((l) => l.replace(/^(reload:start:\d+):\d+$/, "$1"));
    expect(tail).toEqual(["reload:start:1", "reload:end:1", "shutdown:start:SIGTERM", "shutdown:end"]);
    await expectNothingLeft(pidFile, pidFile);
    expect(existsSync(pidFile)).toBe(false);
  }, 60_000);

  test("SIGTERM twice during a stuck shutdown: exits at once with 128+15, PID file removed", async () => {
    const { pidFile, events } = fresh("term-twice");
    const r = reaped([BUN, STRESS_APP, "start", "--pid-file", pidFile], {
      STRESS_EVENTS: events,
      STRESS_SHUTDOWN: "hang",
      STRESS_SHUTDOWN_TIMEOUT: "600000",
    });
    expect(await r.launcher).toBe(0);
    const pid = await waitForPid(pidFile);
    const log = new EventLog(events);
    process.kill(pid, "SIGTERM");
    await log.waitCount("shutdown:start", 1);
    expect(alive(pid)).toBe(true); // stuck in its shutdown hook, for up to 10 minutes
    process.kill(pid, "SIGTERM");
    expect(await r.daemon(pid, 30_000)).toBe("exit 143");
    await expectNothingLeft(pidFile, pidFile);
    expect(existsSync(pidFile)).toBe(false);
  }, 60_000);

  test("SIGTERM twice in a row on a healthy daemon: it ends, PID file removed", async () => {
    const { pidFile, events } = fresh("term-burst");
    const r = reaped([BUN, STRESS_APP, "start", "--pid-file", pidFile], { STRESS_EVENTS: events });
    expect(await r.launcher).toBe(0);
    const pid = await waitForPid(pidFile);
    process.kill(pid, "SIGTERM");
    process.kill(pid, "SIGTERM");
    // Either the first finished the shutdown (0) or the second cut it short (143).
    expect(["exit 0", "exit 143"]).toContain(await r.daemon(pid));
    expect(new EventLog(events).poll()).toContain("shutdown:start:SIGTERM");
    await expectNothingLeft(pidFile, pidFile);
    expect(existsSync(pidFile)).toBe(false);
  }, 60_000);

  test("SIGTERM twice during init: start fails with 143, naming the second signal", async () => {
    const { pidFile, events } = fresh("term-twice-init");
    const r = reaped([BUN, STRESS_APP, "start", "--pid-file", pidFile], { STRESS_EVENTS: events, STRESS_INIT_MS: "5000" });
    const pid = await waitForPid(pidFile);
    await new EventLog(events).waitCount("init:start", 1);
    process.kill(pid, "SIGTERM");
    await Bun.sleep(100);
    process.kill(pid, "SIGTERM");
    expect(await r.launcher).toBe(143);
    expect(r.stderr()).toContain("stress: failed to start: killed by a second SIGTERM before it was ready");
    expect(await r.daemon(pid)).toBe("exit 143");
    await expectNothingLeft(pidFile, pidFile);
    expect(existsSync(pidFile)).toBe(false);
  }, 60_000);
});

describe("a shutdown hook that never resolves", () => {
  test("the daemon exits after the shutdown timeout, non-zero, later hooks still run, PID file removed", async () => {
    const { pidFile, events } = fresh("shutdown-hang");
    const logFile = join(dir, "shutdown-hang.log");
    const r = reaped([BUN, FIXTURE, "start", "--pid-file", pidFile, "--log-file", logFile], {
      APP_EVENTS: events,
      APP_SHUTDOWN: "hang",
      APP_SHUTDOWN_TIMEOUT: "1500",
    });
    expect(await r.launcher).toBe(0);
    const pid = await waitForPid(pidFile);
    const t0 = performance.now();
    const stop = await run([BUN, FIXTURE, "stop", "--pid-file", pidFile, "--timeout", "60"], { timeoutMs: 90_000 });
    const waited = performance.now() - t0;
    expect(stop.code).toBe(0);
    expect(stop.stdout).toContain(`stopped app (pid ${pid})`);
    expect(await r.daemon(pid)).toBe("exit 1");
    expect(waited).toBeGreaterThanOrEqual(1400); // it did wait for the stuck hook's timeout
    expect(await gone(pid)).toBe(true);
    // Reverse order: the stuck "second" first, then "first" and the module's hook all the same.
    const lines = new EventLog(events).poll().filter((l) => l.startsWith("shutdown"));
    expect(lines).toEqual(["shutdown:second:SIGTERM", "shutdown:first:SIGTERM", "shutdown:module:SIGTERM"]);
    const log = readFileSync(logFile, "utf8");
    expect(log).toContain(`shutdown hook "closeSecond" did not finish within 1500 ms; going on`);
    expect(log).toContain("stopped with status 1");
    await expectNothingLeft(pidFile, pidFile);
    expect(existsSync(pidFile)).toBe(false);
  }, 60_000);
});
