/**
 * Fault matrix: every way a start can fail. Each case checks, from outside:
 * the launcher exits non-zero, its message names the step that failed, no
 * process is left behind, and no locked PID file is left.
 */
import { describe, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BUN, FIXTURE, cleanupProcesses, forOtherUsers, isFlocked, pidsMentioning, run, tempDir, track, waitFor } from "../helpers.ts";
import { EventLog, RAW, casePaths, expectNothingLeft, must, reaped, waitForPid } from "./util.ts";

cleanupProcesses();
const dir = tempDir("bun-daemon-stress-faults-");

const fresh = casePaths(dir);

function start(pidFile: string, env: Record<string, string>, extra: string[] = []) {
  return run([BUN, FIXTURE, "start", "--pid-file", pidFile, ...extra], { env, timeoutMs: 90_000 });
}

describe("the daemon fails before it is ready", () => {
  test("init throws", async () => {
    const { pidFile, events } = fresh("throw");
    const r = await start(pidFile, { APP_INIT: "throw", APP_EVENTS: events });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`app: failed to start: init hook "first" failed: config missing: /etc/app.conf`);
    expect(r.stdout).not.toContain("started");
    await expectNothingLeft(pidFile, pidFile);
    expect(existsSync(pidFile)).toBe(false);
    // What had started (the module's init) was shut down; the failed hook's own shutdown did not run.
    const log = new EventLog(events).poll();
    expect(log).toContain("shutdown:module:init failed");
    expect(log.filter((l) => l.startsWith("shutdown:first") || l.startsWith("shutdown:second"))).toEqual([]);
  }, 30_000);

  test("init never resolves: ready timeout, and what had started is shut down", async () => {
    const { pidFile, events } = fresh("hang");
    const r = await start(pidFile, { APP_INIT: "hang", APP_EVENTS: events, APP_SHUTDOWN_TIMEOUT: "1000" }, ["--ready-timeout", "1500"]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/app: failed to start: not ready within 1500 ms; stopped the daemon \(pid \d+\)/);
    await expectNothingLeft(pidFile, pidFile);
    expect(existsSync(pidFile)).toBe(false);
    expect(new EventLog(events).poll()).toContain("shutdown:module:SIGTERM");
  }, 30_000);

  test("ready timeout with the default 10 s shutdownTimeout: shutdown hooks still run (no SIGKILL before them)", async () => {
    const { pidFile, events } = fresh("hang10");
    const env = { APP_INIT: "hang", APP_EVENTS: events, APP_SHUTDOWN_TIMEOUT: "10000" };
    const r = reaped([BUN, FIXTURE, "start", "--pid-file", pidFile, "--ready-timeout", "1000"], env);
    const pid = await waitForPid(pidFile);
    expect(await r.launcher).not.toBe(0);
    expect(r.stderr()).toContain("not ready within 1000 ms");
    const end = await r.daemon(pid);
    await expectNothingLeft(pidFile, pidFile);
    expect(existsSync(pidFile)).toBe(false);
    // The daemon cuts the stuck init off after shutdownTimeout, runs the shutdown
    // hooks of what had started and exits 1; the launcher must give it that time.
    must(end === "exit 1", `the launcher SIGKILLed the daemon 5 s after SIGTERM (daemon ended by ${end})`);
    must(new EventLog(events).poll().includes("shutdown:module:SIGTERM"), "shutdown hooks of completed init never ran");
  }, 60_000);

  test("process.exit(3) inside init", async () => {
    const { pidFile } = fresh("exit3");
    const r = await start(pidFile, { APP_INIT: "exit3" });
    expect(r.code).toBe(3);
    expect(r.stderr).toContain("app: failed to start: the daemon exited with status 3 before it was ready");
    await expectNothingLeft(pidFile, pidFile);
    expect(existsSync(pidFile)).toBe(false);
  }, 30_000);

  test("the daemon SIGKILLs itself during init", async () => {
    const { pidFile } = fresh("selfkill");
    const r = await start(pidFile, { APP_INIT: "kill" });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/app: failed to start: the daemon \(pid \d+\) exited before it was ready/);
    await expectNothingLeft(pidFile, pidFile);
    expect(existsSync(pidFile)).toBe(false);
  }, 30_000);

  test("the daemon is SIGKILLed from outside before ready: the launcher notices at once, not at the ready timeout", async () => {
    const { pidFile, events } = fresh("extkill");
    const pending = start(pidFile, { APP_INIT: "hang", APP_EVENTS: events }, ["--ready-timeout", "600000"]);
    const pid = await waitForPid(pidFile);
    await new EventLog(events).waitCount("init:first", 1);
    process.kill(pid, "SIGKILL");
    const r = await pending;
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`app: failed to start: the daemon (pid ${pid}) exited before it was ready`);
    expect(r.stderr).not.toContain("not ready within");
    await expectNothingLeft(pidFile, pidFile);
    expect(existsSync(pidFile)).toBe(false);
  }, 60_000);

  test("a throw at import of the re-executed program", async () => {
    const { pidFile } = fresh("import");
    const r = await start(pidFile, { APP_IMPORT: "throw" });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("boom at import"); // relayed from the daemon's stderr
    expect(r.stderr).toMatch(/app: failed to start: the daemon \(pid \d+\) exited before it was ready/);
    await expectNothingLeft(pidFile, pidFile);
    expect(existsSync(pidFile)).toBe(false);
  }, 30_000);

  test("daemonize(): a daemon that reports failure and does not exit is not left behind", async () => {
    const { pidFile } = fresh("linger");
    const r = await run([BUN, RAW, pidFile], { env: { RAW_MODE: "fail-linger" }, timeoutMs: 60_000 });
    for (const p of pidsMentioning(pidFile)) track(p); // stopped after the test whatever happens
    expect(r.code).toBe(4);
    expect(r.stderr).toContain("raw: failed to start: cannot bind: address in use");
    await waitFor(() => pidsMentioning(pidFile).length === 0, 8000);
    const left = pidsMentioning(pidFile);
    for (const p of left) track(p);
    must(left.length === 0, `the launcher exited ${r.code} at once; the failed daemon (pid ${left.join(", ")}) keeps running without a PID file`);
  }, 60_000);
});

describe("the PID file cannot be used", () => {
  test("its directory is missing", async () => {
    const pidFile = join(dir, "missing", "sub", "app.pid");
    const r = await start(pidFile, {});
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`app: open PID file: open ${pidFile} failed: ENOENT (create the directory first, or choose another path)`);
    expect(existsSync(join(dir, "missing"))).toBe(false);
    await expectNothingLeft(pidFile, pidFile);
  }, 30_000);

  // Root ignores permission bits, so the launcher runs as nobody. The clone
  // may sit where nobody cannot enter (under /root, in a `mkdir -m 700`
  // directory), so nobody gets its own world-readable copy of the runtime
  // and the program, and a working directory it may enter.
  const asNobody = (cmd: string[]) => ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", ...cmd];
  const others = process.getuid?.() === 0 ? forOtherUsers() : undefined;
  const startAsNobody = (pidFile: string) => {
    const c = others!;
    return run(asNobody([c.bun, c.fixture("test/fixtures/app.ts"), "start", "--pid-file", pidFile]), { timeoutMs: 60_000, cwd: c.root });
  };

  test("it is not writable (launcher as nobody, root-owned 0644 file in a directory nobody can't list)", async () => {
    const ro = join(dir, "ro-file");
    mkdirSync(ro);
    const pidFile = join(ro, "app.pid");
    writeFileSync(pidFile, "123456\n", { mode: 0o644 });
    chmodSync(pidFile, 0o644);
    chmodSync(dir, 0o711);
    chmodSync(ro, 0o711);
    const before = statSync(pidFile);
    const r = await startAsNobody(pidFile);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`app: open PID file: open ${pidFile} failed: EACCES`);
    expect(readFileSync(pidFile, "utf8")).toBe("123456\n");
    expect(statSync(pidFile).mtimeMs).toBe(before.mtimeMs);
    expect(isFlocked(pidFile)).toBe(false);
    await expectNothingLeft(pidFile, pidFile);
  }, 30_000);

  test("it cannot be created (launcher as nobody, root-owned directory)", async () => {
    const ro = join(dir, "ro-dir");
    mkdirSync(ro, { mode: 0o755 });
    chmodSync(dir, 0o711);
    const pidFile = join(ro, "app.pid");
    const r = await startAsNobody(pidFile);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`app: open PID file: open ${pidFile} failed: EACCES`);
    expect(existsSync(pidFile)).toBe(false);
    await expectNothingLeft(pidFile, pidFile);
  }, 30_000);

  const garbage: Array<[string, string]> = [
    ["text", "hello world\n"],
    ["a config file given by mistake", "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1::/usr/sbin:/usr/sbin/nologin\n"],
    ["a negative number", "-42\n"],
    ["two numbers", "123 456\n"],
    ["binary", "\u0000\u0001\u0002\u0003"],
  ];
  for (const [what, content] of garbage) {
    test(`it holds garbage (${what}): refused, left untouched`, async () => {
      const { pidFile } = fresh("garbage");
      writeFileSync(pidFile, content);
      const before = statSync(pidFile);
      const r = await start(pidFile, {});
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain(`app: PID file ${pidFile} holds `);
      expect(r.stderr).toContain("which is not a PID; refusing to overwrite it");
      expect(readFileSync(pidFile, "utf8")).toBe(content);
      expect(statSync(pidFile).mtimeMs).toBe(before.mtimeMs);
      expect(isFlocked(pidFile)).toBe(false);
      await expectNothingLeft(pidFile, pidFile);
    }, 30_000);
  }

  test("garbage after the first 64 bytes is garbage too: refused, left untouched", async () => {
    const files: Array<[string, string]> = [
      ["a file that starts with 100 blanks", `${" ".repeat(100)}\nprecious: data\n`],
      ["a pid followed by padding and more text", `4242${" ".repeat(80)}\nprecious: data\n`],
    ];
    for (const [what, content] of files) {
      const { pidFile } = fresh("garbage64");
      writeFileSync(pidFile, content);
      const r = await start(pidFile, {});
      const pid = /started app \(pid (\d+)\)/.exec(r.stdout)?.[1];
      if (pid !== undefined) {
        track(Number(pid));
        await run([BUN, FIXTURE, "stop", "--pid-file", pidFile]);
      }
      const after = existsSync(pidFile) ? readFileSync(pidFile, "utf8") : "(file removed)";
      await expectNothingLeft(pidFile, pidFile);
      must(r.code !== 0 && after === content, `${what}: start exited ${r.code} and the file's content was replaced (now ${JSON.stringify(after)})`);
    }
  }, 60_000);
});
