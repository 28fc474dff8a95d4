/** Hook semantics, observed through the fixture's event log and exit codes. */
import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync, renameSync, statSync } from "node:fs";
import { join } from "node:path";
import { alive, BUN, cleanupProcesses, FIXTURE, isFlocked, run, startedPid, tempDir, track, waitFor } from "./helpers.ts";

cleanupProcesses();
const dir = tempDir();
let n = 0;

function paths() {
  n++;
  return { pidFile: join(dir, `l${n}.pid`), events: join(dir, `l${n}.events`), log: join(dir, `l${n}.log`) };
}

const lines = (file: string) => (existsSync(file) ? readFileSync(file, "utf8").trim().split("\n").filter(Boolean) : []);

/** Start the fixture in the foreground; resolves once its ready hook ran. */
async function foreground(env: Record<string, string>, p = paths()) {
  const proc = Bun.spawn([BUN, "run", FIXTURE, "run", "--pid-file", p.pidFile], {
    env: { ...process.env, APP_EVENTS: p.events, ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  track(proc.pid);
  const stderr = new Response(proc.stderr).text();
  await waitFor(() => lines(p.events).some((l) => l.startsWith("ready:")) || proc.exitCode !== null);
  return { proc, stderr, ...p };
}

async function daemon(env: Record<string, string>, p = paths(), extra: string[] = []) {
  const r = await run([BUN, "run", FIXTURE, "start", "--pid-file", p.pidFile, ...extra], { env: { APP_EVENTS: p.events, ...env } });
  const pid = track(startedPid(r.stdout));
  return { r, pid, ...p };
}

describe("foreground", () => {
  test("init in order, ready, shutdown in reverse order on SIGTERM, exit 0, PID file gone", async () => {
    const f = await foreground({});
    expect(readFileSync(f.pidFile, "utf8")).toBe(`${f.proc.pid}\n`);
    expect(isFlocked(f.pidFile)).toBe(true);
    f.proc.kill("SIGTERM");
    expect(await f.proc.exited).toBe(0);
    expect(lines(f.events)).toEqual([
      "init:module",
      `init:first:foreground:${f.proc.pid}:`,
      "init:second",
      "ready:foreground",
      "shutdown:second:SIGTERM",
      "shutdown:first:SIGTERM",
      "shutdown:module:SIGTERM",
    ]);
    expect(existsSync(f.pidFile)).toBe(false);
    expect(await f.stderr).toContain("[info] [app] ready (pid");
  }, 30_000);

  test("SIGINT shuts down like SIGTERM", async () => {
    const f = await foreground({});
    f.proc.kill("SIGINT");
    expect(await f.proc.exited).toBe(0);
    expect(lines(f.events)).toContain("shutdown:module:SIGINT");
  }, 30_000);

  test("a daemon with nothing left in its event loop stays up until told to stop", async () => {
    const f = await foreground({}); // the fixture holds no handle without APP_PORT
    await Bun.sleep(1500);
    expect(f.proc.exitCode).toBeNull();
    f.proc.kill("SIGTERM");
    expect(await f.proc.exited).toBe(0);
  }, 30_000);

  test("ctx.stop() from a hook runs shutdown with its reason and exits 0", async () => {
    const f = await foreground({ APP_STOP_IN_READY: "1" });
    expect(await f.proc.exited).toBe(0);
    expect(lines(f.events)).toContain("shutdown:first:stop from ready");
  }, 30_000);

  test("a shutdown hook that never resolves: exit after the shutdown timeout, non-zero, PID file removed", async () => {
    const f = await foreground({ APP_SHUTDOWN: "hang", APP_SHUTDOWN_TIMEOUT: "500" });
    f.proc.kill("SIGTERM");
    expect(await f.proc.exited).toBe(1);
    // The hung hook did not stop the ones after it (reverse order: second, first, module).
    expect(lines(f.events).slice(-3)).toEqual(["shutdown:second:SIGTERM", "shutdown:first:SIGTERM", "shutdown:module:SIGTERM"]);
    expect(await f.stderr).toContain(`shutdown hook "closeSecond" did not finish within 500 ms`);
    expect(existsSync(f.pidFile)).toBe(false);
  }, 30_000);

  test("a second SIGTERM during shutdown exits at once, non-zero", async () => {
    const f = await foreground({ APP_SHUTDOWN: "hang", APP_SHUTDOWN_TIMEOUT: "600000" });
    f.proc.kill("SIGTERM");
    await waitFor(() => lines(f.events).includes("shutdown:second:SIGTERM"));
    f.proc.kill("SIGTERM");
    expect(await f.proc.exited).toBe(143);
    expect(existsSync(f.pidFile)).toBe(false);
  }, 30_000);

  test("a throwing shutdown hook is logged, the rest still run, exit non-zero", async () => {
    const f = await foreground({ APP_SHUTDOWN: "throw" });
    f.proc.kill("SIGTERM");
    expect(await f.proc.exited).toBe(1);
    expect(lines(f.events)).toContain("shutdown:module:SIGTERM");
    expect(await f.stderr).toContain("shutdown failed");
  }, 30_000);

  test("reloads never overlap; requests during a reload coalesce into one more run", async () => {
    const f = await foreground({ APP_RELOAD: "slow" });
    f.proc.kill("SIGHUP");
    await waitFor(() => lines(f.events).includes("reload:start:1"));
    // While reload 1 runs (200 ms), more requests arrive: they make one more run, not three.
    for (let i = 0; i < 3; i++) {
      f.proc.kill("SIGHUP");
      await Bun.sleep(20);
    }
    await waitFor(() => lines(f.events).filter((l) => l.startsWith("reload:end")).length >= 2);
    await Bun.sleep(600);
    const ev = lines(f.events);
    expect(ev).not.toContain("reload:OVERLAP");
    expect(ev).not.toContain("reload:UNREGISTERED");
    // One running + one coalesced: exactly two runs.
    expect(ev.filter((l) => l.startsWith("reload:start"))).toEqual(["reload:start:1", "reload:start:2"]);
    f.proc.kill("SIGTERM");
    expect(await f.proc.exited).toBe(0);
  }, 30_000);

  test("a throwing reload hook is logged and the daemon keeps running", async () => {
    const f = await foreground({ APP_RELOAD: "throw" });
    f.proc.kill("SIGHUP");
    await waitFor(() => lines(f.events).includes("reload:end:1"));
    await Bun.sleep(200);
    expect(f.proc.exitCode).toBeNull();
    f.proc.kill("SIGHUP");
    expect(await waitFor(() => lines(f.events).includes("reload:end:2"))).toBe(true);
    f.proc.kill("SIGTERM");
    expect(await f.proc.exited).toBe(0);
    expect(await f.stderr).toContain("bad config on reload");
  }, 30_000);
});

describe("daemon mode", () => {
  test("init throws: launcher fails with the error and the hook, shutdown runs for what started, nothing left", async () => {
    const d = await daemon({ APP_INIT: "throw" });
    expect(d.r.code).toBe(1);
    expect(d.r.stderr).toContain(`app: failed to start: init hook "first" failed: config missing: /etc/app.conf`);
    const ev = lines(d.events);
    // The module registered its init and shutdown before "first": it started, so it is shut down.
    expect(ev).toContain("shutdown:module:init failed");
    // "first" failed and "second" never ran: their shutdown hooks do not run.
    expect(ev.filter((l) => l.startsWith("shutdown:first") || l.startsWith("shutdown:second"))).toEqual([]);
    expect(ev).not.toContain("init:second");
    expect(existsSync(d.pidFile)).toBe(false);
  }, 30_000);

  test("process.exit(3) in init: launcher exits 3 and says so", async () => {
    const d = await daemon({ APP_INIT: "exit3" });
    expect(d.r.code).toBe(3);
    expect(d.r.stderr).toContain("exited with status 3 before it was ready");
    expect(existsSync(d.pidFile)).toBe(false);
  }, 30_000);

  test("SIGKILL before ready: launcher fails, PID file removed", async () => {
    const d = await daemon({ APP_INIT: "kill" });
    expect(d.r.code).toBe(128 + 9); // as a shell reports a process killed by SIGKILL
    expect(d.r.stderr).toMatch(/the daemon \(pid \d+\) exited before it was ready \(killed by SIGKILL\)/);
    expect(existsSync(d.pidFile)).toBe(false);
  }, 30_000);

  test("an uncaught exception during init runs shutdown and fails the start", async () => {
    const d = await daemon({ APP_INIT: "uncaught" });
    expect(d.r.code).toBe(1);
    expect(d.r.stderr).toContain("uncaught in init");
    expect(existsSync(d.pidFile)).toBe(false);
  }, 30_000);

  test("not ready within --ready-timeout: launcher fails and the daemon is gone", async () => {
    const p = paths();
    const d = await daemon({ APP_INIT: "hang", APP_SHUTDOWN_TIMEOUT: "300" }, p, ["--ready-timeout", "700"]);
    expect(d.r.code).toBe(1);
    expect(d.r.stderr).toContain("not ready within 700 ms");
    const pid = Number(/pid (\d+)/.exec(d.r.stderr)?.[1]);
    expect(pid).toBeGreaterThan(1);
    expect(alive(pid)).toBe(false);
    expect(existsSync(p.pidFile)).toBe(false);
  }, 30_000);

  test("--ready-timeout 0 waits for ever rather than failing at once", async () => {
    const d = await daemon({ APP_INIT: "slow" }, paths(), ["--ready-timeout", "0"]);
    expect(d.r.code).toBe(0);
    expect(alive(d.pid!)).toBe(true);
  }, 30_000);

  test("hooks get mode, pid and parsed args; ready hooks run after the launcher returned", async () => {
    const d = await daemon({}, paths(), ["--tag", "hi"]);
    expect(d.r.code).toBe(0);
    await waitFor(() => lines(d.events).includes("ready:daemon"));
    expect(lines(d.events)).toContain(`init:first:daemon:${d.pid}:hi`);
  }, 30_000);

  test("SIGUSR1 reopens the log file (logrotate's create + postrotate)", async () => {
    const p = paths();
    const d = await daemon({}, p, ["--log-file", p.log]);
    expect(d.r.code).toBe(0);
    await waitFor(() => readFileSync(p.log, "utf8").includes("after ready"));
    renameSync(p.log, `${p.log}.1`);
    process.kill(d.pid!, "SIGUSR1");
    expect(await waitFor(() => existsSync(p.log) && readFileSync(p.log, "utf8").includes("log file reopened"))).toBe(true);
    process.kill(d.pid!, "SIGHUP");
    expect(await waitFor(() => readFileSync(p.log, "utf8").includes("reloading"))).toBe(true);
    expect(readFileSync(`${p.log}.1`, "utf8")).not.toContain("reloading");
    expect(statSync(p.log).size).toBeGreaterThan(0);
  }, 30_000);
});
