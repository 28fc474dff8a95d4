/**
 * PID and log files in world-writable directories (issue 9): another user
 * (nobody, through setpriv) plants files in a 1777 directory; a root
 * start, stop, status or reload must refuse them with one line and the LSB
 * exit status, never write into them, never follow a link, never signal
 * the process they name, and leave nothing running.
 */
import { describe, expect, test } from "bun:test";
import { chmodSync, existsSync, linkSync, lstatSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { alive, BUN, cleanupProcesses, FIXTURE, pidsMentioning, run, startedPid, tempDir, track, waitFor } from "./helpers.ts";

cleanupProcesses();
const isRoot = process.getuid?.() === 0;
const dir = tempDir("bd-filesafety-");
const shared = join(dir, "shared");
if (isRoot) {
  chmodSync(dir, 0o755);
  mkdirSync(shared, { recursive: true });
  chmodSync(shared, 0o1777); // like /tmp
}
let n = 0;
const name = (ext: string) => join(shared, `f${++n}.${ext}`);
const app = (...args: string[]) => [BUN, "run", FIXTURE, ...args];
const asNobody = (sh: string) => Bun.spawnSync(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "sh", "-c", sh], { stderr: "inherit" });
const oneLine = (r: { stdout: string; stderr: string }) => expect((r.stdout + r.stderr).split("\n").filter(Boolean).length).toBe(1);

/** A root process the attacker would like signalled. */
function rootVictim(): number {
  const p = Bun.spawn(["sleep", "600"], { stdin: "ignore", stdout: "ignore", stderr: "ignore" });
  return track(p.pid)!;
}

/** status, stop, reload, then start, each as root, on `pidFile`. */
async function allCommands(pidFile: string, extra: string[] = []) {
  const status = await run(app("status", "--pid-file", pidFile));
  const stop = await run(app("stop", "--pid-file", pidFile, "--timeout", "2"));
  const reload = await run(app("reload", "--pid-file", pidFile, "--timeout", "2"));
  const start = await run(app("start", "--pid-file", pidFile, ...extra));
  track(startedPid(start.stdout));
  return { status, stop, reload, start };
}

describe.skipIf(!isRoot)(`files in a world-writable directory${isRoot ? "" : " (skipped: needs root to act as another user)"}`, () => {
  test("a PID file another user planted, naming a root process: status 4, stop 1, reload 1, start 1, one line each; never written, never signalled", async () => {
    const pidFile = name("pid");
    const victim = rootVictim();
    expect(asNobody(`printf '%s\\n' ${victim} > ${pidFile} && chmod 644 ${pidFile}`).exitCode).toBe(0);
    const r = await allCommands(pidFile);
    const owned = new RegExp(`^app: PID file ${pidFile} is owned by nobody \\(uid 65534\\), mode 0644: not by root, so another user may have planted or rewritten it \\(it names pid ${victim}\\); refusing to use it\\. Remove it .*\\n$`);
    expect(r.status).toMatchObject({ code: 4, stdout: "" });
    expect(r.status.stderr).toMatch(owned);
    expect(r.stop).toMatchObject({ code: 1 });
    expect(r.stop.stderr).toMatch(owned);
    expect(r.reload).toMatchObject({ code: 1 });
    expect(r.reload.stderr).toMatch(owned);
    expect(r.start).toMatchObject({ code: 1, stdout: "" });
    expect(r.start.stderr).toMatch(owned);
    for (const x of Object.values(r)) oneLine(x);
    expect(readFileSync(pidFile, "utf8")).toBe(`${victim}\n`);
    expect(statSync(pidFile).uid).toBe(65534);
    expect(alive(victim)).toBe(true);
    expect(pidsMentioning(pidFile)).toEqual([]);
  }, 60_000);

  test("a root-owned PID file anyone may write (0666): refused by every command, one line each", async () => {
    const pidFile = name("pid");
    const victim = rootVictim();
    writeFileSync(pidFile, `${victim}\n`);
    chmodSync(pidFile, 0o666);
    const r = await allCommands(pidFile);
    const writable = new RegExp(`^app: PID file ${pidFile} is owned by root \\(uid 0\\), mode 0666: writable by every user, so another user may have planted or rewritten it \\(it names pid ${victim}\\); refusing to use it\\. Remove it \\(or chmod go-w\\) if it is yours, or choose another path\\n$`);
    expect([r.status.code, r.stop.code, r.reload.code, r.start.code]).toEqual([4, 1, 1, 1]);
    for (const x of Object.values(r)) {
      expect(x.stderr).toMatch(writable);
      oneLine(x);
    }
    expect(readFileSync(pidFile, "utf8")).toBe(`${victim}\n`);
    expect(alive(victim)).toBe(true);
    expect(pidsMentioning(pidFile)).toEqual([]);
  }, 60_000);

  test("a --log-file that another user made a symlink (to a root file): start refuses it, the target is untouched, nothing runs", async () => {
    const target = join(dir, `root-only-${++n}`);
    writeFileSync(target, "root's\n");
    const log = name("log");
    expect(asNobody(`ln -s ${target} ${log}`).exitCode).toBe(0);
    const pidFile = name("pid");
    const r = await run(app("start", "--pid-file", pidFile, "--log-file", log));
    track(startedPid(r.stdout));
    expect(r).toMatchObject({ code: 1, stdout: "" });
    expect(r.stderr).toBe(`app: log file ${log} is a symlink to ${target}; log files are never followed (a planted link would redirect the writes): give --log-file the real path\n`);
    expect(readFileSync(target, "utf8")).toBe("root's\n");
    expect(lstatSync(log).isSymbolicLink()).toBe(true);
    expect(existsSync(pidFile)).toBe(false);
    expect(pidsMentioning(pidFile)).toEqual([]);
  }, 60_000);

  test("a --log-file another user owns: start refuses to write into it, one line; nothing runs", async () => {
    const log = name("log");
    expect(asNobody(`: > ${log} && chmod 644 ${log}`).exitCode).toBe(0);
    const pidFile = name("pid");
    const r = await run(app("start", "--pid-file", pidFile, "--log-file", log), { env: { APP_OUTPUT: "1" } });
    track(startedPid(r.stdout));
    expect(r).toMatchObject({ code: 1, stdout: "" });
    expect(r.stderr).toMatch(new RegExp(`^app: log file ${log} is owned by nobody \\(uid 65534\\), mode 0644: not by root, so another user may have planted or rewritten it; refusing to use it\\. Remove it \\(or chown it\\) if it is yours, or choose another path\\n$`));
    expect(readFileSync(log, "utf8")).toBe("");
    expect(existsSync(pidFile)).toBe(false);
    expect(pidsMentioning(pidFile)).toEqual([]);
  }, 60_000);

  test("a --log-file that is a second hard link to a root file: start refuses it, the file is untouched", async () => {
    const target = join(shared, `root-file-${++n}`);
    writeFileSync(target, "root's\n");
    chmodSync(target, 0o640);
    const log = name("log");
    linkSync(target, log);
    const pidFile = name("pid");
    const r = await run(app("start", "--pid-file", pidFile, "--log-file", log));
    track(startedPid(r.stdout));
    expect(r).toMatchObject({ code: 1, stdout: "" });
    expect(r.stderr).toBe(`app: log file ${log} has 2 hard links, so it may be another file under a planted name; refusing to use it. Remove it, or choose another path\n`);
    expect(readFileSync(target, "utf8")).toBe("root's\n");
    expect(pidsMentioning(pidFile)).toEqual([]);
  }, 60_000);

  test("after a rotation another user plants a symlink at the log path: SIGUSR1 refuses it, says so in the old file, writes nothing through the link", async () => {
    const target = join(dir, `root-only-${++n}`);
    writeFileSync(target, "root's\n");
    const log = name("log");
    const pidFile = name("pid");
    const r = await run(app("start", "--pid-file", pidFile, "--log-file", log));
    const pid = track(startedPid(r.stdout))!;
    expect(r.code).toBe(0);
    renameSync(log, `${log}.1`); // logrotate without `create`: the daemon creates the new file
    expect(asNobody(`ln -s ${target} ${log}`).exitCode).toBe(0);
    process.kill(pid, "SIGUSR1");
    const refused = `cannot reopen the log file; still writing to the old one: log file ${log} is a symlink to ${target}; log files are never followed`;
    expect(await waitFor(() => readFileSync(`${log}.1`, "utf8").includes(refused))).toBe(true);
    expect(readFileSync(target, "utf8")).toBe("root's\n");
    expect(alive(pid)).toBe(true);
    expect((await run(app("stop", "--pid-file", pidFile))).code).toBe(0);
    expect(await waitFor(() => !alive(pid))).toBe(true);
  }, 60_000);

  test("root's own files in the same directory still work: start, status, stop; the log file is root's and 0640", async () => {
    const log = name("log");
    const pidFile = name("pid");
    const r = await run(app("start", "--pid-file", pidFile, "--log-file", log));
    const pid = track(startedPid(r.stdout));
    expect(r.code).toBe(0);
    expect((await run(app("status", "--pid-file", pidFile))).code).toBe(0);
    expect(statSync(log)).toMatchObject({ uid: 0 });
    expect(statSync(log).mode & 0o777).toBe(0o640);
    expect((await run(app("stop", "--pid-file", pidFile))).code).toBe(0);
    expect(await waitFor(() => !alive(pid!))).toBe(true);
  }, 60_000);
});
