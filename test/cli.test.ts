/** The control CLI: exit codes and messages as a user and a script see them. */
import { describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { alive, BUN, cleanupProcesses, FIXTURE, isFlocked, ROOT, run, startedPid, tempDir, track, waitFor } from "./helpers.ts";

cleanupProcesses();
const dir = tempDir();
let n = 0;
const pidPath = () => join(dir, `c${++n}.pid`);
const app = (...args: string[]) => [BUN, "run", FIXTURE, ...args];
const RAW = join(ROOT, "test/fixtures/raw.ts");

async function start(pidFile: string, env: Record<string, string> = {}) {
  const r = await run(app("start", "--pid-file", pidFile), { env });
  expect(r.code).toBe(0);
  return track(startedPid(r.stdout))!;
}

describe("start", () => {
  test("prints the pid; a second start fails fast with already running (pid N)", async () => {
    const pidFile = pidPath();
    const pid = await start(pidFile);
    expect(readFileSync(pidFile, "utf8")).toBe(`${pid}\n`);
    const again = await run(app("start", "--pid-file", pidFile));
    expect(again.code).toBe(1);
    expect(again.stderr).toBe(`app: already running (pid ${pid})\n`);
    // So does a foreground run of the same daemon.
    const fg = await run(app("run", "--pid-file", pidFile));
    expect(fg.code).toBe(1);
    expect(fg.stderr).toContain(`already running (pid ${pid})`);
    expect(alive(pid)).toBe(true);
  }, 30_000);

  test("--daemon is start", async () => {
    const pidFile = pidPath();
    const r = await run(app("--daemon", "--pid-file", pidFile));
    const pid = track(startedPid(r.stdout));
    expect(r.code).toBe(0);
    expect(readFileSync(pidFile, "utf8")).toBe(`${pid}\n`);
  }, 30_000);

  test("after kill -9 the stale PID file is taken over", async () => {
    const pidFile = pidPath();
    const first = await start(pidFile);
    process.kill(first, "SIGKILL");
    await waitFor(() => !alive(first));
    expect(existsSync(pidFile)).toBe(true);
    expect(isFlocked(pidFile)).toBe(false);
    const second = await start(pidFile);
    expect(second).not.toBe(first);
    expect(readFileSync(pidFile, "utf8")).toBe(`${second}\n`);
  }, 30_000);

  test("bad input: missing directory, garbage PID file, bad option value", async () => {
    const missing = await run(app("start", "--pid-file", join(dir, "no/such/dir/x.pid")));
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain(`open PID file: open ${join(dir, "no/such/dir/x.pid")} failed: ENOENT`);

    const garbage = join(dir, "garbage.pid");
    writeFileSync(garbage, "not a pid at all\n");
    const g = await run(app("start", "--pid-file", garbage));
    expect(g.code).toBe(1);
    expect(g.stderr).toContain(`PID file ${garbage} holds "not a pid at all\\n", which is not a PID; refusing to overwrite it`);
    expect(readFileSync(garbage, "utf8")).toBe("not a pid at all\n");

    mkdirSync(join(dir, "adir.pid"));
    const d = await run(app("start", "--pid-file", join(dir, "adir.pid")));
    expect(d.code).toBe(1);
    expect(d.stderr).toContain("is a directory, not a PID file");

    const t = await run(app("start", "--pid-file", pidPath(), "--ready-timeout", "soon"));
    expect(t.code).toBe(2);
    expect(t.stderr).toBe(`app: --ready-timeout takes a whole number of milliseconds from 0 to 2147483647, not "soon"\n`);
  }, 30_000);
});

describe("status, reload, stop, restart", () => {
  test("status: 3 not running, 0 running with pid and uptime, 1 stale PID file", async () => {
    const pidFile = pidPath();
    const none = await run(app("status", "--pid-file", pidFile));
    expect(none).toMatchObject({ code: 3, stdout: "app is not running\n" });
    const pid = await start(pidFile);
    const up = await run(app("status", "--pid-file", pidFile));
    expect(up.code).toBe(0);
    expect(up.stdout).toMatch(new RegExp(`^app is running \\(pid ${pid}, up \\d+s\\)\\n$`));
    process.kill(pid, "SIGKILL");
    await waitFor(() => !alive(pid));
    const stale = await run(app("status", "--pid-file", pidFile));
    expect(stale.code).toBe(1);
    expect(stale.stdout).toContain(`stale PID file ${pidFile} names pid ${pid}`);
  }, 30_000);

  test("PID reuse: a file naming an unrelated live process is not running; stop never signals it; start succeeds", async () => {
    const pidFile = pidPath();
    const bystander = Bun.spawn(["sleep", "600"]);
    track(bystander.pid);
    writeFileSync(pidFile, `${bystander.pid}\n`);
    expect((await run(app("status", "--pid-file", pidFile))).code).toBe(1);
    const stop = await run(app("stop", "--pid-file", pidFile));
    expect(stop).toMatchObject({ code: 0, stdout: "app is not running\n" });
    expect(alive(bystander.pid)).toBe(true);
    const reload = await run(app("reload", "--pid-file", pidFile));
    expect(reload.code).toBe(7);
    const pid = await start(pidFile);
    expect(readFileSync(pidFile, "utf8")).toBe(`${pid}\n`);
    expect(alive(bystander.pid)).toBe(true);
  }, 30_000);

  test("reload: 0 and SIGHUP delivered; 7 when not running", async () => {
    const pidFile = pidPath();
    const events = join(dir, "reload.events");
    expect((await run(app("reload", "--pid-file", pidFile))).code).toBe(7);
    const pid = await start(pidFile, { APP_EVENTS: events });
    const r = await run(app("reload", "--pid-file", pidFile));
    expect(r).toMatchObject({ code: 0, stdout: `reloaded app (pid ${pid})\n` });
    expect(await waitFor(() => readFileSync(events, "utf8").includes("reload:end:1"))).toBe(true);
  }, 30_000);

  test("stop: waits until exited, removes the PID file; 0 when not running", async () => {
    const pidFile = pidPath();
    expect(await run(app("stop", "--pid-file", pidFile))).toMatchObject({ code: 0, stdout: "app is not running\n" });
    const pid = await start(pidFile);
    const r = await run(app("stop", "--pid-file", pidFile));
    expect(r).toMatchObject({ code: 0, stdout: `stopped app (pid ${pid})\n` });
    expect(alive(pid)).toBe(false);
    expect(existsSync(pidFile)).toBe(false);
  }, 30_000);

  test("stop --timeout: non-zero while shutdown lingers; a second stop (second SIGTERM) ends it at once", async () => {
    const pidFile = pidPath();
    const pid = await start(pidFile, { APP_SHUTDOWN: "hang", APP_SHUTDOWN_TIMEOUT: "600000" });
    const r = await run(app("stop", "--pid-file", pidFile, "--timeout", "0.5"));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`pid ${pid} is still running 0.5 s after SIGTERM; add --kill`);
    expect(alive(pid)).toBe(true);
    const again = await run(app("stop", "--pid-file", pidFile, "--timeout", "10"));
    expect(again).toMatchObject({ code: 0, stdout: `stopped app (pid ${pid})\n` });
    expect(existsSync(pidFile)).toBe(false);
  }, 30_000);

  test("stop --kill: SIGKILL at the timeout for a daemon that ignores SIGTERM, PID file cleaned up", async () => {
    const pidFile = pidPath();
    const s = await run([BUN, "run", RAW], { env: { RAW_PID: pidFile, RAW_IGNORE_TERM: "1" } });
    const pid = track(startedPid(s.stdout))!;
    expect(s.code).toBe(0);
    expect((await run(app("stop", "--pid-file", pidFile, "--timeout", "0.3"))).code).toBe(1);
    expect(alive(pid)).toBe(true);
    const k = await run(app("stop", "--pid-file", pidFile, "--timeout", "0.3", "--kill"));
    expect(k).toMatchObject({ code: 0, stdout: `killed app (pid ${pid}) after 0.3 s\n` });
    expect(alive(pid)).toBe(false);
    expect(existsSync(pidFile)).toBe(false);
  }, 30_000);

  test("restart: a new daemon replaces the old one; restart of nothing starts", async () => {
    const pidFile = pidPath();
    const fresh = await run(app("restart", "--pid-file", pidFile));
    const first = track(startedPid(fresh.stdout))!;
    expect(fresh.code).toBe(0);
    const r = await run(app("restart", "--pid-file", pidFile));
    const second = track(startedPid(r.stdout))!;
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`stopped app (pid ${first})`);
    expect(second).not.toBe(first);
    expect(alive(first)).toBe(false);
    expect(readFileSync(pidFile, "utf8")).toBe(`${second}\n`);
  }, 30_000);
});

describe("usage", () => {
  test("--help for the daemon and each command; unknown command is exit 2", async () => {
    const h = await run(app("--help"));
    expect(h.code).toBe(0);
    for (const c of ["run", "start", "stop", "status", "reload", "restart"]) expect(h.stdout).toContain(c);
    const s = await run(app("stop", "--help"));
    expect(s.code).toBe(0);
    expect(s.stdout).toContain("--timeout");
    expect(s.stdout).toContain("--kill");
    const bad = await run(app("frobnicate"));
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain(`unknown command "frobnicate"`);
    expect(bad.stderr).not.toContain("    at ");
  }, 30_000);
});

describe("daemonize() without the framework", () => {
  test("ready(): launcher exits 0 with the pid; startup output relayed; PID file removed at exit", async () => {
    const pidFile = pidPath();
    const r = await run([BUN, "run", RAW], { env: { RAW_PID: pidFile } });
    const pid = track(startedPid(r.stdout))!;
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`started raw (pid ${pid})\n`);
    expect(r.stderr).toBe(`raw before ready, pid ${pid}\n`);
    expect(readFileSync(pidFile, "utf8")).toBe(`${pid}\n`);
    process.kill(pid, "SIGTERM");
    await waitFor(() => !alive(pid));
    expect(existsSync(pidFile)).toBe(false);
  }, 30_000);

  test("fail(): launcher exits with the daemon's status and error", async () => {
    const pidFile = pidPath();
    const r = await run([BUN, "run", RAW], { env: { RAW_PID: pidFile, RAW_FAIL: "1" } });
    expect(r.code).toBe(4);
    expect(r.stderr).toContain("raw: failed to start: raw: cannot bind");
    expect(existsSync(pidFile)).toBe(false);
  }, 30_000);
});
