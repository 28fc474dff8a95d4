/**
 * The supervisor and container recipes of examples/ (issue 12 item 7), each
 * run as written: a copy of the recipe in which only its marked values are
 * replaced (the program /usr/local/bin/hello or /hello by the binary the
 * Dockerfile's own build line compiles, the port 8080, the PID file), driven
 * by the real tool where Debian packages one: s6-supervise, runsv (extracted
 * from its package into /opt/bd-runit by .ci/run, never installed), tini, a
 * private pid namespace standing in for the container, supervise-daemon
 * (OpenRC 0.45 and its libraries extracted into /opt/bd-openrc). dinit is not
 * packaged and that supervise-daemon has no --notify: their readiness
 * contract is checked with a pipe the test owns, as they set it up.
 */
import { afterEach, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, closeSync, constants, cpSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, rmSync, statSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import type { Subprocess } from "bun";
import { alive, BUN, cleanupProcesses, freePort, ROOT, run, statFields, stopPid, tempDir, track, waitFor } from "./helpers.ts";

cleanupProcesses();
const dir = tempDir("bd-recipes-");
// The container runs the binary as the image's non-root user: it must reach it.
chmodSync(dir, 0o755);
const EX = join(ROOT, "examples");
const BIN = join(dir, "hello");
const APP = join(ROOT, "test/fixtures/sup-app.ts");
const isRoot = process.getuid?.() === 0;
const haveNs = isRoot && Bun.which("unshare") !== null && Bun.which("nsenter") !== null && Bun.which("setpriv") !== null && Bun.spawnSync(["env", "--default-signal", "true"]).exitCode === 0;
const whyNs = haveNs ? "" : " (skipped: needs root, unshare, nsenter, setpriv and env --default-signal for a private pid namespace)";
const S6 = Bun.which("s6-supervise") && Bun.which("s6-svc") && Bun.which("s6-svwait") && Bun.which("s6-svstat");
const whyS6 = S6 ? "" : " (skipped: s6 is not installed: apt-get install s6)";
// Where .ci/run extracts Debian's runit package; a system-wide runit also does.
const RUNIT_BIN = existsSync("/opt/bd-runit/usr/bin/runsv") ? "/opt/bd-runit/usr/bin" : Bun.which("runsv") ? join(Bun.which("runsv")!, "..") : undefined;
const whyRunit = RUNIT_BIN ? "" : " (skipped: no runit: .ci/run extracts it into /opt/bd-runit with apt-get download runit && dpkg-deb -x)";
const TINI = Bun.which("tini");
const whyTini = TINI ? "" : " (skipped: tini is not installed: apt-get install tini)";
let n = 0;

// ---- the recipes' text ---------------------------------------------------------------

/** The lines of the Dockerfile as [instruction, rest], continuation lines joined. */
function dockerfile(): [string, string][] {
  const text = readFileSync(join(EX, "container/Dockerfile"), "utf8").replace(/\\\n/g, " ");
  return text
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"))
    .map((l) => {
      const i = l.indexOf(" ");
      return [l.slice(0, i).toUpperCase(), l.slice(i + 1).trim()];
    });
}
const instr = (name: string) => dockerfile().filter(([i]) => i === name).map(([, rest]) => rest);
/** An exec-form (JSON array) argument list; the shell form would need a shell the image does not have. */
const execForm = (s: string): string[] => JSON.parse(s) as string[];

/** `key = value` lines of a dinit service file. */
function dinitSettings(path: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const l of readFileSync(path, "utf8").split("\n")) {
    const t = l.trim();
    if (!t || t.startsWith("#")) continue;
    const i = t.indexOf("=");
    m.set(t.slice(0, i).trim(), t.slice(i + 1).trim());
  }
  return m;
}

interface Place {
  pidFile: string;
  port: number;
  log: string;
}
function place(): Place {
  n++;
  return { pidFile: join(dir, `p${n}.pid`), port: freePort(), log: join(dir, `l${n}.log`) };
}

/** Only the recipes' marked values change; each must occur, so none is silently left pointing at the host's /run. */
function substitute(text: string, p: Place, seen: Set<string>): string {
  return text
    .replace(/\/usr\/local\/bin\/hello\b/g, () => (seen.add("program"), BIN))
    .replace(/\/run\/hello\.pid/g, () => (seen.add("pidFile"), p.pidFile))
    .replace(/\b8080\b/g, () => (seen.add("port"), String(p.port)))
    .replace(/\/var\/log\/hello\.log/g, p.log);
}

/** A copy of examples/REL (a directory or a file) with the marked values replaced. */
function recipe(rel: string, p: Place): string {
  const to = join(dir, `${basename(rel)}-${n}`);
  cpSync(join(EX, rel), to, { recursive: true });
  const seen = new Set<string>();
  const files = statSync(to).isDirectory() ? readdirSync(to).map((f) => join(to, f)) : [to];
  for (const f of files) writeFileSync(f, substitute(readFileSync(f, "utf8"), p, seen));
  expect([...seen].sort()).toEqual(["pidFile", "port", "program"]);
  return to;
}

// ---- processes ------------------------------------------------------------------------

function collect(proc: Subprocess<any, "pipe", "pipe">): () => string {
  let out = "";
  for (const s of [proc.stdout, proc.stderr]) {
    void (async () => {
      const d = new TextDecoder();
      for await (const c of s) out += d.decode(c, { stream: true });
    })();
  }
  return () => out;
}

function spawn(cmd: string[], env: Record<string, string> = {}) {
  const proc = Bun.spawn(cmd, { env: { ...process.env, ...env }, cwd: dir, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  track(proc.pid);
  return { proc, out: collect(proc) };
}

const ppid = (pid: number) => Number(statFields(pid)[1]);
const comm = (pid: number) => readFileSync(`/proc/${pid}/comm`, "utf8").trim();

/** The first child of `pid` (unshare's child is the namespace's PID 1). */
function childOf(pid: number): number {
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    const c = readFileSync(`/proc/${pid}/task/${t}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
    if (c[0]) return c[0];
  }
  return 0;
}

const get = async (port: number) => {
  try {
    const r = await fetch(`http://127.0.0.1:${port}/`);
    return { status: r.status, body: await r.text() };
  } catch {
    return { status: 0, body: "" };
  }
};
const serves = async (port: number) => (await get(port)).status === 200;

/** The stop budget the daemon logs at ready: "a stop takes at most N ms". */
function stopBudget(log: string): number {
  const m = /a stop takes at most (\d+) ms/.exec(log);
  if (!m) throw new Error(`no stop budget in the log:\n${log}`);
  return Number(m[1]);
}

/** Supervisors to bring down and end after each test, also when it failed. */
const supervisors: { pid: number; down: () => unknown }[] = [];
afterEach(async () => {
  for (const s of supervisors.splice(0)) {
    s.down();
    await waitFor(() => !alive(s.pid), 20_000);
    await stopPid(s.pid);
  }
});

/**
 * A pipe as a supervisor sets one up: the read end stays here (non-blocking),
 * the write end goes to the daemon as fd `fd`. `bytes()` is what arrived;
 * `eof()` says whether every writer has closed it.
 */
function readinessPipe() {
  const fifo = join(dir, `ready${++n}.fifo`);
  if (Bun.spawnSync(["mkfifo", fifo]).exitCode !== 0) throw new Error(`mkfifo ${fifo} failed`);
  const r = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
  const w = openSync(fifo, constants.O_WRONLY);
  let got = "";
  let eof = false;
  const buf = Buffer.alloc(64);
  const drain = () => {
    for (;;) {
      try {
        const k = readSync(r, buf);
        if (k === 0) {
          eof = true;
          return;
        }
        got += buf.subarray(0, k).toString("latin1");
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === "EAGAIN") return;
        throw e;
      }
    }
  };
  return {
    w,
    /** Give the write end away: after spawning, the daemon must hold the only one. */
    handedOver: () => closeSync(w),
    bytes: () => (drain(), got),
    eof: () => (drain(), eof),
    close: () => closeSync(r),
  };
}

/** A daemon started the way dinit or supervise-daemon does it: argv as the file says, the pipe's write end as fd `fd`. */
function spawnWithReadyFd(argv: string[], fd: number, pipe: ReturnType<typeof readinessPipe>, env: Record<string, string> = {}) {
  const stdio: (number | "ignore" | "pipe")[] = ["ignore", "pipe", "pipe"];
  while (stdio.length < fd) stdio.push("ignore");
  stdio.push(pipe.w);
  const proc = Bun.spawn(argv, { env: { ...process.env, ...env }, cwd: dir, stdio: stdio as any }) as unknown as Subprocess<"ignore", "pipe", "pipe">;
  track(proc.pid);
  pipe.handedOver();
  return { proc, out: collect(proc) };
}

/**
 * The readiness contract dinit and OpenRC rely on: nothing until the daemon
 * serves, then exactly "\n", then EOF while it keeps running.
 */
async function expectReadinessContract(d: { proc: Subprocess<any, any, any> }, pipe: ReturnType<typeof readinessPipe>, port: number) {
  expect(await waitFor(() => pipe.bytes() !== "" || pipe.eof(), 20_000)).toBe(true);
  // At the first byte, the port is open already: init was done before it.
  expect(await serves(port)).toBe(true);
  expect(await waitFor(() => pipe.eof(), 5000)).toBe(true);
  expect(pipe.bytes()).toBe("\n");
  expect(alive(d.proc.pid)).toBe(true);
  pipe.close();
}

beforeAll(async () => {
  // The Dockerfile's build line is the one build of the binary every recipe runs.
  const line = instr("RUN").find((r) => r.startsWith("bun build"));
  if (!line) throw new Error("examples/container/Dockerfile: no RUN bun build line");
  const argv = line.split(/\s+/);
  const out = argv.indexOf("--outfile");
  expect(argv[out + 1]).toBe("/hello");
  argv[0] = BUN;
  argv[out + 1] = BIN;
  const b = await run(argv, { timeoutMs: 120_000, cwd: ROOT });
  if (b.code !== 0) throw new Error(`${line} failed: ${b.stderr}`);
  chmodSync(BIN, 0o755);
}, 120_000);

// ---- s6 -------------------------------------------------------------------------------

describe.skipIf(!S6)(`s6: examples/s6/hello under a real s6-supervise${whyS6}`, () => {
  const svstat = (svc: string, fields: string) => Bun.spawnSync(["s6-svstat", "-o", fields, svc]).stdout.toString().trim().split(/\s+/);
  /** Start s6-supervise on `svc`; resolves once its control fifo and event fifodir exist (before that, s6-svc and s6-svwait exit 111). */
  async function supervise(svc: string, env: Record<string, string> = {}) {
    const s = spawn(["s6-supervise", svc], env);
    supervisors.push({ pid: s.proc.pid, down: () => Bun.spawnSync(["s6-svc", "-dx", svc]) });
    expect(await waitFor(() => existsSync(join(svc, "supervise", "control")) && existsSync(join(svc, "event")), 10_000)).toBe(true);
    return s;
  }

  test("s6-svwait -U returns once init is done, with the port open; s6-svc -h reloads; s6-svc -d ends it with exit code 0", async () => {
    const p = place();
    const svc = recipe("s6/hello", p);
    const fd = readFileSync(join(svc, "notification-fd"), "utf8").trim();
    expect(readFileSync(join(svc, "run"), "utf8")).toMatch(new RegExp(`^exec \\S+ run --ready-fd ${fd} `, "m"));
    const s = await supervise(svc);
    const w = await run(["s6-svwait", "-U", "-t", "20000", svc]);
    expect(w.code).toBe(0);
    const first = await get(p.port);
    expect(first.status).toBe(200);
    const [up, pid, ready] = svstat(svc, "up,pid,ready");
    track(Number(pid));
    expect([up, ready]).toEqual(["true", "true"]);
    // The daemon is s6-supervise's own child (exec, no shell between), and says so in its PID file and its answers.
    expect(ppid(Number(pid))).toBe(s.proc.pid);
    expect(readFileSync(p.pidFile, "utf8").trim()).toBe(pid!);
    expect(first.body).toBe(`hello from ${pid}\n`);
    // timeout-kill covers the stop budget the daemon logs.
    expect(Number(readFileSync(join(svc, "timeout-kill"), "utf8"))).toBeGreaterThanOrEqual(stopBudget(s.out()));

    expect(Bun.spawnSync(["s6-svc", "-h", svc]).exitCode).toBe(0);
    expect(await waitFor(() => s.out().includes("reload #1"), 10_000)).toBe(true);
    expect(await serves(p.port)).toBe(true);

    expect(Bun.spawnSync(["s6-svc", "-d", svc]).exitCode).toBe(0);
    expect((await run(["s6-svwait", "-D", "-t", "20000", svc])).code).toBe(0);
    expect(svstat(svc, "up,exitcode,signal")).toEqual(["false", "0", "NA"]);
    expect(alive(Number(pid))).toBe(false);
    expect(s.out()).toContain("shutdown: SIGTERM");
  }, 60_000);

  test("s6-svwait -U waits for a slow init: -u (up) returns while the port is still closed, -U only once it is open", async () => {
    // The recipe's run script with the fixture app, whose init takes 3 s, in place of hello.
    const p = place();
    const svc = recipe("s6/hello", p);
    writeFileSync(join(svc, "run"), `#!/bin/sh\nexec 2>&1\nexec ${BUN} ${APP} run --ready-fd 3 --pid-file ${p.pidFile}\n`);
    await supervise(svc, { SUP_NAME: `rcp${process.pid}s${n}`, SUP_PORT: String(p.port), SUP_INIT_MS: "3000" });
    expect((await run(["s6-svwait", "-u", "-t", "20000", svc])).code).toBe(0);
    expect(await serves(p.port)).toBe(false);
    expect(svstat(svc, "ready")).toEqual(["false"]);
    expect((await run(["s6-svwait", "-U", "-t", "20000", svc])).code).toBe(0);
    expect(await serves(p.port)).toBe(true);
  }, 60_000);

  test("a run script that says `start` keeps one pid: no detach, no restart loop, the daemon stays s6-supervise's child", async () => {
    const p = place();
    const svc = recipe("s6/hello", p);
    writeFileSync(join(svc, "run"), readFileSync(join(svc, "run"), "utf8").replace(/^(exec \S+) run --ready-fd 3 /m, "$1 start "));
    rmSync(join(svc, "notification-fd"));
    const s = await supervise(svc);
    expect(await waitFor(() => serves(p.port), 20_000)).toBe(true);
    const [, pid] = svstat(svc, "up,pid");
    track(Number(pid));
    await Bun.sleep(3000);
    expect(svstat(svc, "up,pid")).toEqual(["true", pid!]);
    expect(ppid(Number(pid))).toBe(s.proc.pid);
    expect(comm(s.proc.pid)).toBe("s6-supervise");
    expect(s.out()).toContain(`supervised by s6-supervise (pid ${s.proc.pid}): not detaching`);
    expect(s.out()).not.toContain("already running");
    expect(Bun.spawnSync(["s6-svc", "-d", svc]).exitCode).toBe(0);
    expect((await run(["s6-svwait", "-D", "-t", "20000", svc])).code).toBe(0);
    expect(svstat(svc, "exitcode")).toEqual(["0"]);
  }, 60_000);

  test("without notification-fd and --ready-fd, s6-svwait -U times out (99) while the daemon serves", async () => {
    const p = place();
    const svc = recipe("s6/hello", p);
    writeFileSync(join(svc, "run"), readFileSync(join(svc, "run"), "utf8").replace(/^(exec \S+ run) --ready-fd 3 /m, "$1 "));
    rmSync(join(svc, "notification-fd"));
    await supervise(svc);
    expect(await waitFor(() => serves(p.port), 20_000)).toBe(true);
    expect((await run(["s6-svwait", "-U", "-t", "3000", svc])).code).toBe(99);
  }, 30_000);

  test("./finish: a run script whose fd 3 is missing (no notification-fd) exits 2 once and the service stays down, not restarted", async () => {
    const p = place();
    const svc = recipe("s6/hello", p);
    rmSync(join(svc, "notification-fd"));
    const s = await supervise(svc);
    expect(await waitFor(() => s.out().includes("not restarting"), 20_000)).toBe(true);
    expect(await waitFor(() => svstat(svc, "up")[0] === "false", 5000)).toBe(true);
    await Bun.sleep(2000);
    expect(svstat(svc, "up,exitcode")).toEqual(["false", "2"]);
    expect(s.out().split("--ready-fd 3: fd 3 was not given by the supervisor (the runtime's own anon_inode:").length).toBe(2);
  }, 30_000);
});

// ---- runit ----------------------------------------------------------------------------

describe.skipIf(!RUNIT_BIN)(`runit: examples/runit/hello under a real runsv${whyRunit}`, () => {
  const sv = (args: string[], env: Record<string, string> = {}) => run([join(RUNIT_BIN!, "sv"), ...args], { env });
  async function runsv(svc: string, env: Record<string, string> = {}) {
    const s = spawn([join(RUNIT_BIN!, "runsv"), svc], env);
    supervisors.push({ pid: s.proc.pid, down: () => Bun.spawnSync([join(RUNIT_BIN!, "sv"), "exit", svc]) });
    // sv talks to runsv through supervise/ok, which runsv creates as it starts.
    expect(await waitFor(() => existsSync(join(svc, "supervise/ok")), 10_000)).toBe(true);
    return s;
  }

  test("sv -w 20 up returns once ./check (status --ready) passes, with the port open; sv hup reloads; sv down stops with exit 0", async () => {
    const p = place();
    const svc = recipe("runit/hello", p);
    const s = await runsv(svc);
    const up = await sv(["-w", "20", "up", svc]);
    expect(up).toMatchObject({ code: 0, stdout: expect.stringMatching(/^ok: run: /) });
    expect(await serves(p.port)).toBe(true);
    const pid = track(Number(readFileSync(p.pidFile, "utf8")))!;
    expect(ppid(pid)).toBe(s.proc.pid);
    expect((await sv(["-w", "20", "check", svc])).code).toBe(0);

    expect((await sv(["hup", svc])).code).toBe(0);
    expect(await waitFor(() => s.out().includes("reload #1"), 10_000)).toBe(true);

    const down = await sv(["-w", "20", "down", svc]);
    expect(down).toMatchObject({ code: 0, stdout: expect.stringMatching(/^ok: down: /) });
    expect(await waitFor(() => s.out().includes("hello: run exited"), 10_000)).toBe(true);
    expect(s.out()).toContain("hello: run exited 0 (wait status 0)");
    expect(alive(pid)).toBe(false);
  }, 60_000);

  test("./check fails while init runs (plain status would already say 0), and passes once the port is open", async () => {
    // The recipe's scripts with the fixture app, whose init takes 3 s, in place of hello.
    const p = place();
    const svc = recipe("runit/hello", p);
    writeFileSync(join(svc, "run"), `#!/bin/sh\nexec 2>&1\nexec ${BUN} ${APP} run --pid-file ${p.pidFile}\n`);
    writeFileSync(join(svc, "check"), readFileSync(join(svc, "check"), "utf8").replace(BIN, `${BUN} ${APP}`));
    const env = { SUP_NAME: `rcp${process.pid}r${n}`, SUP_PORT: String(p.port), SUP_INIT_MS: "3000" };
    await runsv(svc, env);
    expect(await waitFor(() => existsSync(p.pidFile) && readFileSync(p.pidFile, "utf8").trim() !== "", 10_000)).toBe(true);
    expect((await run([BUN, APP, "status", "--pid-file", p.pidFile], { env })).code).toBe(0);
    const early = await run(["sh", join(svc, "check")], { env, cwd: svc });
    expect(early.code).not.toBe(0);
    expect(await serves(p.port)).toBe(false);
    expect((await sv(["-w", "20", "up", svc], env)).code).toBe(0);
    expect(await serves(p.port)).toBe(true);
  }, 60_000);
});

// ---- dinit ----------------------------------------------------------------------------

describe("dinit: examples/dinit (not packaged: its readiness contract, with a pipe as dinit sets it up)", () => {
  test("ready-notification = pipefd:N: nothing before init, then exactly one newline, then EOF while the daemon runs; SIGTERM within stop-timeout", async () => {
    const p = place();
    const conf = dinitSettings(recipe("dinit/hello", p));
    expect(conf.get("type")).toBe("process");
    const fd = Number(/^pipefd:(\d+)$/.exec(conf.get("ready-notification") ?? "")?.[1]);
    expect(conf.get("command")).toContain(` --ready-fd ${fd} `);
    const pipe = readinessPipe();
    const d = spawnWithReadyFd(conf.get("command")!.split(/\s+/), fd, pipe);
    await expectReadinessContract(d, pipe, p.port);
    expect(Number(conf.get("stop-timeout")) * 1000).toBeGreaterThanOrEqual(stopBudget(d.out()));
    process.kill(d.proc.pid, "SIGTERM");
    expect(await d.proc.exited).toBe(0);
  }, 30_000);

  test("ready-notification = pipevar:VAR: the fd number dinit picked is read from $VAR", async () => {
    const p = place();
    const conf = dinitSettings(recipe("dinit/hello-pipevar", p));
    const v = /^pipevar:(\w+)$/.exec(conf.get("ready-notification") ?? "")?.[1];
    expect(v).toBe("DINIT_READY_FD");
    const command = conf.get("command")!.split(/\s+/);
    expect(conf.get("command")).toContain(` --ready-fd-env ${v} `);
    const pipe = readinessPipe();
    // dinit chooses the number; 5 here, so nothing can pass by assuming 3.
    const d = spawnWithReadyFd(command, 5, pipe, { [v!]: "5" });
    await expectReadinessContract(d, pipe, p.port);
    process.kill(d.proc.pid, "SIGTERM");
    expect(await d.proc.exited).toBe(0);
  }, 30_000);
});

// ---- OpenRC ---------------------------------------------------------------------------

/** The init script's variables, as `sh` reads them (it is shell, sourced by openrc-run). */
function openrcVars(script: string): Record<string, string> {
  const names = ["supervisor", "command", "command_args", "notify", "retry", "extra_started_commands", "output_log", "error_log"];
  const r = Bun.spawnSync(["sh", "-c", `. "$0"; for v in ${names.join(" ")}; do eval "printf '%s\\0' \\"\\$$v\\""; done`, script]);
  if (r.exitCode !== 0) throw new Error(`sh . ${script}: ${r.stderr.toString()}`);
  const vals = r.stdout.toString().split("\0");
  return Object.fromEntries(names.map((k, i) => [k, vals[i] ?? ""]));
}
/** The script's own reload(), with openrc-run's ebegin/eend stood in by no-ops. */
const openrcReload = (script: string) => run(["sh", "-c", `ebegin() { :; }; eend() { return "$1"; }; RC_SVCNAME=hello; . "$0"; reload`, script]);

describe("OpenRC: examples/openrc/hello (Debian 12's supervise-daemon has no --notify: the script read by sh, its command run as supervise-daemon does)", () => {
  test("supervisor=supervise-daemon, notify=fd:N: the command readies on fd N (one newline after init, EOF, still running); reload() reloads; retry covers the stop budget", async () => {
    const p = place();
    const script = recipe("openrc/hello", p);
    const v = openrcVars(script);
    expect(v.supervisor).toBe("supervise-daemon");
    const fd = Number(/^fd:(\d+)$/.exec(v.notify!)?.[1]);
    expect(` ${v.command_args} `).toContain(` --ready-fd ${fd} `);
    const pipe = readinessPipe();
    // supervise-daemon execs `$command $command_args` (word-split by the eval of supervise_start).
    const d = spawnWithReadyFd([v.command!, ...v.command_args!.split(/\s+/).filter(Boolean)], fd, pipe);
    await expectReadinessContract(d, pipe, p.port);

    expect(v.extra_started_commands!.split(/\s+/)).toContain("reload");
    expect((await openrcReload(script)).code).toBe(0);
    expect(await waitFor(() => d.out().includes("reload #1"), 10_000)).toBe(true);

    const term = /TERM\/(\d+)/.exec(v.retry!);
    expect(Number(term?.[1]) * 1000).toBeGreaterThanOrEqual(stopBudget(d.out()));
    process.kill(d.proc.pid, "SIGTERM");
    expect(await d.proc.exited).toBe(0);
  }, 30_000);
});

// Debian 12's OpenRC (0.45) extracted with its librc1 and libeinfo1, never installed.
const OPENRC = "/opt/bd-openrc";
const OPENRC_LIB = existsSync(join(OPENRC, "sbin/supervise-daemon")) && existsSync(join(OPENRC, "lib")) ? readdirSync(join(OPENRC, "lib")).map((d) => join(OPENRC, "lib", d)).find((d) => existsSync(join(d, "librc.so.1")) && existsSync(join(d, "libeinfo.so.1"))) : undefined;
const haveOpenrc = isRoot && OPENRC_LIB !== undefined && Bun.which("unshare") !== null && Bun.which("nsenter") !== null;
const whyOpenrc = haveOpenrc ? "" : " (skipped: needs root, unshare, nsenter and Debian's openrc, librc1 and libeinfo1 extracted into /opt/bd-openrc)";

describe.skipIf(!haveOpenrc)(`OpenRC: examples/openrc/hello under a real supervise-daemon (0.45: no --notify, so the script's fallback without notify= and --ready-fd)${whyOpenrc}`, () => {
  /**
   * supervise-daemon keeps its state in /run/openrc: a private mount
   * namespace with a tmpfs on /run (and no /dev/log) keeps the host's out of
   * it. Returns the supervisor's pid and a runner for later calls in its namespace.
   */
  async function superviseDaemon(script: string, args: (v: Record<string, string>) => string[]) {
    const v = openrcVars(script);
    const sdPid = join(dir, `sd${++n}.pid`);
    const env = { RC_SVCNAME: "hello", LD_LIBRARY_PATH: OPENRC_LIB! };
    const sd = join(OPENRC, "sbin/supervise-daemon");
    // As supervise_start (lib/rc/sh/supervise-daemon.sh) calls it: --retry, --stdout/--stderr from output_log/error_log.
    const start = ["hello", "--start", "--pidfile", sdPid, "--retry", v.retry!, "--stdout", v.output_log!, "--stderr", v.error_log!, v.command!, "--", ...args(v)];
    const setup = 'mount -t tmpfs tmpfs /run && mkdir /run/openrc && { [ ! -e /dev/log ] || mount --bind /dev/null /dev/log; } && exec "$@"';
    const r = await run(["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", setup, "sh", sd, ...start], { env });
    expect(r).toMatchObject({ code: 0, stderr: "" });
    expect(await waitFor(() => existsSync(sdPid) && readFileSync(sdPid, "utf8").trim() !== "", 10_000)).toBe(true);
    const sup = track(Number(readFileSync(sdPid, "utf8")))!;
    const inNs = (...a: string[]) => run(["nsenter", "-t", String(sup), "-m", "--", sd, "hello", ...a], { env });
    supervisors.push({ pid: sup, down: () => Bun.spawnSync(["nsenter", "-t", String(sup), "-m", "--", sd, "hello", "--stop", "--pidfile", sdPid], { env: { ...process.env, ...env } }) });
    return { sup, sdPid, inNs, log: () => (existsSync(v.output_log!) ? readFileSync(v.output_log!, "utf8") : "") };
  }
  const withoutReadyFd = (v: Record<string, string>) => v.command_args!.replace(/ --ready-fd \d+/, "").split(/\s+/).filter(Boolean);

  test("the command as supervise-daemon's child: serves; reload() reloads; --stop ends it cleanly", async () => {
    const p = place();
    const script = recipe("openrc/hello", p);
    const d = await superviseDaemon(script, withoutReadyFd);
    expect(await waitFor(() => serves(p.port), 20_000)).toBe(true);
    const pid = track(Number(readFileSync(p.pidFile, "utf8")))!;
    expect(ppid(pid)).toBe(d.sup);
    // The kernel keeps 15 characters of a command name: "supervise-daemon" reads back as this.
    expect(comm(d.sup)).toBe("supervise-daemo");
    expect((await openrcReload(script)).code).toBe(0);
    expect(d.log()).toContain("reload #1");
    expect((await d.inNs("--stop", "--pidfile", d.sdPid)).code).toBe(0);
    expect(await waitFor(() => !alive(pid), 20_000)).toBe(true);
    expect(d.log()).toContain("shutdown: SIGTERM");
    expect(d.log()).toMatch(/\] stopped\n/);
  }, 60_000);

  // /proc/PID/comm holds 15 characters ("supervise-daemo"): this failed while
  // src/supervisor.ts compared the whole name, and start detached.
  test("a script whose command_args say `start`: it does not detach, and stays supervise-daemon's child", async () => {
    const p = place();
    const script = recipe("openrc/hello", p);
    const d = await superviseDaemon(script, (v) => withoutReadyFd(v).map((a) => (a === "run" ? "start" : a)));
    expect(await waitFor(() => serves(p.port), 20_000)).toBe(true);
    const pid = track(Number(readFileSync(p.pidFile, "utf8")))!;
    await Bun.sleep(2000);
    expect(ppid(pid)).toBe(d.sup);
    expect(d.log()).toContain(`supervised by supervise-daemo`);
  }, 60_000);
});

// ---- container and Kubernetes ---------------------------------------------------------

/**
 * ENTRYPOINT + CMD as the namespace's PID 1, as the image's user; the PID
 * file's directory is substituted by one that user may write.
 */
async function container(extraEnv: Record<string, string> = {}) {
  const [user] = instr("USER");
  const [uid, gid] = (user ?? "").split(":");
  expect(uid).toMatch(/^\d+$/);
  const p = place();
  const ctr = join(dir, `ctr${n}`);
  mkdirSync(ctr);
  chmodSync(ctr, 0o1777);
  const pidFile = join(ctr, "hello.pid");
  const sub = (argv: string[]) => argv.map((a) => (a === "/hello" ? BIN : a === "/tmp/hello.pid" ? pidFile : a === "8080" ? String(p.port) : a));
  const argv = sub([...execForm(instr("ENTRYPOINT")[0]!), ...execForm(instr("CMD")[0]!)]);
  expect(argv).toContain(pidFile);
  const s = spawn(["unshare", "--pid", "--fork", "--mount-proc", "--", "env", "--default-signal", "setpriv", `--reuid=${uid}`, `--regid=${gid ?? uid}`, "--clear-groups", "--", ...argv], extraEnv);
  // Tracked by itself: should unshare die first, PID 1 would live on (reparented to the host's init).
  expect(await waitFor(() => childOf(s.proc.pid) !== 0, 10_000)).toBe(true);
  const inner = track(childOf(s.proc.pid))!;
  /** The namespace's PID 1, seen from here. */
  const pid1 = () => inner;
  /** Run argv inside the container (its pid and mount namespaces, as its user), as docker exec / an exec probe does. */
  const exec = (probe: string[]) => run(["nsenter", "-t", String(pid1()), "-p", "-m", "-S", uid!, "-G", gid ?? uid!, "--", ...sub(probe)]);
  return { ...s, port: p.port, pid1, exec, sub };
}

describe.skipIf(!haveNs)(`container: examples/container/Dockerfile's binary as PID 1 of a pid namespace, no init in front${whyNs}`, () => {
  test("ENTRYPOINT + CMD as the image's USER: serves as PID 1; the HEALTHCHECK command exits 0; STOPSIGNAL ends it with exit 0", async () => {
    const c = await container();
    expect(await waitFor(() => serves(c.port), 20_000)).toBe(true);
    expect((await get(c.port)).body).toBe("hello from 1\n");
    const pid1 = c.pid1();
    expect(readFileSync(`/proc/${pid1}/status`, "utf8")).toMatch(/^NSpid:\s+\d+\s+1$/m);
    expect(readFileSync(`/proc/${pid1}/cmdline`, "utf8").split("\0")[0]).toBe(BIN);
    expect(readFileSync(`/proc/${pid1}/status`, "utf8")).toMatch(new RegExp(`^Uid:\\s+${instr("USER")[0]!.split(":")[0]}\\s`, "m"));

    const hc = instr("HEALTHCHECK")[0]!;
    const probe = execForm(hc.slice(hc.indexOf("CMD ") + 4));
    expect(probe.slice(1, 3)).toEqual(["status", "--ready"]);
    let last = -1;
    expect(await waitFor(async () => (last = (await c.exec(probe)).code) === 0, 20_000, 200)).toBe(true);
    expect(last).toBe(0);

    const sig = instr("STOPSIGNAL")[0] as NodeJS.Signals;
    expect(sig).toMatch(/^SIG(TERM|INT|QUIT)$/);
    process.kill(pid1, sig);
    expect(await c.proc.exited).toBe(0);
    expect(c.out()).toContain(`stopping (${sig})`);
  }, 60_000);

  test("k8s-pod.yaml: the exec probes answer (ready 0, then non-zero from the SIGTERM on while it still serves); the grace period covers the logged stop budget; no preStop", async () => {
    const yaml = readFileSync(join(EX, "container/k8s-pod.yaml"), "utf8");
    const code = yaml.split("\n").filter((l) => !l.trim().startsWith("#"));
    expect(code.join("\n")).not.toContain("preStop");
    const grace = Number(/^\s*terminationGracePeriodSeconds:\s*(\d+)\s*$/m.exec(code.join("\n"))?.[1]);
    const probeOf = (kind: string) => {
      const at = code.findIndex((l) => l.trim() === `${kind}:`);
      const line = code.slice(at).find((l) => l.trim().startsWith("command:"));
      return execForm(line!.slice(line!.indexOf("[")));
    };
    const readiness = probeOf("readinessProbe");
    const liveness = probeOf("livenessProbe");
    // The PID file the probes read lies on the pod's writable emptyDir (readOnlyRootFilesystem).
    expect(code.join("\n")).toMatch(/readOnlyRootFilesystem: true/);
    expect(code.join("\n")).toMatch(/mountPath: \/tmp\b/);
    expect(readiness).toContain("/tmp/hello.pid");

    // The kubelet sets KUBERNETES_SERVICE_HOST in every container.
    const c = await container({ KUBERNETES_SERVICE_HOST: "10.0.0.1" });
    expect(await waitFor(async () => (await c.exec(readiness)).code === 0, 20_000, 200)).toBe(true);
    expect((await c.exec(liveness)).code).toBe(0);
    expect(grace * 1000).toBeGreaterThanOrEqual(stopBudget(c.out()));
    expect(c.out()).toContain("shutdown delay 5000 ms");

    process.kill(c.pid1(), "SIGTERM");
    expect(await waitFor(async () => (await c.exec(readiness)).code !== 0, 5000, 50)).toBe(true);
    // Not ready, yet still answering while the endpoint is being removed; and alive.
    expect(await serves(c.port)).toBe(true);
    expect((await c.exec(liveness)).code).toBe(0);
    expect(await c.proc.exited).toBe(0);
  }, 60_000);
});

// ---- tini -----------------------------------------------------------------------------

describe.skipIf(!TINI)(`tini: tini -- hello start${whyTini}`, () => {
  test("start does not detach under tini: the daemon stays tini's child and serves; tini's SIGTERM ends it with 0", async () => {
    const p = place();
    const s = spawn([TINI!, "--", BIN, "start", "--port", String(p.port), "--pid-file", p.pidFile]);
    expect(await waitFor(() => serves(p.port), 20_000)).toBe(true);
    const pid = track(Number(readFileSync(p.pidFile, "utf8")))!;
    expect(ppid(pid)).toBe(s.proc.pid);
    expect(s.out()).toContain(`supervised by tini (pid ${s.proc.pid}): not detaching`);
    await Bun.sleep(1000);
    expect(await serves(p.port)).toBe(true);
    expect(ppid(pid)).toBe(s.proc.pid);
    process.kill(s.proc.pid, "SIGTERM");
    expect(await s.proc.exited).toBe(0);
    expect(alive(pid)).toBe(false);
  }, 30_000);
});
