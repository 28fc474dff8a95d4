/**
 * Issue 10 from outside: a daemon configured by a file (the seed's
 * daemon.conf), `check`, a `reload` whose exit status is the reload's
 * outcome, and a `status` that tells the daemon's state.
 */
import { describe, expect, test } from "bun:test";
import { appendFileSync, chmodSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { alive, BUN, cleanupProcesses, freePort, notifyReceiver, pidsMentioning, ROOT, run, startedPid, tempDir, track, waitFor } from "./helpers.ts";

cleanupProcesses();
const APP = join(ROOT, "test/fixtures/config-app.ts");
const dir = tempDir("bd-cfg-");
chmodSync(dir, 0o755);
let n = 0;

interface Case {
  name: string;
  conf: string;
  pidFile: string;
  events: string;
  port: number;
  env: Record<string, string>;
  cli(args: string[], extra?: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }>;
  events_(): Array<{ event: string; config?: Record<string, unknown>; previous?: Record<string, unknown> }>;
  served(): Promise<{ config: Record<string, unknown>; pid: number }>;
}

/** A config file in the seed's format, and the commands to drive a daemon with it. */
function setup(extraLines = ""): Case {
  n++;
  const name = `cfg${process.pid}-${n}`;
  const port = freePort();
  const conf = join(dir, `${name}.conf`);
  const pidFile = join(dir, `${name}.pid`);
  const events = join(dir, `${name}.events`);
  writeFileSync(conf, `# mydaemon configuration\nport=${port}\nlog_level=INFO\nmax_connections=100\npid_file=${pidFile}\n${extraLines}`);
  const env = { CFG_NAME: name, CFG_EVENTS: events };
  return {
    name, conf, pidFile, events, port, env,
    async cli(args, extra = {}) {
      const r = await run([BUN, APP, ...args], { env: { ...env, ...extra }, timeoutMs: 60_000 });
      track(startedPid(r.stdout));
      return r;
    },
    events_() {
      return existsSync(events) ? readFileSync(events, "utf8").trim().split("\n").filter(Boolean).map((l) => JSON.parse(l)) : [];
    },
    async served() {
      return (await (await fetch(`http://127.0.0.1:${port}/`)).json()) as { config: Record<string, unknown>; pid: number };
    },
  };
}

const edit = (c: Case, lines: string) => writeFileSync(c.conf, `port=${c.port}\nlog_level=INFO\npid_file=${c.pidFile}\n${lines}`);

describe("config file", () => {
  test("the seed's daemon.conf: typed values in ctx.config, pid_file from the file, log_level INFO accepted; --pid-file on the command line wins over the file", async () => {
    const c = setup();
    const r = await c.cli(["start", "--config", c.conf]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const pid = startedPid(r.stdout)!;
    expect(readFileSync(c.pidFile, "utf8").trim()).toBe(String(pid));
    const s = await c.served();
    expect(s.config).toEqual({ port: c.port, greeting: "hello", max_connections: 100, fail_reload: false, slow_reload_ms: 0, slow_stop_ms: 0 });
    expect((await c.cli(["stop", "--config", c.conf])).code).toBe(0);
    expect(alive(pid)).toBe(false);
    expect(existsSync(c.pidFile)).toBe(false);

    const other = join(dir, `${c.name}-flag.pid`);
    const r2 = await c.cli(["--config", c.conf, "start", "--pid-file", other]);
    expect(r2.code).toBe(0);
    expect(existsSync(other)).toBe(true);
    expect(existsSync(c.pidFile)).toBe(false);
    expect((await c.cli(["stop", "--pid-file", other, "--config", c.conf])).code).toBe(0);
  }, 60_000);

  test("a config the schema rejects fails the start with file:line: key: message, leaving nothing", async () => {
    const c = setup("max_connections=many\n");
    const r = await c.cli(["start", "--config", c.conf]);
    expect(r.code).toBe(1);
    // Two max_connections lines: the seed's and ours.
    expect(r.stderr).toContain(`${c.conf}:6: max_connections: duplicate key (first set on line 4)`);
    expect(r.stderr).not.toMatch(/^\s+at /m);
    expect(pidsMentioning(c.name)).toEqual([]);
    edit(c, "max_connections=many\n");
    const r2 = await c.cli(["start", "--config", c.conf]);
    expect(r2.code).toBe(1);
    expect(r2.stderr).toMatch(new RegExp(`${c.conf.replace(/[.]/g, "\\.")}:4: max_connections: .*number`));
    expect(existsSync(c.pidFile)).toBe(false);
    expect(pidsMentioning(c.name)).toEqual([]);
  }, 60_000);

  test("a missing --config file is an error; a missing default file with defaults is fine", async () => {
    const c = setup();
    const missing = join(dir, "no-such.conf");
    const r = await c.cli(["start", "--config", missing]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(missing);
    expect(r.stderr).toContain("ENOENT");
    const pidFile = join(dir, `${c.name}-defaults.pid`);
    const r2 = await c.cli(["start", "--pid-file", pidFile], { CFG_FILE: missing, CFG_DEFAULTS: JSON.stringify({ port: c.port }) });
    expect(r2.stderr).toBe("");
    expect(r2.code).toBe(0);
    expect((await c.served()).config.port).toBe(c.port);
    expect((await c.cli(["stop", "--pid-file", pidFile], { CFG_FILE: missing, CFG_DEFAULTS: "{}" })).code).toBe(0);
  }, 60_000);
});

describe("check", () => {
  test("config OK, exit 0; every problem, exit 1; usage, exit 2; no daemon is touched", async () => {
    const c = setup();
    const r = await c.cli(["start", "--config", c.conf]);
    expect(r.code).toBe(0);
    const ok = await c.cli(["check", "--config", c.conf]);
    expect(ok).toMatchObject({ code: 0, stdout: `config OK (${c.conf})\n`, stderr: "" });
    edit(c, "greeting\nmax_connections=-1\n");
    const bad = await c.cli(["check", "--config", c.conf]);
    expect(bad.code).toBe(1);
    const lines = bad.stderr.trim().split("\n");
    expect(lines.length).toBeGreaterThanOrEqual(1);
    expect(lines[0]).toContain(`${c.conf}:4:`);
    expect(bad.stderr).not.toMatch(/^\s+at /m);
    edit(c, "max_connections=-1\n");
    const schemaBad = await c.cli(["check", "--config", c.conf]);
    expect(schemaBad.code).toBe(1);
    expect(schemaBad.stderr).toMatch(new RegExp(`^${c.conf.replace(/[.]/g, "\\.")}:4: max_connections: `, "m"));
    expect((await c.cli(["check", "--bogus"])).code).toBe(2);
    expect((await c.cli(["check", "--pid-file", c.pidFile])).code).toBe(2);
    // The daemon saw none of it.
    expect(c.events_().map((e) => e.event)).toEqual(["init"]);
    edit(c, "");
    expect((await c.cli(["stop", "--config", c.conf])).code).toBe(0);
  }, 60_000);
});

describe("reload reports its outcome", () => {
  test("valid edit: hooks see the new config and the previous one, reload exits 0, the server runs with it", async () => {
    const c = setup();
    expect((await c.cli(["start", "--config", c.conf])).code).toBe(0);
    edit(c, "greeting=bonjour\n");
    const r = await c.cli(["reload", "--config", c.conf]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^reloaded cfg/);
    const ev = c.events_().filter((e) => e.event === "reload");
    expect(ev.length).toBe(1);
    expect(ev[0]!.config!.greeting).toBe("bonjour");
    expect(ev[0]!.previous!.greeting).toBe("hello");
    expect((await c.served()).config.greeting).toBe("bonjour");
    expect((await c.cli(["stop", "--config", c.conf])).code).toBe(0);
  }, 60_000);

  test("invalid edit: no hook runs, the old config stays, reload exits 1 with file:line (a syntax error and a schema error alike; a plain SIGHUP too)", async () => {
    const c = setup();
    const r0 = await c.cli(["start", "--config", c.conf]);
    const pid = startedPid(r0.stdout)!;
    edit(c, "greeting=x\nmax_connections=zero\n");
    const r = await c.cli(["reload", "--config", c.conf]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`${c.conf.replace(/[.]/g, "\\.")}:5: max_connections: `));
    edit(c, "greeting x\n");
    const syntax = await c.cli(["reload", "--config", c.conf]);
    expect(syntax.code).toBe(1);
    expect(syntax.stderr).toContain(`${c.conf}:4`);
    // A plain SIGHUP waits for nothing and changes nothing either.
    edit(c, "max_connections=zero\n");
    process.kill(pid, "SIGHUP");
    await waitFor(async () => /last reload .* failed/.test((await c.cli(["status", "--config", c.conf])).stdout), 10_000);
    expect(c.events_().filter((e) => e.event === "reload")).toEqual([]);
    expect((await c.served()).config.greeting).toBe("hello");
    const st = JSON.parse((await c.cli(["status", "--json", "--config", c.conf])).stdout);
    expect(st.lastReload.ok).toBe(false);
    expect(st.lastReload.error).toContain(":4: max_connections: ");
    edit(c, "");
    expect((await c.cli(["stop", "--config", c.conf])).code).toBe(0);
  }, 60_000);

  test("a throwing reload hook: exit 1 with its message, and the old config stays (the next reload's previousConfig is it)", async () => {
    const c = setup();
    expect((await c.cli(["start", "--config", c.conf])).code).toBe(0);
    edit(c, "greeting=nope\nfail_reload=true\n");
    const r = await c.cli(["reload", "--config", c.conf]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`${c.name}: reload failed: reload hook "reload" failed: refusing greeting "nope"\n`);
    edit(c, "greeting=ciao\n");
    const r2 = await c.cli(["reload", "--config", c.conf]);
    expect(r2.code).toBe(0);
    const ev = c.events_().filter((e) => e.event === "reload");
    expect(ev.map((e) => [e.config!.greeting, e.previous!.greeting])).toEqual([["nope", "hello"], ["ciao", "hello"]]);
    expect((await c.cli(["stop", "--config", c.conf])).code).toBe(0);
  }, 60_000);

  test("50 concurrent reload callers during slow reloads: each gets an answer (0), none hangs; runs coalesce", async () => {
    const c = setup("slow_reload_ms=100\n");
    expect((await c.cli(["start", "--config", c.conf])).code).toBe(0);
    const results = await Promise.all(Array.from({ length: 50 }, () => c.cli(["reload", "--config", c.conf, "--timeout", "50"])));
    expect(results.map((r) => r.code)).toEqual(Array(50).fill(0));
    const runs = c.events_().filter((e) => e.event === "reload").length;
    expect(runs).toBeGreaterThanOrEqual(1);
    expect(runs).toBeLessThan(50);
    expect((await c.cli(["stop", "--config", c.conf])).code).toBe(0);
  }, 120_000);

  test("--no-wait only sends the signal; not running is 7", async () => {
    const c = setup("slow_reload_ms=300\n");
    expect((await c.cli(["start", "--config", c.conf])).code).toBe(0);
    const r = await c.cli(["reload", "--no-wait", "--config", c.conf]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^reloading /);
    expect((await c.cli(["stop", "--config", c.conf])).code).toBe(0);
    expect((await c.cli(["reload", "--config", c.conf])).code).toBe(7);
  }, 60_000);

  test("another user can neither trigger a reload nor read a result it could fake", async () => {
    const c = setup();
    const r0 = await c.cli(["start", "--config", c.conf]);
    expect(r0.code).toBe(0);
    const before = c.events_().length;
    const r = await run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "kill", "-HUP", String(startedPid(r0.stdout))]);
    expect(r.code).not.toBe(0);
    expect(c.events_().length).toBe(before);
    expect((await c.cli(["stop", "--config", c.conf])).code).toBe(0);
  }, 60_000);
});

describe("under systemd (Type=notify)", () => {
  test("a reload with an invalid config says so in STATUS=, and READY=1 again (the daemon runs on)", async () => {
    const c = setup();
    const rx = await notifyReceiver(dir);
    const p = Bun.spawn([BUN, APP, "run", "--config", c.conf], { env: { ...process.env, ...c.env, NOTIFY_SOCKET: rx.address }, stdout: "ignore", stderr: "pipe" });
    track(p.pid);
    expect(await waitFor(() => rx.msgs().some((m) => m.startsWith("READY=1")), 10_000)).toBe(true);
    edit(c, "max_connections=zero\n");
    p.kill("SIGHUP");
    expect(await waitFor(() => rx.msgs().some((m) => m.includes("STATUS=running; reload failed: ")), 10_000)).toBe(true);
    const last = rx.msgs().find((m) => m.includes("reload failed"))!;
    expect(last).toStartWith("READY=1|STATUS=running; reload failed: ");
    expect(last).toContain(`${c.conf}:4: max_connections: `);
    p.kill("SIGTERM");
    expect(await p.exited).toBe(0);
  }, 30_000);
});

describe("status tells the state", () => {
  test("running with pid, uptime, config, last reload; --json for scripts; --ready 0 while running, 1 while stopping", async () => {
    const c = setup("slow_stop_ms=1500\n");
    const r0 = await c.cli(["start", "--config", c.conf]);
    const pid = startedPid(r0.stdout)!;
    let s = await c.cli(["status", "--config", c.conf]);
    expect(s.code).toBe(0);
    expect(s.stdout).toContain(`${c.name} is running (pid ${pid}`);
    expect(s.stdout).toContain(`config ${c.conf}`);
    expect((await c.cli(["reload", "--config", c.conf])).code).toBe(0);
    s = await c.cli(["status", "--config", c.conf]);
    expect(s.stdout).toMatch(/last reload \S+ ok/);
    const j = JSON.parse((await c.cli(["status", "--json", "--config", c.conf])).stdout);
    expect(j).toMatchObject({ name: c.name, state: "running", pid, pidFile: c.pidFile, configFile: c.conf, exitCode: 0 });
    expect(typeof j.uptimeSeconds).toBe("number");
    expect(j.lastReload.ok).toBe(true);
    expect((await c.cli(["status", "--ready", "--config", c.conf])).code).toBe(0);
    // A slow shutdown: stopping, and not ready.
    process.kill(pid, "SIGTERM");
    expect(await waitFor(async () => JSON.parse((await c.cli(["status", "--json", "--config", c.conf])).stdout).state === "stopping", 5000)).toBe(true);
    expect((await c.cli(["status", "--ready", "--config", c.conf])).code).toBe(1);
    expect(await waitFor(() => !alive(pid), 10_000)).toBe(true);
    const gone = await c.cli(["status", "--json", "--config", c.conf]);
    expect(gone.code).toBe(3);
    expect(JSON.parse(gone.stdout)).toMatchObject({ state: "not running", pid: null });
    expect((await c.cli(["status", "--ready", "--config", c.conf])).code).not.toBe(0);
  }, 60_000);

  test("status with an unreadable config says 4 (unknown), one line, no trace", async () => {
    const c = setup();
    appendFileSync(c.conf, "this is not a line\n");
    const s = await c.cli(["status", "--config", c.conf]);
    expect(s.code).toBe(4);
    expect(s.stderr).toContain(`${c.conf}:6`);
    expect(s.stderr).not.toMatch(/^\s+at /m);
  }, 30_000);
});

describe("unit reads the config file's own keys", () => {
  test("User= and PIDFile= from the file, and --config passed on in ExecStart", async () => {
    const c = setup("user=nobody\n");
    const r = await c.cli(["unit", "--type", "forking", "--config", c.conf]);
    expect(r.code).toBe(0);
    const line = (k: string) => r.stdout.split("\n").filter((l) => l.startsWith(`${k}=`));
    expect(line("User")).toEqual(["User=nobody"]);
    expect(line("PIDFile")).toEqual([`PIDFile=${c.pidFile}`]);
    expect(line("ExecStart")[0]).toContain(` start --pid-file ${c.pidFile} --config ${c.conf}`);
    // The other options the daemon reads are passed on as given.
    const r2 = await c.cli(["unit", "--config", c.conf, "--log-format", "json", "--shutdown-delay", "3000", "--health-port", "9099", "--log-level", "WARN"]);
    expect(r2.stdout.split("\n").find((l) => l.startsWith("ExecStart="))).toContain(` run --pid-file ${c.pidFile} --config ${c.conf} --log-level warn --log-format json --shutdown-delay 3000 --health-port 9099`);
  }, 30_000);
});
