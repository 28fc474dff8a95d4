/**
 * The orphan reaper (src/reaper.ts), each case with the fixture as PID 1 of
 * a private pid namespace, checked from the namespace's own /proc.
 */
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { BUN, cleanupProcesses, ROOT, run } from "./helpers.ts";

cleanupProcesses();
const FIXTURE = join(ROOT, "test/fixtures/reaper-pid1.ts");
const REAPER = join(ROOT, "src/reaper.ts");

const isRoot = process.getuid?.() === 0;
const hasUnshare = Bun.which("unshare") !== null;
// env(1) of coreutils 8.31+: inherited ignored signals must not fake a result.
const hasDefaultSignal = Bun.spawnSync(["env", "--default-signal", "true"], { stdout: "ignore", stderr: "ignore" }).exitCode === 0;
const why = !isRoot
  ? "needs root for a private pid namespace"
  : !hasUnshare
    ? "needs unshare (util-linux)"
    : !hasDefaultSignal
      ? "needs env --default-signal (coreutils 8.31+)"
      : "";
const skipped = why ? ` (skipped: ${why})` : "";

// Bun's waiter thread in place of pidfds, as under gVisor or a seccomp
// filter; Bun reads the flag only with a GC level set.
const NO_PIDFD = { BUN_FEATURE_FLAG_FORCE_WAITER_THREAD: "1", BUN_GARBAGE_COLLECTOR_LEVEL: "0" };
const PIDFD = { BUN_FEATURE_FLAG_FORCE_WAITER_THREAD: undefined };

interface Report {
  mode: string;
  pid: number;
  started: boolean;
  reaped: number;
  warns: string[];
  uncaught: string[];
  zombies: number;
  live: number;
  error?: string;
  [k: string]: unknown;
}

/** Run the fixture as PID 1 of a fresh pid namespace; its last stdout line is its report. */
async function asPid1(mode: string, env: Record<string, string | undefined> = PIDFD): Promise<Report> {
  // --kill-child: stopping the tracked unshare by its pid ends the namespace's init, and with it the namespace.
  const r = await run(["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", "--", "env", "--default-signal", BUN, FIXTURE, mode], { env, timeoutMs: 120_000 });
  const last = r.stdout.trim().split("\n").pop() ?? "";
  try {
    return JSON.parse(last) as Report;
  } catch {
    throw new Error(`no report from the fixture (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
  }
}

describe("as PID 1 of a pid namespace", () => {
  test.skipIf(why !== "")(`reaps 300 orphans while the runtime's children report their exit codes${skipped}`, async () => {
    const r = await asPid1("reap");
    expect(r.error).toBeUndefined();
    expect(r.pid).toBe(1);
    expect(r.started).toBe(true);
    expect(r.warns).toEqual([]);
    expect(r.orphansMade).toBe(300);
    // Every Bun.spawn (51 codes, one still running at first), Worker,
    // node:child_process, Bun.$ and Bun.spawnSync child got its own code.
    expect(r.wrong).toEqual([]);
    expect(r.uncaught).toEqual([]);
    expect(r.reaped).toBe(300);
    expect(r.zombies).toBe(0);
    expect(r.live).toBe(0);
    expect(r.answer).toBe("up");
  }, 150_000);

  test.skipIf(why !== "")(`SIGCHLD alone (no periodic sweep) reaps them${skipped}`, async () => {
    const r = await asPid1("sigchld");
    expect(r.error).toBeUndefined();
    expect(r.started).toBe(true);
    expect(r.orphansMade).toBe(300);
    expect(r.wrong).toEqual([]);
    expect(r.uncaught).toEqual([]);
    expect(r.reaped).toBe(300);
    expect(r.zombies).toBe(0);
    expect(r.answer).toBe("up");
  }, 150_000);

  test.skipIf(why !== "")(`without the reaper the same orphans stay zombies${skipped}`, async () => {
    const r = await asPid1("off");
    expect(r.error).toBeUndefined();
    expect(r.started).toBe(false);
    expect(r.orphansMade).toBe(300);
    expect(r.wrong).toEqual([]);
    expect(r.zombies).toBe(300);
    expect(r.live).toBe(0);
  }, 150_000);

  test.skipIf(why !== "")(`children of the runtime, zombies with their pidfds during the sweeps, are left to the runtime${skipped}`, async () => {
    // The fixture blocks its JS thread: 11 of its Bun.spawn children and 20
    // orphans are zombies together while it calls sweep() three times.
    const r = await asPid1("held");
    expect(r.error).toBeUndefined();
    expect(r.uncaught).toEqual([]);
    expect(r.staged).toBe(true);
    // The first look only notes the orphans, the second (past the 50 ms settle) reaps them.
    expect(r.sweeps).toEqual([0, 20, 0]);
    expect(r.zombiesAfterSweeps).toBe(11);
    expect(r.oursStillZombies).toBe(true);
    expect(r.codes).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(r.codesOk).toBe(true);
    expect(r.zombies).toBe(0);
  }, 150_000);

  test.skipIf(why !== "")(`without pidfds it reaps nothing and warns once to run under tini${skipped}`, async () => {
    const r = await asPid1("nopidfd", NO_PIDFD);
    expect(r.error).toBeUndefined();
    expect(r.started).toBe(false);
    expect(r.warns).toHaveLength(1);
    expect(r.warns[0]).toContain("no pidfd");
    expect(r.warns[0]).toContain("tini (docker run --init)");
    expect(r.wrong).toEqual([]);
    expect(r.uncaught).toEqual([]);
    expect(r.orphansMade).toBe(300);
    expect(r.zombies).toBe(300);
  }, 150_000);
});

const sigchldCaught = `(BigInt("0x" + /SigCgt:\\s*(\\S+)/.exec(require("fs").readFileSync("/proc/self/status", "utf8"))[1]) >> 16n) & 1n`;

test("importing src/reaper.ts does nothing; stop() removes the SIGCHLD listener", async () => {
  const code = `
const look = () => ({ fds: require("fs").readdirSync("/proc/self/fd").length, chld: String(${sigchldCaught}), listeners: process.listenerCount("SIGCHLD") });
await import(${JSON.stringify(join(ROOT, "test/fixtures/empty.ts"))});
const before = look();
const { startReaper } = await import(${JSON.stringify(REAPER)});
const imported = look();
const r = startReaper({ log: { warn: (m) => console.log("warn " + m), debug() {} } });
const running = look();
r.stop();
r.stop();
const stopped = look();
console.log(JSON.stringify({ before, imported, running, stopped }));
`;
  const r = await run([BUN, "-e", code], { env: PIDFD });
  expect(r.stderr).toBe("");
  expect(r.code).toBe(0);
  const o = JSON.parse(r.stdout.trim().split("\n").pop()!);
  expect(o.imported).toEqual(o.before);
  expect(o.before.chld).toBe("0");
  expect(o.running).toMatchObject({ chld: "1", listeners: 1 });
  expect(o.stopped).toMatchObject({ chld: "0", listeners: 0 });
}, 30_000);

test("a running reaper does not keep the process alive", async () => {
  // Nothing else holds the loop: the script ends by itself once the probe child is reaped.
  const r = await run([BUN, "-e", `const { startReaper } = await import(${JSON.stringify(REAPER)}); const r = startReaper({ log: { warn: console.log, debug() {} } }); console.log(r ? "started" : "refused");`], { env: PIDFD, timeoutMs: 30_000 });
  expect(r).toMatchObject({ code: 0, stdout: "started\n", stderr: "" });
}, 40_000);
