/**
 * The launcher's wait and the daemon stage (issue 6, items 3, 5, 7, 10, 12,
 * 14, 15, 18, 19, 25, 27): every way a start can end is decided once, the
 * daemon is gone before its PID file is, and the exit status is the real one.
 */
import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync, renameSync } from "node:fs";
import { join } from "node:path";
import { daemonize, DaemonError } from "../src/index.ts";
import { alive, BUN, cleanupProcesses, fdTargets, freePort, ROOT, run, startedPid, tempDir, track, waitFor } from "./helpers.ts";

cleanupProcesses();
const dir = tempDir("bd-launch-");
const APP = join(ROOT, "test/fixtures/launch-app.ts");
const RAW = join(ROOT, "test/fixtures/launch-raw.ts");
let n = 0;
const fresh = () => {
  n++;
  return { pidFile: join(dir, `l${n}.pid`), events: join(dir, `l${n}.events`) };
};
const lines = (path: string) => (existsSync(path) ? readFileSync(path, "utf8").split("\n").filter(Boolean) : []);
/** The daemon's pid as its init hook recorded it (tracked, so it is stopped after the test). */
const daemonPid = (events: string) => {
  const l = lines(events).find((x) => x.startsWith("init:start:"));
  return l ? track(Number(l.slice("init:start:".length))) : undefined;
};

async function runTracked(cmd: string[], env: Record<string, string> = {}) {
  const r = await run(cmd, { env });
  track(startedPid(r.stdout));
  return r;
}

describe("the launcher's wait", () => {
  test("a READY that comes after the ready timeout does not win (item 3)", async () => {
    const { pidFile, events } = fresh();
    // init blocks the thread for 1.5 s: the SIGTERM of the 1 s timeout is handled only after init returned.
    const r = await runTracked([BUN, APP, "start", "--pid-file", pidFile, "--ready-timeout", "1000"], { L_EVENTS: events, L_INIT_BLOCK_MS: "1500" });
    const pid = daemonPid(events);
    expect(r.stdout).toBe("");
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("launch: failed to start: not ready within 1000 ms; stopped the daemon");
    expect(pid).toBeDefined();
    expect(alive(pid!)).toBe(false);
    expect(existsSync(pidFile)).toBe(false);
  }, 30_000);

  for (const [sig, num] of [["SIGINT", 2], ["SIGTERM", 15], ["SIGHUP", 1]] as const) {
    test(`${sig} to the launcher stops the starting daemon, runs its shutdown, exits ${128 + num} (item 5)`, async () => {
      const { pidFile, events } = fresh();
      const proc = Bun.spawn([BUN, APP, "start", "--pid-file", pidFile], {
        env: { ...process.env, L_EVENTS: events, L_INIT_MS: "20000" },
        stdin: "ignore",
        stdout: "pipe",
        stderr: "pipe",
      });
      track(proc.pid);
      expect(await waitFor(() => daemonPid(events) !== undefined, 20_000)).toBe(true);
      const pid = daemonPid(events)!;
      proc.kill(sig);
      const code = await proc.exited;
      const stderr = await new Response(proc.stderr).text();
      expect(code).toBe(128 + num);
      expect(stderr).toContain(`launch: failed to start: interrupted by ${sig} before the daemon was ready; stopped it (pid ${pid})`);
      // One line of the launcher's own; the rest is the daemon's shutdown log, relayed.
      expect(stderr.split("\n").filter((l) => l.startsWith("launch:"))).toHaveLength(1);
      expect(await new Response(proc.stdout).text()).toBe("");
      expect(alive(pid)).toBe(false);
      expect(lines(events)).toContain("shutdown:SIGTERM");
      expect(existsSync(pidFile)).toBe(false);
    }, 30_000);
  }

  test("a corrupt status frame after the fork stops the daemon before the PID file goes (item 18)", async () => {
    const { pidFile, events } = fresh();
    const r = await runTracked([BUN, APP, "start", "--pid-file", pidFile], { L_EVENTS: events, L_CORRUPT: "1", L_INIT_MS: "20000" });
    const pid = daemonPid(events)!;
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("launch: failed to start: launcher: corrupt status frame");
    expect(alive(pid)).toBe(false);
    expect(lines(events)).toContain("shutdown:SIGTERM");
    expect(existsSync(pidFile)).toBe(false);
  }, 30_000);

  const strace = Bun.which("strace");
  test.skipIf(!strace)("a child that hangs between fork and exec is detected, killed and retried; start fails cleanly (item 10)", async () => {
    const { pidFile, events } = fresh();
    // Every grandchild's umask(2) (only the grandchild calls it) is delayed 6 s: past the launcher's bound (2 s and a bit).
    const r = await runTracked([strace!, "-f", "-qq", "-o", "/dev/null", "-e", "trace=umask", "-e", "inject=umask:delay_enter=6000000:when=1", BUN, APP, "start", "--pid-file", pidFile], { L_EVENTS: events });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("launch: the forked child hung before exec (grandchild pid");
    expect(r.stderr).toContain("killed it, forking again");
    expect(r.stderr).toContain("launch: failed to start: detach: the forked child hung before exec");
    expect(lines(events)).toEqual([]); // no daemon ever ran
    const hung = [...r.stderr.matchAll(/grandchild pid (\d+)/g)].map((m) => Number(m[1]));
    expect(hung.length).toBe(2);
    for (const pid of hung) expect(alive(pid)).toBe(false);
    expect(existsSync(pidFile)).toBe(false);
  }, 90_000);
});

describe("what a failed start shows (item 34)", () => {
  test("an init error is one relayed log line and the launcher's summary, no stack trace", async () => {
    const { pidFile } = fresh();
    const r = await runTracked([BUN, join(ROOT, "test/fixtures/app.ts"), "start", "--pid-file", pidFile], { APP_INIT: "throw" });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`app: failed to start: init hook "first" failed: config missing: /etc/app.conf`);
    expect(r.stderr).not.toContain("    at ");
  }, 30_000);
});

describe("exit statuses (item 15)", () => {
  test("a daemon that exits 3 at import makes start exit 3", async () => {
    const { pidFile } = fresh();
    const r = await runTracked([BUN, APP, "start", "--pid-file", pidFile], { L_IMPORT_EXIT: "3" });
    expect(r.code).toBe(3);
    expect(r.stderr).toContain("exited before it was ready (exit status 3)");
    expect(existsSync(pidFile)).toBe(false);
  }, 30_000);

  test("fail(err, 256) exits 255, not 0; fail(err, 0) exits 1", async () => {
    for (const [given, expected] of [["256", 255], ["0", 1], ["70", 70]] as const) {
      const { pidFile } = fresh();
      const r = await runTracked([BUN, RAW], { R_PID: pidFile, R_FAIL_CODE: given });
      expect(r.stderr).toContain("lraw: failed to start: cannot start");
      expect(r.code).toBe(expected);
    }
  }, 30_000);
});

describe("runtime flags (item 7)", () => {
  test("--no-orphans and --inspect are not passed to the daemon; other flags are", async () => {
    const { pidFile, events } = fresh();
    const port = freePort();
    const r = await runTracked([BUN, "--no-orphans", `--inspect=127.0.0.1:${port}`, "--smol", APP, "start", "--pid-file", pidFile], { L_EVENTS: events });
    expect(r.stderr).not.toContain("failed");
    expect(r.code).toBe(0);
    const pid = startedPid(r.stdout)!;
    const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
    expect(argv).toContain("--smol");
    expect(argv.some((a) => a.startsWith("--inspect") || a === "--no-orphans")).toBe(false);
    // --no-orphans would have killed it soon after the launcher exited.
    await Bun.sleep(1500);
    expect(alive(pid)).toBe(true);
  }, 30_000);
});

describe("the daemon stage", () => {
  test("a program spawned during init can still write after ready; its output reaches --log-file (item 12)", async () => {
    const { pidFile, events } = fresh();
    const log = join(dir, "spawn.log");
    const marker = join(dir, "spawn.marker");
    const r = await runTracked([BUN, APP, "start", "--pid-file", pidFile, "--log-file", log], { L_EVENTS: events, L_SPAWN: marker });
    expect(r.code).toBe(0);
    const child = Number(lines(events).find((l) => l.startsWith("child:"))!.slice(6));
    track(child);
    expect(await waitFor(() => existsSync(marker), 10_000)).toBe(true);
    expect(readFileSync(marker, "utf8")).toBe("child wrote\n");
    expect(await waitFor(() => readFileSync(log, "utf8").includes("late child output"), 5000)).toBe(true);
  }, 30_000);

  test("the log fd stays close-on-exec after a SIGUSR1 reopen (item 19)", async () => {
    const { pidFile } = fresh();
    const log = join(dir, "cloexec.log");
    const r = await runTracked([BUN, APP, "start", "--pid-file", pidFile, "--log-file", log]);
    const pid = startedPid(r.stdout)!;
    const cloexecOf = () => {
      const out = new Map<number, boolean>();
      for (const [fd, target] of fdTargets(pid)) {
        if (!target.startsWith(log)) continue;
        const flags = /^flags:\s*([0-7]+)/m.exec(readFileSync(`/proc/${pid}/fdinfo/${fd}`, "utf8"))![1]!;
        out.set(fd, (parseInt(flags, 8) & 0o2000000) !== 0);
      }
      return out;
    };
    const before = cloexecOf();
    expect(before.get(1)).toBe(false);
    expect(before.get(2)).toBe(false);
    const privateFds = [...before.keys()].filter((fd) => fd > 2);
    expect(privateFds.length).toBeGreaterThan(0);
    for (const fd of privateFds) expect(before.get(fd)).toBe(true);
    renameSync(log, `${log}.1`);
    process.kill(pid, "SIGUSR1");
    // Every fd that was on the old file is on the new one, with its flag as it was; fds the
    // runtime opened on the log meanwhile (its private dups of 1/2) are close-on-exec too.
    expect(await waitFor(() => existsSync(log) && [...before.keys()].every((fd) => cloexecOf().has(fd)), 5000)).toBe(true);
    const after = cloexecOf();
    for (const [fd, cloexec] of before) expect(after.get(fd)).toBe(cloexec);
    for (const [fd, cloexec] of after) expect(cloexec).toBe(fd > 2);
  }, 30_000);

  test("daemonize(): SIGTERM, SIGINT or SIGHUP to a daemon with no handler of its own removes its PID file (item 14)", async () => {
    for (const [sig, num] of [["SIGTERM", 15], ["SIGINT", 2], ["SIGHUP", 1]] as const) {
      const { pidFile } = fresh();
      const r = await runTracked([BUN, RAW], { R_PID: pidFile });
      expect(r.code).toBe(0);
      const pid = startedPid(r.stdout)!;
      expect(readFileSync(pidFile, "utf8")).toBe(`${pid}\n`);
      process.kill(pid, sig);
      expect(await waitFor(() => !alive(pid))).toBe(true);
      expect(existsSync(pidFile)).toBe(false);
      void num;
    }
  }, 30_000);

  test("daemonize() called twice says it was already called (item 27)", async () => {
    const { pidFile } = fresh();
    const r = await runTracked([BUN, RAW], { R_PID: pidFile, R_TWICE: "1" });
    expect(r.code).toBe(0);
    expect(r.stderr).toContain("second call: daemonize() already called");
    const both = fresh();
    const r2 = await runTracked([BUN, RAW], { R_PID: both.pidFile, R_BOTH: "1" });
    expect(r2.code).toBe(0);
    expect(r2.stderr).toContain("second: daemonize() already called");
  }, 30_000);

  test("daemonize() validates its options as defineDaemon does (item 25)", async () => {
    const bad: Array<[unknown, string]> = [
      [{ name: "../tmp/x" }, "is not usable"],
      [{ name: "" }, "is not usable"],
      [{ name: "a\0b" }, "is not usable"],
      [{ name: 42 }, "is not usable"],
      [{ name: "ok", pidFile: "" }, "pidFile must be a non-empty path"],
      [{ name: "ok", readyTimeout: 0.5 }, "readyTimeout must be a whole number"],
      [{ name: "ok", umask: 0o1000 }, "umask must be a whole number"],
    ];
    for (const [opts, text] of bad) {
      let caught: unknown;
      try {
        await daemonize(opts as never);
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(DaemonError);
      expect((caught as DaemonError).code).toBe("USAGE");
      expect((caught as Error).message).toContain(text);
    }
    expect(existsSync("/run/.pid")).toBe(false);
  });
});
