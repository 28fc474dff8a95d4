/**
 * What a detached daemon looks like from outside, started by a launcher that
 * holds extra fds, ignores HUP/INT/QUIT/USR1 and blocks USR2/WINCH: under
 * `bun run` and as a `bun build --compile` binary.
 */
import { beforeAll, describe, expect, test } from "bun:test";
import { appendFileSync, readdirSync, readFileSync, readlinkSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  BUN, bareBunSignals, cleanupProcesses, FIXTURE, fdTargets, isFlocked, pidsMentioning, ROOT, run, startedPid,
  statFields, statusField, tempDir, track, waitFor, alive,
} from "./helpers.ts";

cleanupProcesses();
const dir = tempDir();
const BIN = join(dir, "app-bin");
let bare: { SigIgn: string; SigBlk: string };

beforeAll(async () => {
  bare = await bareBunSignals();
  const r = await run([BUN, "build", "--compile", FIXTURE, "--outfile", BIN]);
  if (r.code !== 0) throw new Error(`bun build --compile failed: ${r.stderr}`);
}, 120_000);

/** The launcher runs under a hostile shell: extra fds 3, 7, 200; ignored and blocked signals. */
function hostile(cmd: string[], mark: string): string[] {
  return [
    "bash", "-c",
    `exec 3</etc/hostname 7>>"$MARK" 200</dev/null; exec env --ignore-signal=HUP --ignore-signal=INT --ignore-signal=QUIT --ignore-signal=USR1 --block-signal=USR2 --block-signal=WINCH "$@"`,
    "launcher", ...cmd,
  ].map((a) => a.replace("$MARK", mark));
}

const variants: Array<[string, () => string[]]> = [
  ["bun run", () => [BUN, "run", FIXTURE]],
  ["compiled binary", () => [BIN]],
];

describe.each(variants)("detached daemon (%s)", (_label, prog) => {
  test("detaches the way daemon(7) describes", async () => {
    const pidFile = join(dir, `detach-${_label.replace(/\W/g, "")}.pid`);
    const mark = join(dir, `mark-${_label.replace(/\W/g, "")}`);
    const spawned = join(dir, `spawned-${_label.replace(/\W/g, "")}`);
    writeFileSync(mark, "");
    const launcher = Bun.spawn(hostile([...prog(), "start", "--pid-file", pidFile, "--tag", "x"], mark), {
      env: { ...process.env, APP_SPAWN: spawned, APP_OUTPUT: "1", APP_LEAKFD: "1" },
      stdout: "pipe",
      stderr: "pipe",
    });
    const launcherPid = launcher.pid;
    const [stdout, stderr, code] = await Promise.all([
      new Response(launcher.stdout).text(), new Response(launcher.stderr).text(), launcher.exited,
    ]);
    const pid = track(startedPid(stdout))!;
    expect({ code, stderr }).toMatchObject({ code: 0 });
    expect(pid).toBeGreaterThan(1);

    // The PID file names it, mode 0644, locked for its whole life.
    expect(readFileSync(pidFile, "utf8")).toBe(`${pid}\n`);
    expect(statSync(pidFile).mode & 0o777).toBe(0o644);
    expect(isFlocked(pidFile)).toBe(true);

    // Parent, session, terminal.
    const [, ppid, , session, ttyNr] = statFields(pid);
    const mySession = statFields("self")[3];
    expect(Number(ppid)).not.toBe(launcherPid);
    expect(Number(session)).not.toBe(pid); // not a session leader: can never regain a terminal
    expect(session).not.toBe(mySession); // not the launcher's session
    expect(ttyNr).toBe("0");

    // Standard fds on /dev/null, nothing inherited, no pipe left from startup.
    const fds = fdTargets(pid);
    expect(fds.get(0)).toBe("/dev/null");
    expect(fds.get(1)).toBe("/dev/null");
    expect(fds.get(2)).toBe("/dev/null");
    expect(fds.get(4)).toBe(pidFile);
    const targets = [...fds.values()];
    expect(targets).not.toContain("/etc/hostname");
    expect(targets).not.toContain(mark);
    expect(fds.has(200)).toBe(false);
    expect(targets.filter((t) => t.startsWith("pipe:"))).toEqual([]);
    expect(readlinkSync(`/proc/${pid}/cwd`)).toBe("/");
    expect(statusField(pid, "Umask")).toBe("0022");

    // Only the runtime's own signal state: none of the launcher's ignores or blocks.
    expect(statusField(pid, "SigIgn")).toBe(bare.SigIgn);
    expect(statusField(pid, "SigBlk")).toBe(bare.SigBlk);
    // Runtime threads started before any JS ran carry the exec-time mask too.
    for (const task of readdirSync(`/proc/${pid}/task`)) {
      const blk = readFileSync(`/proc/${pid}/task/${task}/status`, "utf8").match(/SigBlk:\s*(\S+)/)![1]!;
      const comm = readFileSync(`/proc/${pid}/task/${task}/comm`, "utf8").trim();
      const blocksAlmostAll = BigInt(`0x${blk}`).toString(2).replace(/0/g, "").length > 32; // mimalloc's scavenger
      if (!blocksAlmostAll) expect({ comm, blk }).toEqual({ comm, blk: bare.SigBlk });
    }

    // The stage marker is nowhere in the environment, nor in what the daemon spawns.
    expect(readFileSync(`/proc/${pid}/environ`, "utf8")).not.toContain("bun-daemon:");
    const child = readFileSync(spawned, "utf8");
    expect(child).toContain("PATH=");
    expect(child).not.toContain("bun-daemon:");

    // Startup output reached the launcher; post-ready output did not.
    expect(stderr).toContain("hello on stdout before ready");
    expect(stderr).toContain("hello on stderr before ready");
    expect(stderr).toContain("stream stdout before ready");
    expect(stderr + stdout).not.toContain("after ready on stdout");

    // No intermediate or launcher left: only the daemon runs this PID file's command.
    expect(pidsMentioning(pidFile)).toEqual([pid]);
    expect(alive(launcherPid)).toBe(false);

    // The comm name is the daemon's name.
    expect(readFileSync(`/proc/${pid}/comm`, "utf8").trim()).toBe("app");

    const stop = await run([...prog(), "stop", "--pid-file", pidFile]);
    expect(stop.code).toBe(0);
    expect(alive(pid)).toBe(false);
    expect(() => statSync(pidFile)).toThrow();
  }, 60_000);

  test("a crash at import of the re-executed program reaches the launcher", async () => {
    const pidFile = join(dir, `import-${_label.replace(/\W/g, "")}.pid`);
    const r = await run([...prog(), "start", "--pid-file", pidFile], { env: { APP_IMPORT: "throw" } });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("boom at import");
    expect(r.stderr).toContain("exited before it was ready (exit status 1)");
    expect(() => statSync(pidFile)).toThrow();
    expect(pidsMentioning(pidFile)).toEqual([]);
  }, 60_000);
});

test("the launcher's ignored signals were really ignored (control for the SigIgn check)", async () => {
  // Same hostile wrapper, but running a plain program: it must show the ignores.
  const mark = join(dir, "mark-control");
  writeFileSync(mark, "");
  const r = await run(hostile(["grep", "-E", "SigIgn|SigBlk", "/proc/self/status"], mark));
  const fds = await run(hostile(["ls", "/proc/self/fd"], mark));
  const ign = BigInt(`0x${/SigIgn:\s*(\S+)/.exec(r.stdout)![1]}`);
  const blk = BigInt(`0x${/SigBlk:\s*(\S+)/.exec(r.stdout)![1]}`);
  for (const sig of [1, 2, 3, 10]) expect((ign >> BigInt(sig - 1)) & 1n).toBe(1n);
  for (const sig of [12, 28]) expect((blk >> BigInt(sig - 1)) & 1n).toBe(1n);
  expect(fds.stdout.split(/\s+/)).toContain("200");
  appendFileSync(mark, "");
});

test("--log-file gets startup and post-ready output", async () => {
  const pidFile = join(dir, "log.pid");
  const log = join(dir, "app.log");
  const r = await run([BUN, "run", FIXTURE, "start", "--pid-file", pidFile, "--log-file", log], { env: { APP_OUTPUT: "1" } });
  const pid = track(startedPid(r.stdout))!;
  expect(r.code).toBe(0);
  expect(await waitFor(() => readFileSync(log, "utf8").includes("after ready on stdout"))).toBe(true);
  const text = readFileSync(log, "utf8");
  expect(text).toContain("hello on stderr before ready"); // relayed by the launcher
  expect(text).toContain("[info] [app] ready (pid");
  expect(fdTargets(pid).get(1)).toBe(log);
  expect((await run([BUN, "run", FIXTURE, "stop", "--pid-file", pidFile])).code).toBe(0);
}, 60_000);

void ROOT;
