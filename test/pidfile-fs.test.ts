/**
 * PID file locks on every file system a PID file may live on. /proc/locks
 * names a file by its superblock's device, which on btrfs differs from the
 * st_dev that stat(2) reports (each subvolume has an anonymous device), so
 * a lookup keyed on st_dev never matches there. Checked on the work dir's
 * file system, on tmpfs and on btrfs (a loop-mounted image, top level and a
 * subvolume). Mounting needs root; each mount is undone in afterAll.
 */
import { afterAll, afterEach, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { alive, BUN, cleanupProcesses, isFlocked, ROOT, run, startedPid, stopTracked, tempDir, track, waitFor } from "./helpers.ts";

// Before cleanupProcesses(), so that it runs first: a start still in the
// background must have reported its daemon's pid before tracked pids are stopped.
const pending: Promise<void>[] = [];
afterEach(async () => {
  await Promise.all(pending.splice(0));
});
cleanupProcesses();
const STRESS_APP = join(ROOT, "test/stress/fixtures/stress-app.ts");
const stress = (...args: string[]) => [BUN, "run", STRESS_APP, ...args];

interface Fs {
  name: string;
  dir: string;
  /** Why this file system cannot be tested here; undefined when it can. */
  skip?: string;
}

const isRoot = process.getuid?.() === 0;
const mounts: string[] = [];
const scratch: string[] = [];

function sh(cmd: string[]): { ok: boolean; out: string } {
  const r = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe" });
  return { ok: r.exitCode === 0, out: `${r.stdout.toString()}${r.stderr.toString()}`.trim().split("\n").join("; ") };
}

function fsType(dir: string): string {
  return sh(["findmnt", "-n", "-o", "FSTYPE", "-T", dir]).out;
}

function mountTmpfs(): Fs {
  if (!isRoot) return { name: "tmpfs", dir: "", skip: "needs root to mount a tmpfs" };
  const dir = mkdtempSync(join(tmpdir(), "bd-tmpfs-"));
  scratch.push(dir);
  const m = sh(["mount", "-t", "tmpfs", "-o", "size=16m,mode=755", "tmpfs", dir]);
  if (!m.ok) return { name: "tmpfs", dir, skip: `mount -t tmpfs failed: ${m.out}` };
  mounts.push(dir);
  return { name: "tmpfs", dir };
}

function mountBtrfs(): Fs[] {
  const names = ["btrfs", "btrfs subvolume"];
  const skipAll = (skip: string) => names.map((name) => ({ name, dir: "", skip }));
  if (!isRoot) return skipAll("needs root to loop-mount a btrfs image");
  // Also where a PATH without the sbin directories would not look.
  const mkfs = [Bun.which("mkfs.btrfs"), "/usr/sbin/mkfs.btrfs", "/sbin/mkfs.btrfs"].find((p) => p && existsSync(p));
  if (!mkfs) return skipAll("btrfs-progs is not installed (no mkfs.btrfs): apt-get install btrfs-progs");
  const base = mkdtempSync(join(tmpdir(), "bd-btrfs-"));
  scratch.push(base);
  const img = join(base, "fs.img");
  const dir = join(base, "mnt");
  const steps: string[][] = [["truncate", "-s", "200M", img], [mkfs, "-q", img], ["mkdir", dir]];
  for (const step of steps) {
    const r = sh(step);
    if (!r.ok) return skipAll(`${step[0]} failed: ${r.out}`);
  }
  const m = sh(["mount", "-o", "loop", img, dir]);
  if (!m.ok) return skipAll(`mount -o loop of a btrfs image failed: ${m.out}`);
  mounts.push(dir);
  const sub = join(dir, "sub");
  const s = sh(["btrfs", "subvolume", "create", sub]);
  return [{ name: "btrfs", dir }, s.ok ? { name: "btrfs subvolume", dir: sub } : { name: "btrfs subvolume", dir: "", skip: `btrfs subvolume create failed: ${s.out}` }];
}

const work = tempDir("bd-pidfile-fs-");
const filesystems: Fs[] = [{ name: `the work dir (${fsType(work)})`, dir: work }, mountTmpfs(), ...mountBtrfs()];

afterAll(async () => {
  // Daemons and lock holders first: a busy mount cannot be unmounted.
  await Promise.all(pending.splice(0));
  await stopTracked();
  for (const dir of mounts.reverse()) {
    if (!sh(["umount", dir]).ok) sh(["umount", "-l", dir]);
  }
  for (const dir of scratch) rmSync(dir, { recursive: true, force: true });
});

for (const fs of filesystems) {
  describe.skipIf(fs.skip !== undefined)(`PID file on ${fs.name}${fs.skip ? ` (skipped: ${fs.skip})` : ""}`, () => {
    test("the tests' isFlocked sees a flock(1) holder, and its end", async () => {
      const file = join(fs.dir, "held.pid");
      writeFileSync(file, "");
      expect(isFlocked(file)).toBe(false);
      const holder = Bun.spawn(["flock", "--no-fork", "--exclusive", file, "sleep", "600"], { stdin: "ignore", stdout: "ignore", stderr: "inherit" });
      track(holder.pid);
      expect(await waitFor(() => isFlocked(file), 10_000, 5)).toBe(true);
      holder.kill("SIGKILL");
      await holder.exited;
      expect(isFlocked(file)).toBe(false);
    }, 30_000);

    test("a daemon still loading is 'starting' to status and is stopped by stop; a running one is found", async () => {
      const pidFile = join(fs.dir, "d.pid");
      const launching = run(stress("start", "--pid-file", pidFile), { env: { STRESS_IMPORT_MS: "2000" } });
      // Known once it is ready; tracked even if the test fails before it awaits the start.
      pending.push(launching.then((r) => void track(startedPid(r.stdout))));
      expect(await waitFor(() => existsSync(pidFile) && isFlocked(pidFile), 20_000, 5)).toBe(true);
      const status = await run(stress("status", "--pid-file", pidFile));
      expect(status.stdout).toMatch(/^stress is starting \(/);
      expect(status.code).toBe(0);
      const stop = await run(stress("--pid-file", pidFile, "stop", "--timeout", "60"));
      expect(stop.code).toBe(0);
      expect(stop.stdout).toMatch(/^stopped stress \(pid \d+\)\n$/);
      await launching; // started or stopped before ready, depending on when the SIGTERM landed

      const started = await run(stress("start", "--pid-file", pidFile));
      expect(started.code).toBe(0);
      const pid = track(startedPid(started.stdout))!;
      expect(isFlocked(pidFile)).toBe(true);
      expect((await run(stress("--pid-file", pidFile, "status"))).stdout).toMatch(new RegExp(`^stress is running \\(pid ${pid}, up \\d+s\\)\\n$`));
      expect((await run(stress("start", "--pid-file", pidFile))).stderr).toBe(`stress: already running (pid ${pid})\n`);
      expect(await run(stress("stop", "--pid-file", pidFile))).toMatchObject({ code: 0, stdout: `stopped stress (pid ${pid})\n` });
      expect(alive(pid)).toBe(false);
      expect(existsSync(pidFile)).toBe(false);
    }, 60_000);
  });
}
