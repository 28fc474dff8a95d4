/**
 * PID reuse: a PID file left behind by a daemon that died without cleaning
 * up names a pid that now belongs to an unrelated live process. `status`
 * must say not running, `stop` and `reload` must never signal that process,
 * and `start` must succeed.
 */
import { expect, test } from "bun:test";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BUN, alive, cleanupProcesses, isFlocked, pidsMentioning, run, tempDir, track } from "../helpers.ts";
import { STRESS_APP, VICTIM, expectNothingLeft, gone, pidIn } from "./util.ts";

cleanupProcesses();
const dir = tempDir("bun-daemon-stress-pidreuse-");

/** Start the unrelated process; resolves once its signal handlers are installed. */
async function startVictim(signalLog: string): Promise<number> {
  const victim = Bun.spawn([BUN, VICTIM, signalLog], { stdin: "ignore", stdout: "pipe", stderr: "inherit" });
  track(victim.pid);
  const reader = victim.stdout.getReader();
  let text = "";
  while (!text.includes("victim ready")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`victim exited early: ${text}`);
    text += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  return victim.pid;
}

const signalsOf = (path: string) => (existsSync(path) ? readFileSync(path, "utf8") : "");

test("a stale PID file naming an unrelated live process: status, stop, reload leave it alone; start succeeds", async () => {
  const pidFile = join(dir, "reuse.pid");
  const signalLog = join(dir, "victim.signals");

  // A real daemon dies without cleaning up (SIGKILL): its PID file stays, unlocked.
  const first = await run([BUN, STRESS_APP, "start", "--pid-file", pidFile]);
  expect(first.code).toBe(0);
  const dead = pidIn(pidFile)!;
  track(dead);
  process.kill(dead, "SIGKILL");
  expect(await gone(dead)).toBe(true);
  expect(pidIn(pidFile)).toBe(dead);
  expect(isFlocked(pidFile)).toBe(false);

  // Its pid is reused by an unrelated process (simulated: we cannot choose pids).
  const victim = await startVictim(signalLog);
  writeFileSync(pidFile, `${victim}\n`);

  const status = await run([BUN, STRESS_APP, "status", "--pid-file", pidFile]);
  expect(status.code).toBe(1); // LSB: not running, PID file exists
  expect(status.stdout).toStartWith("stress is not running");
  expect(status.stdout).not.toContain("is running");

  const reload = await run([BUN, STRESS_APP, "reload", "--pid-file", pidFile]);
  expect(reload.code).toBe(7);
  expect(reload.stdout).toContain("stress is not running");

  const stop = await run([BUN, STRESS_APP, "stop", "--pid-file", pidFile, "--timeout", "2", "--kill"]);
  expect(stop.code).toBe(0);
  expect(stop.stdout).toContain("stress is not running");

  await Bun.sleep(300); // a signal, had one been sent, is logged by now
  expect(alive(victim)).toBe(true);
  expect(signalsOf(signalLog)).toBe("");

  const start = await run([BUN, STRESS_APP, "start", "--pid-file", pidFile]);
  expect(start.code).toBe(0);
  const pid = Number(/started stress \(pid (\d+)\)/.exec(start.stdout)?.[1]);
  track(pid);
  expect(pid).not.toBe(victim);
  expect(pidIn(pidFile)).toBe(pid);
  expect(isFlocked(pidFile)).toBe(true);
  expect((await run([BUN, STRESS_APP, "status", "--pid-file", pidFile])).stdout).toContain(`stress is running (pid ${pid}`);

  const stop2 = await run([BUN, STRESS_APP, "stop", "--pid-file", pidFile]);
  expect(stop2.code).toBe(0);
  expect(stop2.stdout).toContain(`stopped stress (pid ${pid})`);
  await expectNothingLeft(pidFile, pidFile);
  expect(existsSync(pidFile)).toBe(false);

  await Bun.sleep(300);
  expect(alive(victim)).toBe(true);
  expect(signalsOf(signalLog)).toBe("");
  expect(pidsMentioning(signalLog)).toEqual([victim]);
  process.kill(victim, "SIGKILL"); // it logs and survives SIGTERM, by design
}, 60_000);

test("a PID file locked by one process but naming another: the named process is never signalled", async () => {
  // E.g. the file was rewritten by hand while a holder kept the lock.
  const pidFile = join(dir, "locked-other.pid");
  const signalLog = join(dir, "victim2.signals");
  const victim = await startVictim(signalLog);
  // The holder: flock(1) on the path (execs sleep, which keeps the lock), as another tool might hold it.
  const holder = Bun.spawn(["flock", "--no-fork", "--exclusive", pidFile, "sleep", "600"], { stdin: "ignore", stdout: "ignore", stderr: "ignore" });
  track(holder.pid);
  for (let i = 0; i < 200 && !(existsSync(pidFile) && isFlocked(pidFile)); i++) await Bun.sleep(10);
  expect(isFlocked(pidFile)).toBe(true);
  writeFileSync(pidFile, `${victim}\n`);

  const status = await run([BUN, STRESS_APP, "status", "--pid-file", pidFile]);
  expect(status.stdout).toStartWith("stress is not running");
  const stop = await run([BUN, STRESS_APP, "stop", "--pid-file", pidFile, "--timeout", "2", "--kill"]);
  expect(stop.code).toBe(0);
  const reload = await run([BUN, STRESS_APP, "reload", "--pid-file", pidFile]);
  expect(reload.code).toBe(7);
  // The lock is really held: start refuses rather than run a second instance.
  const start = await run([BUN, STRESS_APP, "start", "--pid-file", pidFile]);
  expect(start.code).not.toBe(0);
  expect(start.stderr).toContain(`already running`);

  await Bun.sleep(300);
  expect(alive(victim)).toBe(true);
  expect(signalsOf(signalLog)).toBe("");
  expect(alive(holder.pid)).toBe(true);
  process.kill(victim, "SIGKILL");
}, 60_000);
