/**
 * Issue 7: with `app: () => import(...)`, only the process that runs the
 * hooks evaluates the app. The launcher, status, stop, reload, unit, restart's
 * stop half and --help never do, under `bun run` and as a compiled binary.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { alive, BUN, cleanupProcesses, freePort, ROOT, run, startedPid, tempDir, track, waitFor } from "./helpers.ts";

cleanupProcesses();
const dir = tempDir("bd-lazy-");
const ENTRY = join(ROOT, "test/fixtures/lazy/entry.ts");
const BIN = join(dir, "lazy-bin");
let n = 0;
const fresh = () => {
  n++;
  return { pidFile: join(dir, `z${n}.pid`), marker: join(dir, `z${n}.marker`) };
};
const loads = (marker: string) => (existsSync(marker) ? readFileSync(marker, "utf8").split("\n").filter(Boolean) : []);

beforeAll(async () => {
  const b = await run([BUN, "build", "--compile", "--splitting", "--bytecode", "--format=esm", ENTRY, "--outfile", BIN], { timeoutMs: 120_000 });
  if (b.code !== 0) throw new Error(`bun build --compile --splitting failed: ${b.stderr}`);
}, 120_000);
afterAll(() => rmSync(BIN, { force: true }));

for (const style of ["bun run", "compiled (--splitting)"] as const) {
  const cmd = (...args: string[]) => (style === "bun run" ? [BUN, "run", ENTRY, ...args] : [BIN, ...args]);

  describe(`${style}: the app is loaded only where hooks run`, () => {
    test("start, status, reload, restart, stop and --help never evaluate the app; the daemon does, once", async () => {
      const { pidFile, marker } = fresh();
      const env = { LAZY_MARKER: marker };
      const r = await run(cmd("start", "--pid-file", pidFile), { env });
      const pid = track(startedPid(r.stdout))!;
      expect(r.code).toBe(0);
      expect(loads(marker)).toEqual([`bun-daemon:stage ${pid}`]);
      for (const args of [["status", "--pid-file", pidFile], ["--pid-file", pidFile, "reload"], ["--help"], ["stop", "--help"], ["--version"], ["unit", "--shutdown-hooks", "1"]]) {
        expect((await run(cmd(...args), { env })).code).toBe(0);
      }
      expect(loads(marker)).toEqual([`bun-daemon:stage ${pid}`]);
      const again = await run(cmd("restart", "--pid-file", pidFile), { env });
      const second = track(startedPid(again.stdout))!;
      expect(again.code).toBe(0);
      expect(alive(pid)).toBe(false);
      // Only the new daemon loaded it: not restart's launcher, not its stop.
      expect(loads(marker)).toEqual([`bun-daemon:stage ${pid}`, `bun-daemon:stage ${second}`]);
      const stop = await run(cmd("--pid-file", pidFile, "stop"), { env });
      expect(stop).toMatchObject({ code: 0, stdout: `stopped lazy (pid ${second})\n` });
      expect(loads(marker)).toHaveLength(2);
    }, 60_000);

    test("hooks the app module registers run, with typed options (a port given before the command word)", async () => {
      const { pidFile } = fresh();
      const port = freePort();
      const r = await run(cmd("-p", String(port), "start", "--pid-file", pidFile));
      const pid = track(startedPid(r.stdout))!;
      expect(r.code).toBe(0);
      expect(await (await fetch(`http://127.0.0.1:${port}/`)).text()).toBe(`lazy ${pid}\n`);
      expect((await run(cmd("stop", "--pid-file", pidFile))).code).toBe(0);
    }, 30_000);

    test("unit: ExecStart names this program (the binary itself when compiled) without loading the app, and says the app's hooks are not counted", async () => {
      const { marker } = fresh();
      const r = await run(cmd("unit", "-p", "8123"), { env: { LAZY_MARKER: marker } });
      expect(r.code).toBe(0);
      const exec = /^ExecStart=(.*)$/m.exec(r.stdout)![1];
      expect(exec).toBe(style === "bun run" ? `${BUN} ${ENTRY} run --port 8123` : `${BIN} run --port 8123`);
      expect(r.stderr).toBe("lazy: unit: TimeoutStopSec counts the 0 shutdown hooks registered without loading the app; if the app module registers more, pass --shutdown-hooks N\n");
      expect(loads(marker)).toEqual([]);
    }, 30_000);

    test("run (foreground) loads the app in its own process", async () => {
      const { pidFile, marker } = fresh();
      const proc = Bun.spawn(cmd("run", "--pid-file", pidFile), { env: { ...process.env, LAZY_MARKER: marker }, stdout: "ignore", stderr: "pipe" });
      track(proc.pid);
      expect(await waitFor(() => loads(marker).length === 1 && existsSync(pidFile))).toBe(true);
      expect(loads(marker)[0]!.split(" ")[1]).toBe(String(proc.pid));
      proc.kill("SIGTERM");
      expect(await proc.exited).toBe(0);
    }, 30_000);

    test("an app that throws at import: start fails with the app's error and a non-zero exit, nothing left", async () => {
      const { pidFile } = fresh();
      const r = await run(cmd("start", "--pid-file", pidFile), { env: { LAZY_THROW: "1" } });
      track(startedPid(r.stdout));
      expect(r.code).toBe(1);
      expect(r.stderr).toContain("lazy: failed to start: loading the app failed: app failed at import: cannot read /etc/lazy.conf");
      expect(r.stderr).not.toContain("    at ");
      expect(existsSync(pidFile)).toBe(false);
      const exit = await run(cmd("start", "--pid-file", pidFile), { env: { LAZY_EXIT: "5" } });
      expect(exit.code).toBe(5);
      expect(existsSync(pidFile)).toBe(false);
    }, 30_000);
  });
}

const strace = Bun.which("strace");
describe.skipIf(!strace)("what the launcher and the control commands load (strace)", () => {
  const cmd = (...args: string[]) => [BUN, ENTRY, ...args];
  const NEVER = /src\/(lifecycle|log)\.ts|node_modules\/(consola|citty)\/|test\/fixtures\/lazy\/app\.ts/;
  /**
   * The files the command opened, all its threads (modules load on a thread
   * of their own); `-b execve` lets go of the daemon at its exec, so the
   * launcher's opens are traced and the daemon's are not.
   */
  const openedBy = async (args: string[]) => {
    const trace = join(dir, `trace-${++n}`);
    const r = await run([strace!, "-f", "-b", "execve", "-e", "trace=openat,open", "-o", trace, BUN, ENTRY, ...args]);
    track(startedPid(r.stdout));
    const text = readFileSync(trace, "utf8");
    return { r, files: text.split("\n").filter((l) => !l.includes("ENOENT")).map((l) => /"([^"]+)"/.exec(l)?.[1] ?? "") };
  };

  test("start's launcher, unit, status, stop and --help open no lifecycle, logger, consola, citty or app module", async () => {
    const { pidFile } = fresh();
    const start = await openedBy(["start", "--pid-file", pidFile]);
    expect(start.r.code).toBe(0);
    expect(start.files.some((f) => f.endsWith("src/launch.ts"))).toBe(true); // the trace covers the launcher's loading
    const unit = await openedBy(["unit", "--shutdown-hooks", "1"]);
    expect(unit.r.code).toBe(0);
    expect(unit.files.some((f) => f.endsWith("src/unit.ts"))).toBe(true); // the trace covers unit's loading
    for (const { files } of [start, unit, await openedBy(["status", "--pid-file", pidFile]), await openedBy(["--help"]), await openedBy(["stop", "--pid-file", pidFile])]) {
      expect(files.filter((f) => NEVER.test(f))).toEqual([]);
    }
    expect(existsSync(pidFile)).toBe(false);
  }, 60_000);

  test("status and stop of a running daemon do not read /proc/locks (its read can stall for milliseconds)", async () => {
    const { pidFile } = fresh();
    const pid = track(startedPid((await run(cmd("start", "--pid-file", pidFile))).stdout))!;
    const status = await openedBy(["status", "--pid-file", pidFile]);
    expect(status.r.stdout).toContain(`lazy is running (pid ${pid}`);
    const stop = await openedBy(["stop", "--pid-file", pidFile]);
    expect(stop.r.stdout).toBe(`stopped lazy (pid ${pid})\n`);
    for (const { files } of [status, stop]) expect(files.filter((f) => f === "/proc/locks")).toEqual([]);
  }, 60_000);
});
