/**
 * Issue 8, items 1, 3 and 4: the exact sd_notify datagrams a daemon sends
 * (to a real AF_UNIX SOCK_DGRAM socket, bound by python3: Bun has no unix
 * datagrams), the watchdog, what spawned programs inherit, `start` under a
 * Type=notify unit, and the journald line format.
 */
import { beforeAll, describe, expect, test } from "bun:test";
import { closeSync, existsSync, fstatSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { alive, BUN, cleanupProcesses, notifyReceiver, ROOT, tempDir, track, waitFor } from "./helpers.ts";

cleanupProcesses();
const dir = tempDir("bd-notify-");
const APP = join(ROOT, "test/fixtures/notify-app.ts");
const python = Bun.which("python3");
const why = python ? "" : " (skipped: python3, the datagram receiver, is missing)";

let n = 0;
const receiver = (kind: "path" | "abstract" = "abstract") => notifyReceiver(dir, kind);

function daemon(args: string[], env: Record<string, string>, stderr: "pipe" | number = "pipe") {
  const p = Bun.spawn([BUN, "run", APP, ...args], {
    env: { ...process.env, NOTIFY_SOCKET: "", WATCHDOG_USEC: "", WATCHDOG_PID: "", ...env } as Record<string, string>,
    stdin: "ignore",
    stdout: "pipe",
    stderr,
  });
  track(p.pid);
  return p;
}
const pidFile = () => join(dir, `d${++n}.pid`);
const without = (msgs: string[], prefix: string) => msgs.filter((m) => !m.startsWith(prefix));

describe("sd_notify datagrams", () => {
  for (const kind of ["path", "abstract"] as const) {
    test.skipIf(!python)(`${kind} socket: STATUS names the running init hook, READY+MAINPID, one RELOADING+MONOTONIC_USEC datagram, READY, STOPPING${why}`, async () => {
      const rx = await receiver(kind);
      const gate = join(dir, `gate${n}`);
      const d = daemon(["run", "--pid-file", pidFile()], { NOTIFY_SOCKET: rx.address, NA_GATE: gate });
      // While "listen" waits, systemctl status would show it.
      expect(await waitFor(() => rx.msgs().includes('STATUS=starting: init hook "listen"'))).toBe(true);
      expect(rx.msgs()).toEqual(['STATUS=starting: init hook "listen"']);
      writeFileSync(gate, "");
      expect(await waitFor(() => rx.msgs().some((m) => m.startsWith("READY=1")))).toBe(true);
      d.kill("SIGHUP");
      expect(await waitFor(() => rx.msgs().filter((m) => m.startsWith("READY=1")).length === 2)).toBe(true);
      d.kill("SIGTERM");
      expect(await d.exited).toBe(0);
      expect(await waitFor(() => rx.msgs().some((m) => m.startsWith('STATUS=stopping: shutdown hook'))));
      const msgs = rx.msgs();
      const reloading = msgs.find((m) => m.startsWith("RELOADING=1"))!;
      // One datagram, with the clock systemd compares against: CLOCK_MONOTONIC in µs (the receiver's clock, read around it).
      const m = /^RELOADING=1\|MONOTONIC_USEC=(\d+)\|STATUS=reloading$/.exec(reloading);
      expect(m).not.toBeNull();
      const at = rx.timed().find((x) => x.m === reloading)!.t;
      // Not a timing threshold: a value in another clock (realtime, or ms) is off by years or a factor of 1000.
      expect(Math.abs(Number(m![1]) / 1e6 - at)).toBeLessThan(60);
      expect(msgs).toEqual([
        'STATUS=starting: init hook "listen"',
        'STATUS=starting: init hook "opening"',
        'STATUS=starting: init hook "children"',
        `READY=1|MAINPID=${d.pid}|STATUS=running`,
        reloading,
        'STATUS=reloading: reload hook "refresh"',
        "READY=1|STATUS=running",
        "STOPPING=1|STATUS=stopping (SIGTERM)",
        'STATUS=stopping: shutdown hook "close"',
      ]);
    }, 30_000);
  }

  test.skipIf(!python)(`the reload command sends the same datagrams; STATUS names a shutdown hook while it runs${why}`, async () => {
    const rx = await receiver();
    const gate = join(dir, `sgate${n}`);
    const pf = pidFile();
    const d = daemon(["run", "--pid-file", pf], { NOTIFY_SOCKET: rx.address, NA_SHUTDOWN_GATE: gate });
    expect(await waitFor(() => rx.msgs().some((m) => m.startsWith("READY=1")))).toBe(true);
    const r = Bun.spawnSync([BUN, "run", APP, "reload", "--pid-file", pf], { env: { ...process.env, NOTIFY_SOCKET: "" } });
    expect(r.exitCode).toBe(0);
    expect(await waitFor(() => rx.msgs().includes("READY=1|STATUS=running"))).toBe(true);
    expect(rx.msgs().filter((m) => /^RELOADING=1\|MONOTONIC_USEC=\d+\|STATUS=reloading$/.test(m))).toHaveLength(1);
    d.kill("SIGTERM");
    expect(await waitFor(() => rx.msgs().at(-1) === 'STATUS=stopping: shutdown hook "close"')).toBe(true);
    expect(alive(d.pid)).toBe(true);
    writeFileSync(gate, "");
    expect(await d.exited).toBe(0);
    expect(rx.msgs().at(-1)).toBe('STATUS=stopping: shutdown hook "close"');
  }, 30_000);

  test.skipIf(!python)(`a failed start: STATUS= with the hook and its message, ERRNO= when known, as the last datagram${why}`, async () => {
    const rx = await receiver();
    const d = daemon(["run", "--pid-file", pidFile()], { NOTIFY_SOCKET: rx.address, NA_INIT: "enoent" });
    expect(await d.exited).toBe(1);
    const msgs = rx.msgs();
    expect(msgs.some((m) => m.startsWith("READY=1"))).toBe(false);
    expect(msgs).toContain("STOPPING=1|STATUS=stopping (init failed)");
    expect(msgs.at(-1)).toMatch(/^ERRNO=2\|STATUS=init hook "opening" failed: ENOENT: no such file or directory.*\/nonexistent-bun-daemon\/config\.toml/);

    const rx2 = await receiver();
    const d2 = daemon(["run", "--pid-file", pidFile()], { NOTIFY_SOCKET: rx2.address, NA_INIT: "plain" });
    expect(await d2.exited).toBe(1);
    expect(rx2.msgs().at(-1)).toBe('STATUS=init hook "opening" failed: plain failure');
  }, 30_000);

  test.skipIf(!python)(`ctx.extendTimeout(ms) sends EXTEND_TIMEOUT_USEC=ms*1000 and says it was sent${why}`, async () => {
    const rx = await receiver();
    const d = daemon(["run", "--pid-file", pidFile()], { NOTIFY_SOCKET: rx.address, NA_EXTEND: "5000" });
    expect(await waitFor(() => rx.msgs().some((m) => m.startsWith("READY=1")))).toBe(true);
    d.kill("SIGTERM");
    expect(await d.exited).toBe(0);
    expect(rx.msgs().slice(0, 3)).toEqual(['STATUS=starting: init hook "listen"', "EXTEND_TIMEOUT_USEC=5000000", "X_EXTENDED=true"]);
  }, 30_000);

  test("no NOTIFY_SOCKET: extendTimeout and notify() return false, and the daemon runs as before", async () => {
    const ready = join(dir, `ready${++n}`);
    const d = daemon(["run", "--pid-file", pidFile()], { NA_EXTEND: "1000", NA_READY_FILE: ready });
    const err = new Response(d.stderr as ReadableStream).text();
    expect(await waitFor(() => existsSync(ready))).toBe(true);
    d.kill("SIGTERM");
    expect(await d.exited).toBe(0);
    expect(await err).toContain("extendTimeout returned false; notify returned false");
  }, 30_000);
});

describe("notify()", () => {
  test.skipIf(!python)(`sends the fields as one datagram and says so; false without a socket; bad fields throw USAGE${why}`, async () => {
    const rx = await receiver("path");
    const code = `
      import { notify } from ${JSON.stringify(join(ROOT, "src/index.ts"))};
      const results = [notify({ STATUS: "replaying: 40%", X_COUNT: 3 })];
      for (const bad of [{ "bad key": "x" }, { STATUS: "two\\nlines" }, {}, { STATUS: null }]) {
        try { notify(bad); results.push("no throw"); } catch (e) { results.push(e.code + ": " + e.message); }
      }
      delete process.env.NOTIFY_SOCKET;
      results.push(notify({ STATUS: "nobody listens" }));
      process.env.NOTIFY_SOCKET = ${JSON.stringify(join(dir, "nobody.sock"))};
      results.push(notify({ STATUS: "nobody bound" }));
      console.log(JSON.stringify(results));
    `;
    const r = Bun.spawnSync([BUN, "-e", code], { env: { ...process.env, NOTIFY_SOCKET: rx.address } });
    expect(r.stderr.toString()).toBe("");
    expect(JSON.parse(r.stdout.toString())).toEqual([
      true,
      'USAGE: notify(): field name "bad key" is not upper-case letters, digits and _',
      "USAGE: notify(): field STATUS contains a newline (each field is one line)",
      "USAGE: notify() needs at least one field",
      "USAGE: notify(): field STATUS must be a string or a number, not null",
      false,
      false,
    ]);
    expect(rx.msgs()).toEqual(["STATUS=replaying: 40%|X_COUNT=3"]);
  }, 30_000);
});

describe("watchdog", () => {
  const pings = (msgs: string[]) => msgs.filter((m) => m === "WATCHDOG=1").length;

  test.skipIf(!python)(`WATCHDOG=1 every WATCHDOG_USEC/2 (a count over a window the receiver measured)${why}`, async () => {
    const rx = await receiver();
    const d = daemon(["run", "--pid-file", pidFile()], { NOTIFY_SOCKET: rx.address, WATCHDOG_USEC: "400000" });
    expect(await waitFor(() => rx.msgs().some((m) => m.startsWith("READY=1")))).toBe(true);
    await Bun.sleep(2500);
    d.kill("SIGTERM");
    expect(await d.exited).toBe(0);
    const t = rx.timed();
    const first = t.findIndex((x) => x.m === "WATCHDOG=1");
    const last = t.findLastIndex((x) => x.m === "WATCHDOG=1");
    const count = t.slice(first, last + 1).filter((x) => x.m === "WATCHDOG=1").length;
    // Period 200 ms: a ping per WATCHDOG_USEC would give half the count, one per WATCHDOG_USEC/4 twice.
    const expected = (t[last]!.t - t[first]!.t) / 0.2 + 1;
    expect(count).toBeGreaterThanOrEqual(6);
    expect(count).toBeGreaterThan(expected * 0.7);
    expect(count).toBeLessThan(expected * 1.4);
  }, 30_000);

  test.skipIf(!python)(`a blocked event loop sends no ping until it runs again${why}`, async () => {
    const rx = await receiver();
    const d = daemon(["run", "--pid-file", pidFile()], { NOTIFY_SOCKET: rx.address, WATCHDOG_USEC: "100000", NA_BLOCK: "1" });
    expect(await waitFor(() => pings(rx.msgs()) >= 3)).toBe(true);
    d.kill("SIGUSR2");
    expect(await waitFor(() => rx.msgs().includes("X_BLOCK=end"))).toBe(true);
    expect(await waitFor(() => pings(rx.msgs().slice(rx.msgs().indexOf("X_BLOCK=end"))) >= 2)).toBe(true);
    d.kill("SIGTERM");
    expect(await d.exited).toBe(0);
    const msgs = rx.msgs();
    const begin = msgs.indexOf("X_BLOCK=begin");
    const end = msgs.indexOf("X_BLOCK=end");
    // 1.5 s blocked at a 50 ms period: ~30 pings a thread would have sent; the event loop sends none.
    expect(begin).toBeGreaterThan(0);
    expect(msgs.slice(begin + 1, end)).toEqual([]);
    const t = rx.timed();
    expect(t[end]!.t - t[begin]!.t).toBeGreaterThan(1);
  }, 30_000);

  for (const style of ["sync", "async", "throw"] as const) {
    test.skipIf(!python)(`a ${style} watchdog check: a ping follows every passing call and none a failing one${why}`, async () => {
      const rx = await receiver();
      const d = daemon(["run", "--pid-file", pidFile()], { NOTIFY_SOCKET: rx.address, WATCHDOG_USEC: "100000", NA_CHECK: style });
      const d2 = new Response(d.stderr as ReadableStream).text();
      expect(await waitFor(() => rx.msgs().filter((m) => m.startsWith("X_CHECK=")).length >= 8)).toBe(true);
      d.kill("SIGTERM");
      expect(await d.exited).toBe(0);
      const msgs = rx.msgs();
      const after = msgs.slice(msgs.findIndex((m) => m.startsWith("READY=1")) + 1);
      // Between one check and the next (or the stop): exactly one ping after "ok", none after "fail".
      const checks = after.map((m, i) => [m, i] as const).filter(([m]) => m.startsWith("X_CHECK="));
      expect(checks.length).toBeGreaterThanOrEqual(8);
      for (let k = 0; k < checks.length - 1; k++) {
        const [m, i] = checks[k]!;
        const between = after.slice(i + 1, checks[k + 1]![1]);
        expect([m, between]).toEqual([m, m.endsWith(" ok") ? ["WATCHDOG=1"] : []]);
      }
      const log = await d2;
      // Said when it starts failing and when it passes again, not on every tick.
      const fails = log.split("\n").filter((l) => l.includes("watchdog check")).length;
      expect(fails).toBeGreaterThanOrEqual(2);
      expect(log).toContain(style === "throw" ? "watchdog check threw: unhealthy" : "watchdog check returned false");
    }, 30_000);
  }

  test.skipIf(!python)(`WATCHDOG_PID naming another process disables the pings; naming this one enables them${why}`, async () => {
    const rx = await receiver();
    const d = daemon(["run", "--pid-file", pidFile()], { NOTIFY_SOCKET: rx.address, WATCHDOG_USEC: "100000", WATCHDOG_PID: "1" });
    expect(await waitFor(() => rx.msgs().some((m) => m.startsWith("READY=1")))).toBe(true);
    await Bun.sleep(1000); // 20 periods
    d.kill("SIGTERM");
    expect(await d.exited).toBe(0);
    expect(pings(rx.msgs())).toBe(0);
    expect(rx.msgs().at(-2)).toBe("STOPPING=1|STATUS=stopping (SIGTERM)");

    // $$ of a shell that execs bun is the daemon's own pid.
    const rx2 = await receiver();
    const own = Bun.spawn(["sh", "-c", `WATCHDOG_PID=$$ exec "$0" run "$1" run --pid-file "$2"`, BUN, APP, pidFile()], {
      env: { ...process.env, NOTIFY_SOCKET: rx2.address, WATCHDOG_USEC: "100000" } as Record<string, string>,
      stdout: "ignore",
      stderr: "ignore",
    });
    track(own.pid);
    expect(await waitFor(() => pings(rx2.msgs()) >= 3)).toBe(true);
    own.kill("SIGTERM");
    expect(await own.exited).toBe(0);
  }, 30_000);
});

describe("what programs the daemon spawns inherit", () => {
  test.skipIf(!python)(`NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID reach no child: Bun.spawn, Bun.spawnSync, node:child_process, Bun.$${why}`, async () => {
    const rx = await receiver();
    const out = join(dir, `children${n}.json`);
    const d = daemon(["run", "--pid-file", pidFile()], {
      NOTIFY_SOCKET: rx.address, WATCHDOG_USEC: "10000000", WATCHDOG_PID: "", NA_CHILDREN: out,
    });
    expect(await waitFor(() => rx.msgs().some((m) => m.startsWith("READY=1")))).toBe(true);
    d.kill("SIGTERM");
    expect(await d.exited).toBe(0);
    expect(JSON.parse(readFileSync(out, "utf8"))).toEqual({
      processEnv: false,
      bunSpawnSync: false,
      bunSpawnSyncObject: false,
      bunSpawn: false,
      childProcessExecSync: false,
      childProcessSpawnSync: false,
      bunShell: false,
      explicitEnv: true,
    });
    // The daemon itself still notifies after taking the variables away.
    expect(rx.msgs().at(-2)).toBe("STOPPING=1|STATUS=stopping (SIGTERM)");
  }, 30_000);
});

describe("start under a Type=notify unit", () => {
  for (const args of [["start"], ["run", "--daemon"]]) {
    test.skipIf(!python)(`\`${args.join(" ")}\` with NOTIFY_SOCKET set runs in the foreground as the started process, and says so once${why}`, async () => {
      const rx = await receiver();
      const pf = pidFile();
      const d = daemon([...args, "--pid-file", pf, ...(args[0] === "start" ? ["--log-file", join(dir, "unused.log")] : [])], { NOTIFY_SOCKET: rx.address });
      const err = new Response(d.stderr as ReadableStream).text();
      expect(await waitFor(() => rx.msgs().some((m) => m.startsWith("READY=1")))).toBe(true);
      // Whoever the PID file names is stopped after the test, also when (broken) it detached.
      expect(await waitFor(() => existsSync(pf) && readFileSync(pf, "utf8").trim() !== "")).toBe(true);
      track(Number(readFileSync(pf, "utf8").trim()));
      // The process systemd started is the one that is ready: no fork, no launcher exiting.
      expect(rx.msgs()).toContain(`READY=1|MAINPID=${d.pid}|STATUS=running`);
      expect(alive(d.pid)).toBe(true);
      expect(readFileSync(pf, "utf8").trim()).toBe(String(d.pid));
      d.kill("SIGTERM");
      expect(await d.exited).toBe(0);
      const log = await err;
      const said = log.split("\n").filter((l) => l.includes("NOTIFY_SOCKET is set"));
      const logNote = args[0] === "start" ? `; the log file ${join(dir, "unused.log")} is not used, logs go to stderr (the journal)` : "";
      expect(said).toEqual([`[info] [notify-app] NOTIFY_SOCKET is set: "${args.join(" ")}" runs in the foreground, as the process systemd started and watches (Type=notify), not as a forked daemon${logNote}`]);
      expect(existsSync(join(dir, "unused.log"))).toBe(false);
      expect(log).toContain(`ready (pid ${d.pid}, foreground)`);
    }, 30_000);
  }

  test("without NOTIFY_SOCKET, start still detaches (an empty NOTIFY_SOCKET counts as unset)", async () => {
    const pf = pidFile();
    const d = daemon(["start", "--pid-file", pf], { NOTIFY_SOCKET: "" });
    expect(await d.exited).toBe(0);
    const pid = Number(readFileSync(pf, "utf8").trim());
    track(pid);
    expect(pid).not.toBe(d.pid);
    expect(alive(pid)).toBe(true);
    process.kill(pid, "SIGTERM");
    expect(await waitFor(() => !alive(pid))).toBe(true);
  }, 30_000);
});

describe("journald", () => {
  const runWithStderrFile = async (stream: (st: { dev: bigint; ino: bigint }) => string) => {
    const file = join(dir, `stderr${++n}.log`);
    const fd = openSync(file, "w");
    const st = fstatSync(fd, { bigint: true });
    const d = daemon(["run", "--pid-file", pidFile()], { JOURNAL_STREAM: stream(st), NA_LOG: "1", CONSOLA_LEVEL: "4" }, fd);
    closeSync(fd);
    expect(await waitFor(() => readFileSync(file, "utf8").includes("ready (pid"))).toBe(true);
    d.kill("SIGTERM");
    expect(await d.exited).toBe(0);
    return { lines: readFileSync(file, "utf8").split("\n").filter(Boolean), pid: d.pid };
  };

  test("JOURNAL_STREAM naming fd 2: <N> syslog priorities from consola's levels, no timestamp, no colour, one prefix per event (a multi-line message stays one line)", async () => {
    const { lines, pid } = await runWithStderrFile((st) => `${st.dev}:${st.ino}`);
    for (const l of lines) expect(l).toMatch(/^<[0-7]>[^\x1b]*$/);
    expect(lines).toContain("<3>an error line");
    expect(lines).toContain("<4>a warning line");
    expect(lines).toContain("<7>a debug line");
    expect(lines).toContain("<6>two\\nlines");
    expect(lines).toContain(`<6>ready (pid ${pid}, foreground)`);
  }, 30_000);

  test("JOURNAL_STREAM naming another file (a child that inherited the variable): the usual format", async () => {
    const { lines } = await runWithStderrFile((st) => `${st.dev}:${st.ino + 1n}`);
    expect(lines).toContain("[error] [notify-app] an error line");
    expect(lines.some((l) => /^<\d>/.test(l))).toBe(false);
  }, 30_000);
});

describe("compiled binary", () => {
  const BIN = join(dir, "notify-bin");
  beforeAll(() => {
    const b = Bun.spawnSync([BUN, "build", "--compile", "--splitting", "--bytecode", "--format=esm", APP, "--outfile", BIN], { stderr: "pipe" });
    if (b.exitCode !== 0) throw new Error(`bun build --compile failed: ${b.stderr.toString()}`);
  }, 120_000);

  test.skipIf(!python)(`start under NOTIFY_SOCKET: the same datagrams, watchdog pings, and clean children${why}`, async () => {
    const rx = await receiver();
    const out = join(dir, `bin-children${n}.json`);
    const pf = pidFile();
    const d = Bun.spawn([BIN, "start", "--pid-file", pf], {
      env: { ...process.env, NOTIFY_SOCKET: rx.address, WATCHDOG_USEC: "100000", NA_CHILDREN: out } as Record<string, string>,
      stdout: "ignore",
      stderr: "ignore",
    });
    track(d.pid);
    expect(await waitFor(() => rx.msgs().filter((m) => m === "WATCHDOG=1").length >= 2)).toBe(true);
    d.kill("SIGHUP");
    expect(await waitFor(() => rx.msgs().includes("READY=1|STATUS=running"))).toBe(true);
    d.kill("SIGTERM");
    expect(await d.exited).toBe(0);
    const msgs = without(rx.msgs(), "WATCHDOG=1");
    expect(msgs.map((m) => m.replace(/MONOTONIC_USEC=\d+/, "MONOTONIC_USEC=N"))).toEqual([
      'STATUS=starting: init hook "listen"',
      'STATUS=starting: init hook "opening"',
      'STATUS=starting: init hook "children"',
      `READY=1|MAINPID=${d.pid}|STATUS=running`,
      "RELOADING=1|MONOTONIC_USEC=N|STATUS=reloading",
      'STATUS=reloading: reload hook "refresh"',
      "READY=1|STATUS=running",
      "STOPPING=1|STATUS=stopping (SIGTERM)",
      'STATUS=stopping: shutdown hook "close"',
    ]);
    expect(Object.values(JSON.parse(readFileSync(out, "utf8")))).toEqual([false, false, false, false, false, false, false, true]);
  }, 60_000);
});
