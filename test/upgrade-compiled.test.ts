/**
 * The upgrade contract (test/upgrade.test.ts) for a compiled binary
 * (`bun build --compile`): there the program to start again is the binary
 * itself, with its sources inside it, so "the program as it is on disk now"
 * is whatever file is at the binary's path when the upgrade runs.
 *
 * The daemon is test/fixtures/serve-app.ts compiled; the load client
 * (test/load.ts) runs in its own process. A second build of the same
 * fixture with `--define process.env.BD_SERVE_DIR=...` reads its version
 * from another directory whatever the environment says: that is how the
 * test sees which binary a process runs, besides /proc/PID/exe's inode.
 */
import { beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, copyFileSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { alive, BUN, cleanupProcesses, ROOT, run, startedPid, tempDir, waitFor } from "./helpers.ts";
import { loadClient, serveCase, type ServeCase } from "./serve-case.ts";

cleanupProcesses();
const FIXTURE = join(ROOT, "test/fixtures/serve-app.ts");
const dir = tempDir("bd-upc-");
/** The plain build, copied for each test (each test owns its binary's path). */
const BUILT = join(dir, "built", "serve-app");
/** The same fixture, built to read its files from NEXT_DIR. */
const BUILT_NEXT = join(dir, "built", "serve-app-next");
const NEXT_DIR = join(dir, "next-version");
let n = 0;

async function build(out: string, extra: string[]): Promise<void> {
  const r = await run([BUN, "build", "--compile", ...extra, FIXTURE, "--outfile", out], { timeoutMs: 180_000 });
  if (r.code !== 0) throw new Error(`bun build --compile failed (${r.code}): ${r.stderr}`);
  chmodSync(out, 0o755);
}

beforeAll(async () => {
  mkdirSync(join(dir, "built"), { recursive: true });
  mkdirSync(NEXT_DIR, { recursive: true });
  await build(BUILT, []);
  await build(BUILT_NEXT, ["--define", `process.env.BD_SERVE_DIR=${JSON.stringify(NEXT_DIR)}`]);
}, 360_000);

type Case = ServeCase & { bin: string };

function setup(): Case {
  n++;
  const name = `upc${process.pid}-${n}`;
  const home = join(dir, name);
  mkdirSync(home, { recursive: true });
  // Each case its own copy: a test replaces the binary on disk.
  const bin = join(home, "serve-app");
  copyFileSync(BUILT, bin);
  chmodSync(bin, 0o755);
  return { ...serveCase(home, name, [bin]), bin };
}

/** The load client in its own process until stop(); then its result. */
const load = (port: number) => loadClient(port, { keepAlive: 8, fresh: 4, timeoutMs: 10_000 });

const get = async (port: number) => (await fetch(`http://127.0.0.1:${port}/`, { headers: { connection: "close" } })).text();
const cmdline = (pid: number) => readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").slice(0, -1);
/** The inode of the file a process runs (its exe link followed, so a replaced binary keeps its own). */
const exeInode = (pid: number) => statSync(`/proc/${pid}/exe`).ino;

describe("upgrade of a compiled binary", () => {
  test("5 upgrades under load: each exits 0, a new pid each time in the PID file serving the new version, the same binary and argv; no request fails", async () => {
    const c = setup();
    const startArgs = ["start", "--pid-file", c.pidFile, "--log-file", c.log, "--ready-timeout", "60000"];
    const r = await c.cli(startArgs);
    expect(r.code).toBe(0);
    const first = c.pid()!;
    expect(first).toBe(startedPid(r.stdout)!);
    expect(await get(c.port)).toBe(`v1 pid ${first}\n`);
    // The daemon is the compiled binary itself (re-executed), with the options as given.
    expect(exeInode(first)).toBe(statSync(c.bin).ino);
    const argv = cmdline(first).slice(1);
    expect(argv).toEqual(startArgs);
    const l = load(c.port);
    await Bun.sleep(500);
    const pids = [first];
    for (let v = 2; v <= 6; v++) {
      c.set("version", String(v));
      const now = await c.upgraded();
      expect(pids).not.toContain(now);
      expect(await get(c.port)).toBe(`v${v} pid ${now}\n`);
      expect(exeInode(now)).toBe(statSync(c.bin).ino);
      expect(cmdline(now).slice(1)).toEqual(argv);
      pids.push(now);
    }
    await Bun.sleep(300);
    const res = await l.stop();
    expect(res.failures).toEqual({});
    expect(res.failed).toBe(0);
    expect(res.ok).toBeGreaterThan(500);
    for (let v = 1; v <= 6; v++) expect(res.bodies[`v${v} pid ${pids[v - 1]}\n`]).toBeGreaterThan(0);
    const st = await c.cli(["status", "--json", "--pid-file", c.pidFile]);
    expect(JSON.parse(st.stdout)).toMatchObject({ pid: pids.at(-1), state: "running" });
    expect((await c.cli(["stop", "--pid-file", c.pidFile])).code).toBe(0);
    expect(await waitFor(() => !alive(pids.at(-1)!), 10_000)).toBe(true);
  }, 180_000);

  test("the binary replaced on disk (a new build renamed over its path): the upgrade under load runs the new binary, same argv; no request fails", async () => {
    const c = setup();
    const startArgs = ["start", "--pid-file", c.pidFile, "--log-file", c.log];
    expect((await c.cli(startArgs)).code).toBe(0);
    const old = c.pid()!;
    const oldIno = exeInode(old);
    expect(await get(c.port)).toBe(`v1 pid ${old}\n`);
    const l = load(c.port);
    await Bun.sleep(500);
    // Deploy: the new build next to the old one, then renamed over it (the running binary's file lives on, unlinked).
    writeFileSync(join(NEXT_DIR, "version"), "next");
    const staged = `${c.bin}.new`;
    copyFileSync(BUILT_NEXT, staged);
    chmodSync(staged, 0o755);
    renameSync(staged, c.bin);
    const newIno = statSync(c.bin).ino;
    expect(newIno).not.toBe(oldIno);
    const u = await c.cli(["upgrade", "--pid-file", c.pidFile]);
    const res = await l.stop();
    expect(u.stderr).toBe("");
    expect(u.code).toBe(0);
    const now = c.pid()!;
    expect(now).not.toBe(old);
    expect(alive(old)).toBe(false);
    expect(exeInode(now)).toBe(newIno);
    expect(await get(c.port)).toBe(`vnext pid ${now}\n`);
    expect(cmdline(now).slice(1)).toEqual(startArgs);
    expect(res.failures).toEqual({});
    expect(res.failed).toBe(0);
    expect(res.bodies[`v1 pid ${old}\n`]).toBeGreaterThan(0);
    expect(res.bodies[`vnext pid ${now}\n`]).toBeGreaterThan(0);
  }, 120_000);

  test("a new version that fails in init: upgrade exits 1 with its message, the old pid stays in the PID file and serves; no request fails", async () => {
    const c = setup();
    expect((await c.cli(["start", "--pid-file", c.pidFile, "--log-file", c.log])).code).toBe(0);
    const old = c.pid()!;
    const l = load(c.port);
    await Bun.sleep(500);
    c.set("version", "2");
    c.set("fail", "the database is down");
    const u = await c.cli(["upgrade", "--pid-file", c.pidFile]);
    expect(u.code).toBe(1);
    expect(u.stderr).toContain("version 2 refuses to start: the database is down");
    expect(u.stderr).toContain(`pid ${old} still serving`);
    expect(c.pid()).toBe(old);
    expect(alive(old)).toBe(true);
    expect(await get(c.port)).toBe(`v1 pid ${old}\n`);
    await Bun.sleep(300);
    const res = await l.stop();
    expect(res.failures).toEqual({});
    expect(res.failed).toBe(0);
    expect(Object.keys(res.bodies)).toEqual([`v1 pid ${old}\n`]);
    // Fixed: the next upgrade goes through.
    c.set("fail", undefined);
    const again = await c.cli(["upgrade", "--pid-file", c.pidFile]);
    expect(again.code).toBe(0);
    expect(await get(c.port)).toBe(`v2 pid ${c.pid()}\n`);
  }, 120_000);
});
