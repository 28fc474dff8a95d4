/**
 * The PID file as status, stop, reload and start read it: what sits at the
 * path (FIFO, directory, device, socket, symlink), a start that is still
 * loading ("starting"), and locks held by processes that are not the daemon
 * (another user's, a non-dumpable one's).
 */
import { afterEach, describe, expect, test } from "bun:test";
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { join } from "node:path";
import { alive, BUN, cleanupProcesses, FIXTURE, forOtherUsers, isFlocked, ROOT, run, startedPid, tempDir, track, waitFor } from "./helpers.ts";

// Before cleanupProcesses(), so that it runs first: a start still in the
// background must have reported its daemon's pid before tracked pids are stopped.
const pending: Promise<void>[] = [];
afterEach(async () => {
  await Promise.all(pending.splice(0));
});
cleanupProcesses();
const dir = tempDir("bd-pidfile-");
const STRESS_APP = join(ROOT, "test/stress/fixtures/stress-app.ts");
const VICTIM = join(ROOT, "test/fixtures/pidfile-victim.ts");
const app = (...args: string[]) => [BUN, "run", FIXTURE, ...args];
const stress = (...args: string[]) => [BUN, "run", STRESS_APP, ...args];
let n = 0;
const pidPath = (base = dir) => join(base, `p${++n}.pid`);
const isRoot = process.getuid?.() === 0;

/** The daemon's startup takes this long before its PID can be written. */
const SLOW_LOAD = { STRESS_IMPORT_MS: "3000" };

/**
 * A `start` left running in the background; its daemon's pid is tracked once
 * it is known, even when the test fails before it awaits the start itself.
 */
function background(cmd: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  const p = run(cmd, { env });
  pending.push(p.then((r) => void track(startedPid(r.stdout))));
  return p;
}

async function locked(path: string): Promise<boolean> {
  return waitFor(() => existsSync(path) && isFlocked(path), 20_000, 5);
}

async function started(r: Promise<{ code: number; stdout: string; stderr: string }>): Promise<number> {
  const res = await r;
  expect(res).toMatchObject({ code: 0 });
  return track(startedPid(res.stdout))!;
}

/** Start a process and wait until it prints `line` (its handlers are in place by then). */
async function spawnReady(cmd: string[], line: string): Promise<number> {
  const p = Bun.spawn(cmd, { stdin: "ignore", stdout: "pipe", stderr: "inherit", cwd: ROOT });
  track(p.pid);
  const reader = p.stdout.getReader();
  let text = "";
  while (!text.includes(line)) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`${cmd.join(" ")} exited early: ${text}`);
    text += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  return p.pid;
}

describe("what sits at the PID path is not a PID file", () => {
  const cases: Array<[string, (path: string) => void | (() => void), RegExp]> = [
    ["a FIFO", (p) => void Bun.spawnSync(["mkfifo", p]), /is a FIFO, not a PID file/],
    ["a directory", (p) => mkdirSync(p), /is a directory, not a PID file/],
    ["/dev/null", () => {}, /is a character device, not a PID file/],
    [
      "a socket",
      (p) => {
        const s: Server = createServer().listen(p);
        return () => s.close();
      },
      /is a socket, not a PID file/,
    ],
    ["a symlink to a regular file", (p) => (writeFileSync(`${p}.target`, ""), symlinkSync(`${p}.target`, p)), /is a symlink to \S+\.target; PID files are never followed/],
  ];
  for (const [what, make, message] of cases) {
    test(`${what}: status exits 4, stop and reload 1, start refuses; none hangs; flags before and after the command`, async () => {
      const path = what === "/dev/null" ? "/dev/null" : pidPath();
      const undo = make(path);
      await Bun.sleep(50); // the socket is listening by now
      try {
        const status = await run(app("status", "--pid-file", path), { timeoutMs: 10_000 });
        expect(status).toMatchObject({ code: 4, stdout: "" });
        expect(status.stderr).toMatch(new RegExp(`^app: PID file ${path.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")} ${message.source}.*\\n$`));
        const stop = await run(app("--pid-file", path, "stop", "--timeout", "5"), { timeoutMs: 10_000 });
        expect(stop).toMatchObject({ code: 1, stdout: "" });
        expect(stop.stderr).toMatch(message);
        const reload = await run(app("reload", "--pid-file", path), { timeoutMs: 10_000 });
        expect(reload).toMatchObject({ code: 1, stdout: "" });
        expect(reload.stderr).toMatch(message);
        const start = await run(app("start", "--pid-file", path), { timeoutMs: 10_000 });
        expect(start).toMatchObject({ code: 1, stdout: "" });
        expect(start.stderr).toMatch(message);
        for (const r of [status, stop, reload, start]) expect(r.stderr.split("\n").length).toBe(2); // one line
      } finally {
        if (typeof undo === "function") undo();
      }
    }, 60_000);
  }
});

describe("a start that is still loading: 'starting' is a state of its own", () => {
  test("a stale PID file is emptied as soon as the new start holds it: no reader sees the dead pid; status says starting, start says already running", async () => {
    const pidFile = pidPath();
    const dead = await started(run(stress("start", "--pid-file", pidFile)));
    process.kill(dead, "SIGKILL");
    expect(await waitFor(() => !alive(dead))).toBe(true);
    expect(readFileSync(pidFile, "utf8")).toBe(`${dead}\n`);

    const launching = background(stress("start", "--pid-file", pidFile), SLOW_LOAD);
    expect(await locked(pidFile)).toBe(true);
    // `kill -USR1 $(cat pidfile)` must not reach whatever has the dead pid now.
    expect(readFileSync(pidFile, "utf8")).toBe("");
    const status = await run(stress("--pid-file", pidFile, "status"));
    expect(status.stdout).toMatch(/^stress is starting \(PID file \S+ is locked by pid \d+ and names no pid yet\)\n$/);
    expect(status.code).toBe(0);
    const again = await run(stress("start", "--pid-file", pidFile));
    expect(again.code).toBe(1);
    expect(again.stderr).toBe(`stress: already running (PID file ${pidFile} is locked by a starting daemon)\n`);
    const pid = await started(launching);
    expect(pid).not.toBe(dead);
    expect(readFileSync(pidFile, "utf8")).toBe(`${pid}\n`);
    expect((await run(stress("stop", "--pid-file", pidFile))).code).toBe(0);
  }, 60_000);

  test("reload while starting waits for the pid, then sends SIGHUP", async () => {
    const pidFile = pidPath();
    const launching = background(stress("start", "--pid-file", pidFile), SLOW_LOAD);
    expect(await locked(pidFile)).toBe(true);
    const reload = await run(stress("reload", "--pid-file", pidFile));
    const pid = await started(launching);
    expect(reload).toMatchObject({ code: 0, stdout: `reloaded stress (pid ${pid})\n` });
    expect(alive(pid)).toBe(true);
    expect((await run(stress("--pid-file", pidFile, "stop"))).code).toBe(0);
  }, 60_000);

  test("stop --timeout 60 while starting waits for the pid within its timeout, then stops the daemon", async () => {
    const pidFile = pidPath();
    const launching = background(stress("start", "--pid-file", pidFile), SLOW_LOAD);
    expect(await locked(pidFile)).toBe(true);
    const stop = await run(stress("--pid-file", pidFile, "stop", "--timeout", "60"));
    expect(stop.stderr).toBe("");
    expect(stop.code).toBe(0);
    const m = /^stopped stress \(pid (\d+)\)\n$/.exec(stop.stdout);
    expect(m).not.toBeNull();
    const pid = Number(m![1]);
    track(pid);
    expect(alive(pid)).toBe(false);
    await launching; // started or stopped before ready, depending on when the SIGTERM landed
    expect(existsSync(pidFile)).toBe(false);
  }, 60_000);

  test("stop with a timeout shorter than the start: one line, exit 1, the name said once", async () => {
    const pidFile = pidPath();
    const launching = background(stress("start", "--pid-file", pidFile), SLOW_LOAD);
    expect(await locked(pidFile)).toBe(true);
    const stop = await run(stress("stop", "--timeout", "1", "--pid-file", pidFile));
    expect(stop.code).toBe(1);
    expect(stop.stderr).toMatch(/^stress: still starting after 1 s \(PID file \S+ is locked by pid \d+ and names no pid yet\); try again or raise --timeout\n$/);
    const pid = await started(launching);
    expect((await run(stress("stop", "--pid-file", pidFile))).stdout).toBe(`stopped stress (pid ${pid})\n`);
  }, 60_000);
});

// Runs processes as other users: needs root (setpriv). They run a world-readable
// copy of bun and the program (forOtherUsers), so a clone nobody may enter still tests this.
const otherUsersCan = isRoot;
const whyNot = "needs root to run processes as other users";

describe.skipIf(!otherUsersCan)(`locks held by other users' processes${otherUsersCan ? "" : ` (skipped: ${whyNot})`}`, () => {
  const others = otherUsersCan ? forOtherUsers() : undefined;
  const app = (...args: string[]) => [others!.bun, "run", others!.fixture("test/fixtures/app.ts"), ...args];
  const asUser = (user: string, cmd: string[]) => ["setpriv", `--reuid=${user}`, `--regid=${user === "nobody" ? "nogroup" : user}`, "--clear-groups", ...cmd];
  // Other users must be able to reach the files: a world-searchable directory.
  const shared = join(dir, "shared");
  if (otherUsersCan) {
    mkdirSync(shared, { recursive: true });
    chmodSync(dir, 0o755);
    chmodSync(shared, 0o1777);
  }

  test("a crash left the PID file and another user holds a shared flock on it: status and stop name the holder, start replaces the file", async () => {
    const pidFile = pidPath(shared);
    const dead = await started(run(app("start", "--pid-file", pidFile)));
    process.kill(dead, "SIGKILL");
    expect(await waitFor(() => !alive(dead))).toBe(true);
    // Any user may open a 0644 file and flock it.
    const holder = Bun.spawn(asUser("nobody", ["flock", "--no-fork", "--shared", pidFile, "sleep", "600"]), { stdin: "ignore", stdout: "ignore", stderr: "inherit" });
    track(holder.pid);
    expect(await locked(pidFile)).toBe(true);

    const status = await run(app("status", "--pid-file", pidFile));
    expect(status.stdout).toBe(`app is not running (PID file ${pidFile} names pid ${dead}, which does not hold it; it is locked by pid ${holder.pid} (user nobody, sleep), which is not a daemon)\n`);
    expect(status.code).toBe(1);
    const stop = await run(app("--pid-file", pidFile, "stop"));
    expect(stop).toMatchObject({ code: 0, stdout: status.stdout });
    const reload = await run(app("reload", "--pid-file", pidFile));
    expect(reload).toMatchObject({ code: 7, stdout: status.stdout });

    const pid = await started(run(app("--pid-file", pidFile, "start")));
    expect(readFileSync(pidFile, "utf8")).toBe(`${pid}\n`);
    expect(isFlocked(pidFile)).toBe(true);
    expect((await run(app("status", "--pid-file", pidFile))).stdout).toMatch(new RegExp(`^app is running \\(pid ${pid}, up \\d+s\\)\\n$`));
    expect(alive(holder.pid)).toBe(true); // it keeps its lock, on the replaced file
    expect(await run(app("stop", "--pid-file", pidFile))).toMatchObject({ code: 0, stdout: `stopped app (pid ${pid})\n` });
  }, 60_000);

  test("another user locks an empty PID file: not 'starting' for ever; start replaces it", async () => {
    const pidFile = pidPath(shared);
    writeFileSync(pidFile, "");
    chmodSync(pidFile, 0o644);
    const holder = Bun.spawn(asUser("nobody", ["flock", "--no-fork", "--shared", pidFile, "sleep", "600"]), { stdin: "ignore", stdout: "ignore", stderr: "inherit" });
    track(holder.pid);
    expect(await locked(pidFile)).toBe(true);
    const status = await run(app("status", "--pid-file", pidFile));
    expect(status).toMatchObject({ code: 1, stdout: `app is not running (PID file ${pidFile} is empty; it is locked by pid ${holder.pid} (user nobody, sleep), which is not a daemon)\n` });
    const pid = await started(run(app("start", "--pid-file", pidFile)));
    expect(readFileSync(pidFile, "utf8")).toBe(`${pid}\n`);
    expect((await run(app("stop", "--pid-file", pidFile))).code).toBe(0);
  }, 60_000);

  test("a real daemon whose /proc/PID/fd this user cannot read is still found: its own POSIX lock names it in /proc/locks", async () => {
    const pidFile = pidPath(shared);
    // Started as nobody; root without CAP_SYS_PTRACE may signal it but not read its fds.
    const pid = await started(run(asUser("nobody", app("start", "--pid-file", pidFile)), { cwd: "/" }));
    const noPtrace = (cmd: string[]) => ["setpriv", "--bounding-set=-sys_ptrace", "--", ...cmd];
    const probe = await run(noPtrace(["ls", `/proc/${pid}/fd/`]), { cwd: "/" });
    const fdsHidden = await run(noPtrace(["stat", "-L", `/proc/${pid}/fd/0`]), { cwd: "/" });
    expect(probe.code === 0 && fdsHidden.code !== 0 || probe.code !== 0).toBe(true); // the fds really are out of reach
    expect(readFileSync("/proc/locks", "utf8")).toMatch(new RegExp(`POSIX\\s+ADVISORY\\s+READ\\s+${pid}\\s`));
    const status = await run(noPtrace(app("status", "--pid-file", pidFile)), { cwd: "/" });
    expect(status.stdout).toMatch(new RegExp(`^app is running \\(pid ${pid}, up \\d+s\\)\\n$`));
    const stop = await run(noPtrace(app("--pid-file", pidFile, "stop")), { cwd: "/" });
    expect(stop).toMatchObject({ code: 0, stdout: `stopped app (pid ${pid})\n` });
    expect(alive(pid)).toBe(false);
  }, 60_000);

  /**
   * The reported attack: user `daemon` plants the victim user's PID file naming a
   * non-dumpable process of the victim's and holds its lock. The victim's
   * /proc/PID/fd reads EACCES, so the pid cannot be checked; it must not be trusted.
   */
  for (const [who, reloadAs] of [
    ["the victim user itself", (cmd: string[]) => asUser("nobody", cmd)],
    ["root without CAP_SYS_PTRACE", (cmd: string[]) => ["setpriv", "--bounding-set=-sys_ptrace", "--", ...cmd]],
  ] as const) {
    test(`a planted PID file naming a non-dumpable process, locked by another user: reload by ${who} never signals it`, async () => {
      const pidFile = pidPath(shared);
      const signals = join(shared, `victim-${n}.signals`);
      writeFileSync(signals, "");
      chownSync(signals, 65534, 65534);
      const victim = await spawnReady(asUser("nobody", [others!.bun, others!.fixture("test/fixtures/pidfile-victim.ts"), signals, "nondumpable"]), "victim ready");
      // The attacker's file: created and locked by user daemon, naming the victim.
      const attacker = Bun.spawn(
        asUser("daemon", ["sh", "-c", `printf '%s\\n' ${victim} > ${pidFile} && chmod 644 ${pidFile} && exec flock --no-fork --shared ${pidFile} sleep 600`]),
        { stdin: "ignore", stdout: "ignore", stderr: "inherit" },
      );
      track(attacker.pid);
      expect(await locked(pidFile)).toBe(true);
      expect(readFileSync(pidFile, "utf8")).toBe(`${victim}\n`);

      const reload = await run(reloadAs(app("reload", "--pid-file", pidFile)), { cwd: "/" });
      const stop = await run(reloadAs(app("--pid-file", pidFile, "stop", "--timeout", "2")), { cwd: "/" });
      await Bun.sleep(300); // a signal, had one been sent, is logged by now
      expect(readFileSync(signals, "utf8")).toBe("");
      expect(alive(victim)).toBe(true);
      expect(reload.code).not.toBe(0);
      expect(reload.stdout).not.toContain("reloading");
      expect(stop.stdout).not.toContain("stopped");
      for (const r of [reload, stop]) expect(r.stdout + r.stderr).toContain(`pid ${victim}`);
      process.kill(victim, "SIGKILL");
    }, 60_000);
  }
});
