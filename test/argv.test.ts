/**
 * One argv parser for every process (issue 6, items 1, 9, 22, 23, 24, 34):
 * options before or after the command word mean the same to the launcher,
 * the control commands and the daemon; unknown options, missing values,
 * extra words and loose numbers exit 2 with one line and touch nothing.
 */
import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { defineDaemon, DaemonError } from "../src/index.ts";
import { alive, BUN, cleanupProcesses, ROOT, run, startedPid, tempDir, track } from "./helpers.ts";

cleanupProcesses();
const dir = tempDir("bd-argv-");
const ARGS_APP = join(ROOT, "test/fixtures/args-app.ts");
let n = 0;
const pidPath = () => join(dir, `a${++n}.pid`);
const app = (...args: string[]) => [BUN, ARGS_APP, ...args];

/** run(), and whatever it started is stopped after the test, even where it should have started nothing. */
async function runApp(cmd: string[], opts: { env?: Record<string, string> } = {}) {
  const r = await run(cmd, opts);
  track(startedPid(r.stdout));
  return r;
}

async function start(args: string[], env: Record<string, string> = {}) {
  const r = await runApp(app(...args), { env });
  expect(r.stderr).toBe("");
  expect(r.code).toBe(0);
  return startedPid(r.stdout)!;
}

/** A usage error: exit 2, exactly one line on stderr, no stack trace, nothing on stdout. */
function expectUsage(r: { code: number; stdout: string; stderr: string }, text: string) {
  expect(r.stderr).toContain(text);
  expect(r.code).toBe(2);
  expect(r.stderr.trimEnd().split("\n")).toHaveLength(1);
  expect(r.stderr).not.toContain("    at ");
  expect(r.stdout).toBe("");
}

describe("options before the command word (item 1)", () => {
  test("`--pid-file B stop` stops B, not the other instance", async () => {
    const a = pidPath();
    const b = pidPath();
    const pa = await start(["start", "--pid-file", a]);
    const pb = await start(["--pid-file", b, "start"]);
    expect(readFileSync(b, "utf8")).toBe(`${pb}\n`);
    const st = await runApp(app("--pid-file", b, "status"));
    expect(st.stdout).toContain(`pid ${pb}`);
    const r = await runApp(app("--pid-file", b, "stop"));
    expect(r).toMatchObject({ code: 0, stdout: `stopped args (pid ${pb})\n` });
    expect(alive(pb)).toBe(false);
    expect(alive(pa)).toBe(true);
    expect(readFileSync(a, "utf8")).toBe(`${pa}\n`);
  }, 30_000);

  test("`--ready-timeout 300 start`: the launcher enforces 300 ms, as the daemon reads it", async () => {
    const p = pidPath();
    const r = await runApp(app("--ready-timeout", "300", "start", "--pid-file", p), { env: { ARGS_INIT_MS: "5000" } });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("not ready within 300 ms");
    expect(existsSync(p)).toBe(false);
  }, 30_000);

  test("the daemon sees the same options as the launcher, wherever they stand", async () => {
    const p = pidPath();
    const out = join(dir, "parsed.json");
    await start(["--verbose", "--pid-file", p, "start", "--mode", "safe", "--port=4312"], { ARGS_OUT: out });
    const seen = JSON.parse(readFileSync(out, "utf8"));
    expect(seen.mode).toBe("daemon");
    expect(seen.args).toMatchObject({ port: "4312", verbose: true, mode: "safe", _: [] });
  }, 30_000);
});

describe("app arguments and the CLI's own (item 9)", () => {
  test("an app alias is honoured before the command word: `-p 4313 start`", async () => {
    const p = pidPath();
    const out = join(dir, "alias.json");
    await start(["-p", "4313", "start", "--pid-file", p], { ARGS_OUT: out });
    expect(JSON.parse(readFileSync(out, "utf8")).args.port).toBe("4313");
  }, 30_000);

  test("a required app argument is required by run/start only, not by status, reload, stop", async () => {
    const p = pidPath();
    const env = { ARGS_REQUIRED: "1" };
    expectUsage(await runApp(app("start", "--pid-file", p), { env }), "args: --need is required");
    expect(existsSync(p)).toBe(false);
    const pid = await start(["--need", "x", "start", "--pid-file", p], env);
    expect((await runApp(app("status", "--pid-file", p), { env })).code).toBe(0);
    expect((await runApp(app("--pid-file", p, "reload"), { env })).code).toBe(0);
    const stop = await runApp(app("stop", "--pid-file", p), { env });
    expect(stop).toMatchObject({ code: 0, stdout: `stopped args (pid ${pid})\n` });
  }, 30_000);

  test("control commands take only their own options", async () => {
    expectUsage(await runApp(app("status", "--port", "1", "--pid-file", pidPath())), `--port is an option of the daemon; "status" takes only --pid-file`);
    expectUsage(await runApp(app("--kill", "status")), `--kill is not an option of "status"`);
  }, 30_000);

  test("defineDaemon rejects app arguments that collide with the CLI's own names", () => {
    const collide = (args: Record<string, unknown>) => {
      try {
        defineDaemon({ name: "x", args: args as never });
      } catch (err) {
        expect(err).toBeInstanceOf(DaemonError);
        expect((err as DaemonError).code).toBe("USAGE");
        return (err as Error).message;
      }
      throw new Error("defineDaemon accepted a colliding argument");
    };
    expect(collide({ host: { type: "string", alias: "h" } })).toContain(`app argument "host" (as "h") collides with the CLI's own -h (--help)`);
    expect(collide({ timeout: { type: "string" } })).toContain(`collides with the CLI's own --timeout`);
    expect(collide({ pidFile: { type: "string" } })).toContain(`collides with the CLI's own --pid-file`);
    expect(collide({ start: { type: "boolean" } })).toContain(`collides with the command "start"`);
    expect(collide({ a: { type: "string", alias: "x" }, b: { type: "string", alias: "x" } })).toContain(`collides with app argument "a"`);
    expect(collide({ port: { type: "number" } })).toContain(`has type "number"`);
  });
});

describe("typos and loose input exit 2 and act on nothing (items 22, 23, 24)", () => {
  // The default PID file (no --pid-file): a typo must not reach the default instance.
  const name = `argv-${process.pid}`;
  const env = { ARGS_NAME: name };
  const defaultPid = `/run/${name}.pid`;

  test("misspelled and unknown options", async () => {
    if (process.getuid?.() !== 0) return; // the default path under /run needs root; the other tests cover non-root
    const pid = await start(["start"], env);
    expect(readFileSync(defaultPid, "utf8")).toBe(`${pid}\n`);
    expectUsage(await runApp(app("stop", "--pidfile", join(dir, "other.pid")), { env }), "unknown option --pidfile");
    expectUsage(await runApp(app("--frob", "start"), { env }), "unknown option --frob");
    expectUsage(await runApp(app("--helpx"), { env }), "unknown option --helpx");
    expectUsage(await runApp(app("--help=1"), { env }), `--help takes no value (got "1")`);
    expectUsage(await runApp(app("stop", "--pid-file"), { env }), "--pid-file needs a value");
    expectUsage(await runApp(app("stop", "--pid-file", "--kill"), { env }), "--pid-file needs a value");
    expectUsage(await runApp(app("--pid-file", "", "stop"), { env }), "--pid-file needs a non-empty value");
    expectUsage(await runApp(app("--pid-file=", "stop"), { env }), "--pid-file needs a non-empty value");
    expectUsage(await runApp(app("start", "stop"), { env }), `unexpected argument "stop" after "start"`);
    expectUsage(await runApp(app("stop", "now", "please"), { env }), `"stop" takes no arguments (got "now")`);
    expectUsage(await runApp(app("stop", "--timeout", "1", "--timeout", "2"), { env }), "--timeout is given twice");
    expect(alive(pid)).toBe(true);
    expect(readFileSync(defaultPid, "utf8")).toBe(`${pid}\n`);
    const v = await runApp(app("start", "--version"), { env });
    expect(v).toMatchObject({ code: 0, stdout: "unknown\n", stderr: "" });
    const stop = await runApp(app("stop"), { env });
    expect(stop).toMatchObject({ code: 0, stdout: `stopped ${name} (pid ${pid})\n` });
    expect(existsSync(defaultPid)).toBe(false);
  }, 60_000);

  test("--version and a typo start nothing", async () => {
    const p = pidPath();
    expect((await runApp(app("start", "--version", "--pid-file", p))).code).toBe(0);
    expectUsage(await runApp(app("start", "--frob", "--pid-file", p)), "unknown option --frob");
    expect(existsSync(p)).toBe(false);
  }, 30_000);

  test("numbers are decimal, bounded, and whole milliseconds for --ready-timeout", async () => {
    const p = pidPath();
    for (const bad of [" ", "0x10", "0.5", "1e300", "-1", "Infinity", "2147483648", "10ms"]) {
      expectUsage(await runApp(app("start", "--pid-file", p, "--ready-timeout", bad)), `--ready-timeout takes a whole number of milliseconds`);
    }
    for (const bad of ["1e3", "0x1", " 1", "-1", "1.2345"]) {
      expectUsage(await runApp(app("stop", "--pid-file", p, "--timeout", bad)), "--timeout takes a number of seconds");
    }
    expect(existsSync(p)).toBe(false);
    // What is valid still works: 0.5 s and 0 (wait for ever).
    expect((await runApp(app("stop", "--pid-file", p, "--timeout", "0.5"))).code).toBe(0);
    const pid = await start(["start", "--pid-file", p, "--ready-timeout", "0"]);
    expect(alive(pid)).toBe(true);
  }, 60_000);
});

describe("help (item 34)", () => {
  test("--help writes no colour codes into a pipe, for the daemon and each command, flags before or after", async () => {
    for (const args of [["--help"], ["-h"], ["stop", "--help"], ["--help", "start"], ["restart", "-h"]]) {
      const r = await runApp(app(...args));
      expect(r.code).toBe(0);
      expect(r.stdout).not.toContain("\x1b[");
      expect(r.stderr).toBe("");
    }
    const top = await runApp(app("--help"));
    for (const c of ["run", "start", "stop", "status", "reload", "restart", "--pid-file", "--port", "-p, --port"]) expect(top.stdout).toContain(c);
    const stop = await runApp(app("stop", "--help"));
    expect(stop.stdout).toContain("--timeout");
    expect(stop.stdout).not.toContain("--port");
  }, 30_000);
});
