/**
 * Leaks: 1 000 reloads and 10 000 HTTP requests (served while the reloads
 * swap the route table) leave the daemon's fd count unchanged and its RSS
 * within 10 % of what it was after a warm-up.
 */
import { expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { BUN, alive, cleanupProcesses, run, tempDir, track } from "../helpers.ts";
import { EventLog, LOAD, STRESS_APP, expectNothingLeft, fdCount, freePort, rssKiB } from "./util.ts";

cleanupProcesses();
const dir = tempDir("bun-daemon-stress-leaks-");

test("1 000 reloads + 10 000 HTTP requests: fd count unchanged, RSS growth under 10 %", async () => {
  const pidFile = join(dir, "leaks.pid");
  const events = join(dir, "leaks.events");
  const config = join(dir, "leaks.json");
  writeFileSync(config, JSON.stringify({ routes: { "/": "hello", "/big": "x".repeat(4096) } }));
  const port = freePort();
  const env = { STRESS_EVENTS: events, STRESS_CONFIG: config, STRESS_PORT: String(port) };
  const start = await run([BUN, STRESS_APP, "start", "--pid-file", pidFile], { env, timeoutMs: 60_000 });
  expect(start.code).toBe(0);
  const pid = Number(/started stress \(pid (\d+)\)/.exec(start.stdout)?.[1]);
  track(pid);
  const log = new EventLog(events);
  let reloads = 0;

  /** `reloadCount` reloads one after the other (each waited for) while a separate process makes `requests` requests. */
  async function round(reloadCount: number, requests: number): Promise<void> {
    const load = Bun.spawn([BUN, LOAD, `http://127.0.0.1:${port}/`, String(requests), "16", "hello\n"], {
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
    });
    track(load.pid);
    for (let i = 0; i < reloadCount; i++) {
      // Rewrite the config now and then, so reloads really rebuild the table.
      if (i % 100 === 0) writeFileSync(config, JSON.stringify({ routes: { "/": "hello", "/big": "y".repeat(4096 + i) } }));
      process.kill(pid, "SIGHUP");
      reloads++;
      await log.waitCount("reload:end", reloads);
    }
    const [out, code] = await Promise.all([new Response(load.stdout).text(), load.exited]);
    expect(code).toBe(0);
    expect(JSON.parse(out)).toEqual({ ok: requests, bad: 0, errors: 0 });
  }

  /**
   * A reading once it has held still for 1.5 s (at most 10 s): the load's
   * connections are closed and the idle GC has run, so two readings compare
   * like with like instead of catching the heap at a random height.
   */
  async function quiet(read: () => number): Promise<number> {
    const end = performance.now() + 10_000;
    let value = read();
    let since = performance.now();
    while (performance.now() < end && performance.now() - since < 1500) {
      await Bun.sleep(100);
      const v = read();
      if (v !== value) {
        value = v;
        since = performance.now();
      }
    }
    return value;
  }

  // Warm-up: JIT, allocator pools and the HTTP server's buffers reach their working size.
  await round(300, 5000);
  const fdsBefore = await quiet(() => fdCount(pid));
  const rssBefore = await quiet(() => rssKiB(pid));

  await round(1000, 10_000);
  const fdsAfter = await quiet(() => fdCount(pid));
  const rssAfter = await quiet(() => rssKiB(pid));
  console.log(`leaks: fds ${fdsBefore} -> ${fdsAfter}; RSS ${rssBefore} -> ${rssAfter} KiB (${(((rssAfter - rssBefore) / rssBefore) * 100).toFixed(1)} %)`);

  expect(log.count("reload:OVERLAP")).toBe(0);
  expect(log.count("reload:end")).toBe(1300);
  expect(alive(pid)).toBe(true);
  expect(fdsAfter).toBe(fdsBefore);
  expect(rssAfter).toBeLessThan(rssBefore * 1.1);

  const stop = await run([BUN, STRESS_APP, "stop", "--pid-file", pidFile]);
  expect(stop.code).toBe(0);
  await expectNothingLeft(pidFile, pidFile);
}, 180_000);
