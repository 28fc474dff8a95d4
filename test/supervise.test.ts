/**
 * Issue 12 from outside: PID 1 of a private pid namespace standing in for a
 * container (`unshare --pid --fork --mount-proc`, under `env
 * --default-signal` so inherited ignored signals cannot fake a result), a
 * real tini as the parent, readiness on an fd the test owns, the shutdown
 * delay, the health listener, a read-only /run.
 */
import { describe, expect, test } from "bun:test";
import { chmodSync, closeSync, existsSync, openSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { alive, BUN, cleanupProcesses, freePort, ROOT, run, tempDir, track, waitFor } from "./helpers.ts";

cleanupProcesses();
const APP = join(ROOT, "test/fixtures/sup-app.ts");
const dir = tempDir("bd-sup-");
chmodSync(dir, 0o755);
const isRoot = process.getuid?.() === 0;
const haveUnshare = isRoot && Bun.which("unshare") !== null && Bun.spawnSync(["env", "--default-signal", "true"]).exitCode === 0;
const whyNs = haveUnshare ? "" : " (skipped: needs root, unshare and env --default-signal for a private pid namespace)";
const TINI = Bun.which("tini");
let n = 0;

interface Proc {
  proc: Subprocess<"ignore" | "pipe", "pipe", "pipe">;
  /** The daemon's pid as seen from here (inside a namespace: PID 1's outer pid). */
  pid: () => number;
  out(): string;
  err(): string;
  exited: Promise<number>;
}

function collect(proc: Subprocess<any, "pipe", "pipe">) {
  let out = "";
  let err = "";
  const dec = () => new TextDecoder();
  void (async () => {
    const d = dec();
    for await (const c of proc.stdout) out += d.decode(c, { stream: true });
  })();
  void (async () => {
    const d = dec();
    for await (const c of proc.stderr) err += d.decode(c, { stream: true });
  })();
  return { out: () => out, err: () => err };
}

/** The first child of `pid` (unshare's child is the namespace's PID 1). */
function childOf(pid: number): number {
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    const c = readFileSync(`/proc/${pid}/task/${t}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
    if (c[0]) return c[0];
  }
  return 0;
}

function spawnDaemon(cmd: string[], env: Record<string, string>, opts: { ns?: boolean; fds?: number[] } = {}): Proc {
  const argv = opts.ns ? ["unshare", "--pid", "--fork", "--mount-proc", "--", "env", "--default-signal", BUN, APP, ...cmd] : [BUN, APP, ...cmd];
  const proc = Bun.spawn(argv, {
    env: { ...process.env, ...env },
    cwd: ROOT,
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    ...(opts.fds ? { stdio: ["ignore", "pipe", "pipe", ...opts.fds] } : {}),
  }) as Subprocess<"ignore", "pipe", "pipe">;
  track(proc.pid);
  const c = collect(proc);
  let inner = 0;
  const pid = () => {
    if (!opts.ns) return proc.pid;
    if (!inner) {
      inner = childOf(proc.pid);
      // The namespace's PID 1 too: were unshare killed first, it would live on under the host's init.
      if (inner) track(inner);
    }
    return inner;
  };
  return { proc, pid, ...c, exited: proc.exited };
}

const get = async (port: number, path = "/") => {
  try {
    const r = await fetch(`http://127.0.0.1:${port}${path}`);
    return r.status;
  } catch {
    return 0;
  }
};

function fresh() {
  n++;
  return { name: `sup${process.pid}-${n}`, events: join(dir, `e${n}.log`), pidFile: join(dir, `p${n}.pid`), port: freePort() };
}
const events = (f: string) => (existsSync(f) ? readFileSync(f, "utf8").trim().split("\n") : []);

describe.skipIf(!haveUnshare)(`as PID 1 of a pid namespace (a container without an init)${whyNs}`, () => {
  test("start does not fork: it serves as PID 1 and says why; TERM ends it with 0", async () => {
    const f = fresh();
    const d = spawnDaemon(["start", "--pid-file", f.pidFile], { SUP_NAME: f.name, SUP_PORT: String(f.port), SUP_EVENTS: f.events }, { ns: true });
    expect(await waitFor(async () => (await get(f.port)) === 200, 20_000)).toBe(true);
    expect(await (await fetch(`http://127.0.0.1:${f.port}/`)).text()).toBe("ok 1");
    expect(d.err()).toContain("PID 1 (a container's init): not detaching");
    expect(d.out()).not.toContain("started ");
    process.kill(d.pid(), "SIGTERM");
    expect(await d.exited).toBe(0);
    expect(events(f.events)).toContain("shutdown SIGTERM");
  }, 30_000);

  for (const [sig, stops] of [["SIGTERM", true], ["SIGINT", true], ["SIGQUIT", true], ["SIGHUP", false], ["SIGUSR1", false]] as const) {
    test(`${sig} does what the docs say, as PID 1 and as a plain foreground run alike`, async () => {
      for (const ns of [true, false]) {
        const f = fresh();
        const d = spawnDaemon(["run", "--pid-file", f.pidFile], { SUP_NAME: f.name, SUP_PORT: String(f.port), SUP_EVENTS: f.events }, { ns });
        expect(await waitFor(async () => (await get(f.port)) === 200, 20_000)).toBe(true);
        process.kill(d.pid(), sig);
        if (stops) {
          expect(await d.exited).toBe(0);
          expect(events(f.events)).toContain(`shutdown ${sig}`);
        } else {
          const want = sig === "SIGHUP" ? "reload" : "usr1";
          expect(await waitFor(() => events(f.events).includes(want), 10_000)).toBe(true);
          expect(await get(f.port)).toBe(200);
          process.kill(d.pid(), "SIGTERM");
          expect(await d.exited).toBe(0);
        }
      }
    }, 60_000);
  }

  test("orphans are reaped (no zombie left) while every Bun.spawn child still gets its own exit code; the app keeps serving", async () => {
    const f = fresh();
    const d = spawnDaemon(["run", "--pid-file", f.pidFile], { SUP_NAME: f.name, SUP_PORT: String(f.port), SUP_EVENTS: f.events, SUP_ORPHANS: "200" }, { ns: true });
    expect(await waitFor(() => events(f.events).some((l) => l.startsWith("codes")), 30_000)).toBe(true);
    expect(events(f.events)).toContain("codes ok");
    // The orphans' sleeps end after 0.2 s; the sweep runs every second.
    const zombies = () => {
      const pid1 = d.pid();
      const kids = readdirSync(`/proc/${pid1}/task`).flatMap((t) => readFileSync(`/proc/${pid1}/task/${t}/children`, "utf8").trim().split(/\s+/).filter(Boolean));
      return kids.filter((k) => {
        try {
          const st = readFileSync(`/proc/${k}/stat`, "utf8");
          return st.slice(st.lastIndexOf(")") + 2, st.lastIndexOf(")") + 3) === "Z";
        } catch {
          return false;
        }
      });
    };
    expect(await waitFor(() => zombies().length === 0, 10_000)).toBe(true);
    expect(await get(f.port)).toBe(200);
    process.kill(d.pid(), "SIGTERM");
    expect(await d.exited).toBe(0);
  }, 60_000);

  test("the last step of shutdown sends SIGTERM to every process left in the namespace", async () => {
    const f = fresh();
    const helperFile = join(dir, `helper${n}.txt`);
    const d = spawnDaemon(["run", "--pid-file", f.pidFile], { SUP_NAME: f.name, SUP_PORT: String(f.port), SUP_EVENTS: f.events, SUP_HELPER: helperFile }, { ns: true });
    expect(await waitFor(async () => (await get(f.port)) === 200, 20_000)).toBe(true);
    process.kill(d.pid(), "SIGTERM");
    expect(await d.exited).toBe(0);
    expect(readFileSync(helperFile, "utf8").trim()).toBe("TERM");
    expect(d.err()).toContain("PID 1: every other process has exited");
  }, 30_000);

  test("a read-only /run: the default PID file falls back to /tmp/NAME.pid with one warning, and the daemon serves", async () => {
    const f = fresh();
    const proc = Bun.spawn(
      ["unshare", "--pid", "--fork", "--mount", "--propagation", "private", "--mount-proc", "--", "sh", "-c", 'mount --bind /run /run && mount -o remount,bind,ro /run && exec env --default-signal "$@"', "sh", BUN, APP, "run"],
      { env: { ...process.env, SUP_NAME: f.name, SUP_PORT: String(f.port) }, cwd: ROOT, stdin: "ignore", stdout: "pipe", stderr: "pipe" },
    );
    track(proc.pid);
    const c = collect(proc);
    expect(await waitFor(async () => (await get(f.port)) === 200, 20_000)).toBe(true);
    const warnings = c.err().split("\n").filter((l) => l.includes("[warn]"));
    expect(warnings).toEqual([expect.stringContaining(`the default PID file /run/${f.name}.pid cannot be created (EROFS): using /tmp/${f.name}.pid`)]);
    expect(readFileSync(`/tmp/${f.name}.pid`, "utf8").trim()).toBe("1");
    process.kill(childOf(proc.pid), "SIGTERM");
    expect(await proc.exited).toBe(0);
    expect(existsSync(`/tmp/${f.name}.pid`)).toBe(false);
  }, 30_000);
});

describe.skipIf(!TINI)(`under a supervisor that is the parent (tini)${TINI ? "" : " (skipped: tini is not installed: apt-get install tini)"}`, () => {
  test("start does not fork under tini: it says so and serves; the supervisor's SIGTERM ends it with 0", async () => {
    const f = fresh();
    const proc = Bun.spawn([TINI!, "-s", "--", BUN, APP, "start", "--pid-file", f.pidFile], { env: { ...process.env, SUP_NAME: f.name, SUP_PORT: String(f.port) }, cwd: ROOT, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
    track(proc.pid);
    const c = collect(proc);
    expect(await waitFor(async () => (await get(f.port)) === 200, 20_000)).toBe(true);
    expect(c.err()).toContain(`supervised by tini (pid ${proc.pid}): not detaching`);
    const daemonPid = Number(readFileSync(f.pidFile, "utf8"));
    expect(childOf(proc.pid)).toBe(daemonPid);
    process.kill(proc.pid, "SIGTERM");
    expect(await proc.exited).toBe(0);
    expect(alive(daemonPid)).toBe(false);
  }, 30_000);
});

describe("readiness on an fd (s6 notification-fd, dinit pipefd, OpenRC notify=fd)", () => {
  /** A fifo whose reader copies what arrives to a file: the daemon gets a write end as fd 3; the reader ends at EOF. */
  function readyPipe() {
    const fifo = join(dir, `ready${++n}.fifo`);
    const got = join(dir, `ready${n}.got`);
    Bun.spawnSync(["mkfifo", fifo]);
    const reader = Bun.spawn(["sh", "-c", 'cat "$0" > "$1"', fifo, got], { stdout: "ignore" });
    track(reader.pid);
    const w = openSync(fifo, "w");
    return { w, got: () => (existsSync(got) ? readFileSync(got, "utf8") : ""), eof: reader.exited };
  }

  test("after init, exactly one newline, then EOF while the daemon still runs; nothing before init ends", async () => {
    const f = fresh();
    const p = readyPipe();
    const d = spawnDaemon(["run", "--ready-fd", "3", "--pid-file", f.pidFile], { SUP_NAME: f.name, SUP_PORT: String(f.port), SUP_INIT_MS: "700" }, { fds: [p.w] });
    closeSync(p.w);
    // While init runs (the port does not answer yet), nothing has been written.
    let polls = 0;
    while ((await get(f.port)) !== 200) {
      expect(p.got()).toBe("");
      polls++;
      await Bun.sleep(20);
    }
    expect(polls).toBeGreaterThan(0);
    expect(await p.eof).toBe(0);
    expect(p.got()).toBe("\n");
    expect(alive(d.pid())).toBe(true);
    process.kill(d.pid(), "SIGTERM");
    expect(await d.exited).toBe(0);
  }, 30_000);

  test("the daemon closes it (EOF) without a byte when init fails", async () => {
    const f = fresh();
    const fifo = join(dir, `fail${++n}.fifo`);
    Bun.spawnSync(["mkfifo", fifo]);
    const reading = Bun.spawn(["cat", fifo], { stdout: "pipe" });
    track(reading.pid);
    const w = openSync(fifo, "w");
    const d = spawnDaemon(["run", "--ready-fd", "3", "--pid-file", f.pidFile], { SUP_NAME: f.name, SUP_FAIL: "1" }, { fds: [w] });
    closeSync(w);
    expect(await d.exited).toBe(1);
    expect(await new Response(reading.stdout).text()).toBe("");
  }, 30_000);

  test("an fd that is not open, or not a pipe, is a usage error (exit 2) naming the fd and the supervisor setting; start --ready-fd too; --ready-fd-env reads and removes the variable", async () => {
    const f = fresh();
    let r = await run([BUN, APP, "run", "--ready-fd", "7", "--pid-file", f.pidFile], { env: { SUP_NAME: f.name } });
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(`${f.name}: --ready-fd 7: fd 7 is not open (EBADF); check the supervisor's setting (s6: notification-fd; dinit: ready-notification = pipefd:N or pipevar:VAR; OpenRC: notify=fd:N)\n`);
    const file = openSync(join(dir, `plain${n}`), "w");
    const p = Bun.spawn([BUN, APP, "run", "--ready-fd", "3", "--pid-file", f.pidFile], { env: { ...process.env, SUP_NAME: f.name }, stdio: ["ignore", "pipe", "pipe", file] });
    track(p.pid);
    expect(await p.exited).toBe(2);
    expect(await new Response(p.stderr).text()).toContain("fd 3 is a regular file, not a pipe or socket");
    r = await run([BUN, APP, "start", "--ready-fd", "3", "--pid-file", f.pidFile], { env: { SUP_NAME: f.name } });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`--ready-fd is not an option of "start"`);
    r = await run([BUN, APP, "run", "--ready-fd-env", "READY_FD", "--pid-file", f.pidFile], { env: { SUP_NAME: f.name } });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("--ready-fd-env READY_FD: the variable is not set");
    expect(existsSync(f.pidFile)).toBe(false);

    // dinit's pipevar: the number in $VAR, gone from the environment the app sees.
    const fifo = join(dir, `env${++n}.fifo`);
    Bun.spawnSync(["mkfifo", fifo]);
    const reading = Bun.spawn(["cat", fifo], { stdout: "pipe" });
    track(reading.pid);
    const w = openSync(fifo, "w");
    const d = Bun.spawn([BUN, APP, "run", "--ready-fd-env", "READY_FD", "--pid-file", f.pidFile], { env: { ...process.env, SUP_NAME: f.name, READY_FD: "3", SUP_PORT: String(f.port), SUP_EVENTS: f.events }, stdio: ["ignore", "pipe", "pipe", w] });
    track(d.pid);
    closeSync(w);
    expect(await waitFor(async () => (await get(f.port)) === 200, 20_000)).toBe(true);
    expect(events(f.events)).toContain("env READY_FD=(unset)");
    process.kill(d.pid, "SIGTERM");
    expect(await d.exited).toBe(0);
    expect(await new Response(reading.stdout).text()).toBe("\n");
  }, 30_000);
});

describe("the shutdown delay and the health listener (orchestrators)", () => {
  test("TERM: not ready at once (status --ready 1, /readyz 503, /livez 200), every request in the delay answered, then the hooks; exit 0", async () => {
    const f = fresh();
    const health = freePort();
    const d = spawnDaemon(["run", "--shutdown-delay", "1500", "--health-port", String(health), "--pid-file", f.pidFile], { SUP_NAME: f.name, SUP_PORT: String(f.port), SUP_EVENTS: f.events });
    expect(await waitFor(async () => (await get(health, "/readyz")) === 200, 20_000)).toBe(true);
    expect(d.err()).toContain("a stop takes at most 31500 ms (shutdown delay 1500 ms + 3 shutdown hooks x 10000 ms)");
    expect((await run([BUN, APP, "status", "--ready", "--pid-file", f.pidFile], { env: { SUP_NAME: f.name } })).code).toBe(0);
    const sent = performance.now();
    process.kill(d.pid(), "SIGTERM");
    // Requests keep being answered while the delay runs. It began when the
    // daemon handled the signal, no earlier than we sent it, and lasts 1500 ms:
    // so everything sent in the first 1000 ms after the kill falls inside it.
    const codes: number[] = [];
    const ready: number[] = [];
    while (performance.now() - sent < 1000) {
      codes.push(await get(f.port));
      ready.push(await get(health, "/readyz"));
      expect(await get(health, "/livez")).toBe(200);
      await Bun.sleep(20);
    }
    expect(events(f.events).includes("hooks begin")).toBe(false);
    expect(codes.length).toBeGreaterThan(2);
    expect(codes.every((c) => c === 200)).toBe(true);
    // Not ready from the signal on: once 503, never 200 again.
    expect(ready.at(-1)).toBe(503);
    expect(ready.slice(ready.indexOf(503)).every((c) => c === 503)).toBe(true);
    expect((await run([BUN, APP, "status", "--ready", "--pid-file", f.pidFile], { env: { SUP_NAME: f.name } })).code).not.toBe(0);
    expect(await d.exited).toBe(0);
  }, 30_000);

  test("a second TERM skips the rest of the delay; a third forces the exit (128+15)", async () => {
    const f = fresh();
    const d = spawnDaemon(["run", "--shutdown-delay", "60000", "--pid-file", f.pidFile], { SUP_NAME: f.name, SUP_PORT: String(f.port), SUP_EVENTS: f.events, SUP_STOP_MS: "60000" });
    expect(await waitFor(async () => (await get(f.port)) === 200, 20_000)).toBe(true);
    process.kill(d.pid(), "SIGTERM");
    expect(await waitFor(() => d.err().includes("not ready; still serving"), 5000)).toBe(true);
    process.kill(d.pid(), "SIGTERM");
    // The hooks started long before the 60 s delay would have ended.
    expect(await waitFor(() => events(f.events).some((l) => l.startsWith("shutdown")), 10_000)).toBe(true);
    process.kill(d.pid(), "SIGTERM");
    expect(await d.exited).toBe(143);
    expect(existsSync(f.pidFile)).toBe(false);
  }, 30_000);

  test("under Kubernetes (KUBERNETES_SERVICE_HOST) the delay defaults to 5000 ms, said once", async () => {
    const f = fresh();
    const d = spawnDaemon(["run", "--pid-file", f.pidFile], { SUP_NAME: f.name, SUP_PORT: String(f.port), KUBERNETES_SERVICE_HOST: "10.0.0.1" });
    expect(await waitFor(async () => (await get(f.port)) === 200, 20_000)).toBe(true);
    expect(d.err().split("KUBERNETES_SERVICE_HOST is set").length).toBe(2);
    expect(d.err()).toContain("shutdown delay 5000 ms");
    process.kill(d.pid(), "SIGTERM");
    // Two signals sent at once would arrive as one: the second waits until the first began the delay.
    expect(await waitFor(() => d.err().includes("not ready; still serving for the shutdown delay of 5000 ms"), 5000)).toBe(true);
    process.kill(d.pid(), "SIGTERM");
    expect(await d.exited).toBe(0);
  }, 30_000);
});
