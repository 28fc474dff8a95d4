/**
 * Lifecycle, hook and logging defects of issue 6 (items 4, 8, 11, 12, 26,
 * 27, 28, 29, 34), each seen from outside: the fixture's event file, the
 * exit status, stderr or the log file, the PID file and /proc.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { closeSync, existsSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { alive, BUN, cleanupProcesses, ROOT, run, startedPid, tempDir, track, waitFor } from "./helpers.ts";

cleanupProcesses();
const APP = join(ROOT, "test/fixtures/hooks-app.ts");
const dir = tempDir("bd-lifecycle-defects-");
let n = 0;

function paths() {
  n++;
  return { pidFile: join(dir, `d${n}.pid`), events: join(dir, `d${n}.events`), log: join(dir, `d${n}.log`) };
}

const lines = (file: string) => (existsSync(file) ? readFileSync(file, "utf8").split("\n").filter(Boolean) : []);
/** The daemon's own events, without the log lines the fixture also captures. */
const events = (file: string) => lines(file).filter((l) => !l.startsWith("log:") && !l.startsWith("L "));
const has = (file: string, line: string) => () => lines(file).includes(line);

/** `run` in the foreground; resolves once `until` is in the event file (or the process ended). */
async function foreground(kase: string, env: Record<string, string> = {}, until = "ready", stdio?: number) {
  const p = paths();
  const proc = Bun.spawn([BUN, APP, "run", "--pid-file", p.pidFile], {
    env: { ...process.env, HOOKS_CASE: kase, HOOKS_EVENTS: p.events, ...env },
    stdin: "ignore",
    stdout: stdio ?? "pipe",
    stderr: stdio ?? "pipe",
  });
  track(proc.pid);
  const stderr = stdio === undefined ? new Response(proc.stderr as ReadableStream).text() : Promise.resolve("");
  await waitFor(() => lines(p.events).includes(until) || proc.exitCode !== null, 20_000);
  return { proc, stderr, ...p };
}

async function start(kase: string, env: Record<string, string> = {}, extra: string[] = [], p = paths()) {
  const r = await run([BUN, APP, "start", "--pid-file", p.pidFile, ...extra], { env: { HOOKS_CASE: kase, HOOKS_EVENTS: p.events, ...env } });
  const pid = track(startedPid(r.stdout));
  return { r, pid, ...p };
}

describe("the hook registry while init runs (items 4, 8)", () => {
  test("an init hook that unregisters itself does not shift the next one out; unregistered-before-their-turn hooks never run; hooks registered during init run after those already there", async () => {
    const f = await foreground("unregister");
    f.proc.kill("SIGTERM");
    expect(await f.proc.exited).toBe(0);
    expect(events(f.events)).toEqual([
      "init:module",
      "init:a",
      "init:b",
      "init:d",
      "init:done",
      "init:late",
      "ready",
      // Reverse registration order; the module's unregistered hooks are gone.
      "shutdown:late:SIGTERM",
      "shutdown:module-kept:SIGTERM",
    ]);
    expect(existsSync(f.pidFile)).toBe(false);
  }, 30_000);

  test("the same in a detached daemon", async () => {
    const d = await start("unregister");
    expect(d.r.code).toBe(0);
    await waitFor(has(d.events, "ready"));
    process.kill(d.pid!, "SIGTERM");
    expect(await waitFor(() => !alive(d.pid!))).toBe(true);
    expect(events(d.events)).toEqual([
      "init:module", "init:a", "init:b", "init:d", "init:done", "init:late", "ready",
      "shutdown:late:SIGTERM", "shutdown:module-kept:SIGTERM",
    ]);
  }, 30_000);
});

describe("an outside SIGTERM during a shutdown the daemon began itself (item 11)", () => {
  test("after ctx.stop(): the SIGTERM is the first stop signal, every shutdown hook finishes, exit 0", async () => {
    const f = await foreground("stop-sigterm", {}, "shutdown:waiting:stop from ready");
    expect(alive(f.proc.pid)).toBe(true);
    f.proc.kill("SIGTERM");
    expect(await f.proc.exited).toBe(0);
    expect(events(f.events).slice(-4)).toEqual([
      "shutdown:waiting:stop from ready", "shutdown:sigterm:1", "shutdown:waited", "shutdown:first:stop from ready",
    ]);
    expect(await f.stderr).not.toContain("exiting now");
    expect(existsSync(f.pidFile)).toBe(false);
  }, 30_000);

  test("after an uncaught exception: the same, exit 1", async () => {
    const f = await foreground("uncaught-sigterm", {}, "shutdown:waiting:uncaught exception");
    f.proc.kill("SIGTERM");
    expect(await f.proc.exited).toBe(1);
    expect(events(f.events).slice(-2)).toEqual(["shutdown:waited", "shutdown:first:uncaught exception"]);
    expect(existsSync(f.pidFile)).toBe(false);
  }, 30_000);

  test("a second stop signal still ends it at once (SIGTERM, then SIGINT: 130)", async () => {
    const f = await foreground("stop-sigterm", { HOOKS_SIGTERMS: "2" }, "shutdown:waiting:stop from ready");
    f.proc.kill("SIGTERM");
    await waitFor(has(f.events, "shutdown:sigterm:1"));
    expect(alive(f.proc.pid)).toBe(true);
    f.proc.kill("SIGINT");
    expect(await f.proc.exited).toBe(130);
    expect(events(f.events)).not.toContain("shutdown:waited");
    expect(await f.stderr).toContain("SIGINT during shutdown: exiting now");
    expect(existsSync(f.pidFile)).toBe(false);
  }, 30_000);
});

describe("an init hook throwing a hostile value (item 26)", () => {
  for (const kind of ["message-getter", "tostring-getter", "proxy", "null", "undefined", "symbol"]) {
    test(`${kind}: start fails naming the hook, the completed init hook is shut down, nothing left`, async () => {
      const d = await start("hostile", { HOOKS_HOSTILE: kind });
      expect(d.r.code).toBe(1);
      const last = d.r.stderr.trim().split("\n").at(-1)!;
      expect(last).toStartWith(`hooks: failed to start: init hook "hostileInit" failed: `);
      expect(events(d.events)).toEqual(["init:first", "init:hostile", "shutdown:first:init failed"]);
      expect(existsSync(d.pidFile)).toBe(false);
    }, 30_000);
  }

  test("proxy, in the foreground: exit 1 with the hook named", async () => {
    const f = await foreground("hostile", { HOOKS_HOSTILE: "proxy" });
    expect(await f.proc.exited).toBe(1);
    expect(await f.stderr).toContain(`init hook "hostileInit" failed: `);
    expect(events(f.events)).toEqual(["init:first", "init:hostile", "shutdown:first:init failed"]);
    expect(existsSync(f.pidFile)).toBe(false);
  }, 30_000);

  test("a reload hook that throws synchronously (a plain Error): the next reload still runs", async () => {
    const f = await foreground("hostile-late");
    f.proc.kill("SIGHUP");
    await waitFor(has(f.events, "reload:1"));
    f.proc.kill("SIGHUP");
    expect(await waitFor(has(f.events, "reload:2"))).toBe(true);
    f.proc.kill("SIGTERM");
    expect(await f.proc.exited).toBe(1); // its shutdown hook throws too
    expect(await f.stderr).toContain(`reload hook "hostileReload" failed; keeping the previous state: Error: plain`);
  }, 30_000);

  test("proxy thrown by ready, reload and shutdown hooks and uncaught: each logged by name, the daemon goes on", async () => {
    const f = await foreground("hostile-late", { HOOKS_HOSTILE: "proxy" });
    f.proc.kill("SIGHUP");
    await waitFor(has(f.events, "reload:1"));
    f.proc.kill("SIGHUP");
    expect(await waitFor(has(f.events, "reload:2"))).toBe(true);
    expect(alive(f.proc.pid)).toBe(true);
    f.proc.kill("SIGUSR2");
    expect(await f.proc.exited).toBe(1);
    const err = await f.stderr;
    expect(err).toContain(`ready hook "hostileReady" failed`);
    expect(err).toContain(`reload hook "hostileReload" failed`);
    expect(err).toContain("uncaught exception");
    expect(err).toContain(`shutdown hook "hostileShutdown" failed`);
    expect(events(f.events).slice(-2)).toEqual(["shutdown:hostile", "shutdown:first:uncaught exception"]);
    expect(existsSync(f.pidFile)).toBe(false);
  }, 30_000);
});

describe("daemon.main() called twice (item 27)", () => {
  const rejected = "second:rejected:ALREADY_CALLED:main() already called";
  test("run: the second call rejects without side effects; init ran once; the PID file names the daemon", async () => {
    const f = await foreground("main-twice");
    expect(events(f.events).filter((l) => l.startsWith("second:")).map((l) => l.split(";")[0])).toEqual([rejected]);
    expect(events(f.events).filter((l) => l === "init")).toEqual(["init"]);
    expect(readFileSync(f.pidFile, "utf8")).toBe(`${f.proc.pid}\n`);
    f.proc.kill("SIGTERM");
    expect(await f.proc.exited).toBe(0);
  }, 30_000);

  test("start: the same in the launcher and in the daemon", async () => {
    const d = await start("main-twice");
    expect(d.r.code).toBe(0);
    await waitFor(has(d.events, "ready"));
    expect(lines(d.events).filter((l) => l.includes("second:")).map((l) => l.split(";")[0])).toEqual([`L ${rejected}`, rejected]);
    expect(events(d.events).filter((l) => l === "init")).toEqual(["init"]);
    expect(readFileSync(d.pidFile, "utf8")).toBe(`${d.pid}\n`);
  }, 30_000);
});

describe("SIGUSR1 in every mode (items 28, 34)", () => {
  test("run: SIGUSR1 neither kills nor claims a reopen (debug line only); SIGTERM still shuts down", async () => {
    const f = await foreground("", { CONSOLA_LEVEL: "4" });
    f.proc.kill("SIGUSR1");
    expect(await waitFor(() => lines(f.events).some((l) => l.startsWith("log:debug:") && l.includes("SIGUSR1")))).toBe(true);
    expect(alive(f.proc.pid)).toBe(true);
    f.proc.kill("SIGTERM");
    expect(await f.proc.exited).toBe(0);
    expect(events(f.events)).toContain("shutdown:SIGTERM");
    expect(await f.stderr).not.toContain("log file reopened");
    expect(existsSync(f.pidFile)).toBe(false);
  }, 30_000);

  test("start without --log-file: SIGUSR1 reopens nothing and says nothing at info level", async () => {
    const d = await start("");
    expect(d.r.code).toBe(0);
    await waitFor(has(d.events, "ready"));
    process.kill(d.pid!, "SIGUSR1");
    process.kill(d.pid!, "SIGHUP"); // a marker: handled after the SIGUSR1
    expect(await waitFor(() => lines(d.events).includes("log:info:reloading"))).toBe(true);
    expect(alive(d.pid!)).toBe(true);
    expect(lines(d.events).filter((l) => l.includes("reopen"))).toEqual([]);
  }, 30_000);
});

describe("a reload hook cut off by a stop (item 34)", () => {
  test("the log names the hook that did not finish", async () => {
    const f = await foreground("stuck-reload", { HOOKS_SHUTDOWN_TIMEOUT: "500" });
    f.proc.kill("SIGHUP");
    await waitFor(has(f.events, "reload:stuck"));
    f.proc.kill("SIGTERM");
    expect(await f.proc.exited).toBe(0);
    expect(await f.stderr).toContain(`reload hook "stuckReload" did not finish within 500 ms of SIGTERM`);
    expect(events(f.events)).toContain("shutdown:SIGTERM");
  }, 30_000);
});

describe("a process spawned during init (item 12)", () => {
  test("keeps writing after ready: it is not killed by SIGPIPE, and its output reaches --log-file", async () => {
    const p = paths();
    const d = await start("child", {}, ["--log-file", p.log], p);
    expect(d.r.code).toBe(0);
    const child = Number(/^child:(\d+)$/m.exec(readFileSync(p.events, "utf8"))?.[1]);
    track(child);
    expect(child).toBeGreaterThan(1);
    // A tick written after the daemon said it was ready, i.e. after the launcher left.
    const afterReady = () => {
      const log = readFileSync(p.log, "utf8");
      const at = log.indexOf("the daemon is ready");
      return at >= 0 && log.indexOf("child tick", at) >= 0;
    };
    expect(await waitFor(afterReady, 10_000)).toBe(true);
    expect(alive(child)).toBe(true);
  }, 30_000);
});

// A real full file system under the log file: a 64 KiB tmpfs.
const root = process.getuid?.() === 0;
describe.skipIf(!root)("a full disk under the log file (item 29; needs root to mount a tmpfs)", () => {
  const full = join(dir, "full");
  beforeAll(async () => {
    rmSync(full, { recursive: true, force: true });
    await Bun.$`mkdir -p ${full} && mount -t tmpfs -o size=64k tmpfs ${full}`;
  });
  afterAll(async () => {
    await Bun.$`umount ${full}`.nothrow();
  });
  const fill = () => {
    const fd = openSync(join(full, "filler"), "w");
    try {
      for (;;) writeFileSync(fd, Buffer.alloc(4096));
    } catch (err) {
      expect((err as NodeJS.ErrnoException).code).toBe("ENOSPC");
    } finally {
      closeSync(fd);
    }
  };
  const unfill = () => rmSync(join(full, "filler"), { force: true });

  test("start --log-file on it: writes through process.stderr/stdout, console and ctx.log fail, the daemon and its hooks go on", async () => {
    const p = paths();
    const d = await start("write", {}, ["--log-file", join(full, "daemon.log")], p);
    expect(d.r.code).toBe(0);
    await waitFor(has(p.events, "ready"));
    fill();
    try {
      process.kill(d.pid!, "SIGHUP");
      await waitFor(has(p.events, "reload:1:wrote"));
      process.kill(d.pid!, "SIGHUP");
      expect(await waitFor(has(p.events, "reload:2:wrote"))).toBe(true);
      expect(alive(d.pid!)).toBe(true);
    } finally {
      unfill();
    }
    process.kill(d.pid!, "SIGTERM");
    expect(await waitFor(() => !alive(d.pid!))).toBe(true);
    expect(events(p.events).at(-1)).toBe("shutdown:SIGTERM");
  }, 30_000);

  test("run with stdout and stderr on it: the same", async () => {
    const out = openSync(join(full, "foreground.out"), "a");
    const f = await foreground("write", {}, "ready", out);
    closeSync(out);
    fill();
    try {
      f.proc.kill("SIGHUP");
      await waitFor(has(f.events, "reload:1:wrote"));
      f.proc.kill("SIGHUP");
      expect(await waitFor(has(f.events, "reload:2:wrote"))).toBe(true);
      expect(alive(f.proc.pid)).toBe(true);
    } finally {
      unfill();
    }
    f.proc.kill("SIGTERM");
    expect(await f.proc.exited).toBe(0);
    expect(events(f.events).at(-1)).toBe("shutdown:SIGTERM");
  }, 30_000);
});
