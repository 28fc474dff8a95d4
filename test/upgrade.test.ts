/**
 * Issue 13, upgrade: a daemon serving through ctx.serve is replaced by the
 * program as it is on disk now while a load client (test/load.ts, in its
 * own process) hammers it; no request may fail, the PID file always names
 * a live daemon, and a new version that cannot start changes nothing.
 */
import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { alive, BUN, cleanupProcesses, pidsMentioning, ROOT, tempDir, track, waitFor } from "./helpers.ts";
import { loadClient, serveCase, type ServeCase } from "./serve-case.ts";

cleanupProcesses();
const APP = join(ROOT, "test/fixtures/serve-app.ts");
const dir = tempDir("bd-upgrade-");
let n = 0;

type Case = ServeCase;

function setup(): Case {
  n++;
  return serveCase(dir, `up${process.pid}-${n}`, [BUN, APP]);
}

/** The load client for `ms`, or until stop(). */
const load = (port: number, ms: number) => loadClient(port, { ms, keepAlive: 16, fresh: 8 });

const get = async (port: number) => (await fetch(`http://127.0.0.1:${port}/`)).text();

describe("upgrade", () => {
  test("15 upgrades under load (keep-alive and fresh connections): no request fails, each version serves, the PID file names the newest, every old pid exits", async () => {
    const c = setup();
    const r = await c.cli(["--pid-file", c.pidFile, "start", "--log-file", c.log]);
    expect(r.code).toBe(0);
    const first = c.pid()!;
    expect(await get(c.port)).toBe(`v1 pid ${first}\n`);
    // Until the last upgrade is done, however slow the machine: every version is served under load.
    const result = load(c.port, 300_000);
    await Bun.sleep(500);
    const pids = [first];
    for (let v = 2; v <= 16; v++) {
      c.set("version", String(v));
      pids.push(await c.upgraded());
    }
    await Bun.sleep(500);
    const res = await result.stop();
    expect(res.failed).toBe(0);
    expect(res.failures).toEqual({});
    expect(res.ok).toBeGreaterThan(1000);
    const versions = new Set(Object.keys(res.bodies).map((b) => b.split(" ")[0]));
    expect(versions.size).toBeGreaterThanOrEqual(10);
    expect(await get(c.port)).toBe(`v16 pid ${pids.at(-1)}\n`);
    // The newest owns the state file too: status reads it.
    const st = await c.cli(["status", "--json", "--pid-file", c.pidFile]);
    expect(JSON.parse(st.stdout)).toMatchObject({ pid: pids.at(-1), state: "running" });
    expect((await c.cli(["stop", "--pid-file", c.pidFile])).code).toBe(0);
    expect(existsSync(c.pidFile)).toBe(false);
  }, 120_000);

  test("a new version whose init throws: upgrade exits 1 with its message, the old pid stays in the PID file and serves, no request fails", async () => {
    const c = setup();
    expect((await c.cli(["start", "--pid-file", c.pidFile, "--log-file", c.log])).code).toBe(0);
    const old = c.pid()!;
    const result = load(c.port, 3000);
    await Bun.sleep(300);
    c.set("version", "2");
    c.set("fail", "the database is down");
    const u = await c.cli(["upgrade", "--pid-file", c.pidFile]);
    expect(u.code).toBe(1);
    expect(u.stderr).toContain("version 2 refuses to start: the database is down");
    expect(u.stderr).toContain(`pid ${old} still serving`);
    expect(c.pid()).toBe(old);
    const res = await result.done;
    expect(res.failed).toBe(0);
    expect(await get(c.port)).toBe(`v1 pid ${old}\n`);
    // And once fixed, the next upgrade goes through.
    c.set("fail", undefined);
    expect((await c.cli(["upgrade", "--pid-file", c.pidFile])).code).toBe(0);
    expect(await get(c.port)).toBe(`v2 pid ${c.pid()}\n`);
  }, 60_000);

  test("a new version not ready within readyTimeout is stopped; the old one serves on", async () => {
    const c = setup();
    expect((await c.cli(["start", "--pid-file", c.pidFile, "--ready-timeout", "1500"])).code).toBe(0);
    const old = c.pid()!;
    c.set("slow-init-ms", "60000");
    const u = await c.cli(["upgrade", "--pid-file", c.pidFile]);
    expect(u.code).toBe(1);
    expect(u.stderr).toContain("not ready within 1500 ms");
    expect(c.pid()).toBe(old);
    expect(await get(c.port)).toBe(`v1 pid ${old}\n`);
  }, 60_000);

  test("two upgrades at once: one new process, never two; the other caller is refused or waits for the same one", async () => {
    const c = setup();
    expect((await c.cli(["start", "--pid-file", c.pidFile, "--log-file", c.log])).code).toBe(0);
    const old = c.pid()!;
    c.set("slow-init-ms", "800");
    const a = c.cli(["upgrade", "--pid-file", c.pidFile]);
    await Bun.sleep(200);
    const b = await c.cli(["upgrade", "--pid-file", c.pidFile]);
    const ra = await a;
    expect(ra.code).toBe(0);
    expect(b.code).toBe(1);
    expect(b.stderr).toContain("upgrade already in progress (pid ");
    const now = c.pid()!;
    expect(now).not.toBe(old);
    const started = readFileSync(c.log, "utf8").split("\n").filter((l) => l.includes("upgrade: starting the program"));
    expect(started.length).toBe(1);
  }, 60_000);

  test("SIGUSR2 to a foreground daemon (run): the new process takes the PID file and the port; the old one exits 0", async () => {
    const c = setup();
    const env = { BD_SERVE_DIR: join(dir, `up${process.pid}-${n}`), BD_PORT: String(c.port), BD_NAME: `up${process.pid}-${n}` };
    const p = Bun.spawn([BUN, APP, "run", "--pid-file", c.pidFile], { env: { ...process.env, ...env }, stdout: "ignore", stderr: "ignore" });
    track(p.pid);
    // In the foreground the PID file is written before init: wait for the server.
    expect(await waitFor(() => get(c.port).then((t) => t === `v1 pid ${p.pid}\n`, () => false), 15_000)).toBe(true);
    expect(c.pid()).toBe(p.pid);
    c.set("version", "2");
    process.kill(p.pid, "SIGUSR2");
    expect(await p.exited).toBe(0);
    const now = c.pid()!;
    expect(now).not.toBe(p.pid);
    expect(await get(c.port)).toBe(`v2 pid ${now}\n`);
    // (Its stderr is not read to the end here: the new process holds the same pipe.)
  }, 60_000);

  test("upgrade of a daemon that is not running exits 7", async () => {
    const c = setup();
    const u = await c.cli(["upgrade", "--pid-file", c.pidFile]);
    expect(u.code).toBe(7);
  });
});

describe("upgrade and the rest of the lifecycle", () => {
  /**
   * A daemon, and an upgrade whose new process sits in a 20 s init. The new
   * one is found by its argv and PID file: it is not the old one's child
   * (the relay started it).
   */
  async function upgradeInSlowInit(): Promise<{ c: Case; old: number; fresh: number }> {
    const c = setup();
    expect((await c.cli(["start", "--pid-file", c.pidFile, "--log-file", c.log])).code).toBe(0);
    const old = c.pid()!;
    c.set("slow-init-ms", "20000");
    process.kill(old, "SIGUSR2");
    const successor = () => pidsMentioning(c.pidFile).find((p) => p !== old && readFileSync(`/proc/${p}/cmdline`, "utf8").startsWith("bun-daemon:stage\0"));
    expect(await waitFor(() => successor() !== undefined, 10_000)).toBe(true);
    return { c, old, fresh: track(successor())! };
  }

  test("a stop while the new process is still starting stops it too: nothing is left running", async () => {
    const { c, fresh } = await upgradeInSlowInit();
    expect((await c.cli(["stop", "--pid-file", c.pidFile])).code).toBe(0);
    expect(await waitFor(() => !alive(fresh), 10_000)).toBe(true);
  }, 60_000);

  test("the old daemon killed outright (SIGKILL) during an upgrade: the new process, not ready yet, does not live on", async () => {
    const { c, old, fresh } = await upgradeInSlowInit();
    process.kill(old, "SIGKILL");
    // Nobody is left to take over from: it stops, its init cut short (after at most the 10 s shutdown timeout), before its 20 s init would end.
    expect(await waitFor(() => !alive(fresh), 30_000)).toBe(true);
    expect(readFileSync(c.log, "utf8")).toContain(`pid ${old}, which it was to take over, is gone`);
  }, 60_000);

  test("an app that listens for SIGUSR2 itself keeps it: no upgrade starts", async () => {
    const c = setup();
    c.set("own-usr2", "1");
    expect((await c.cli(["start", "--pid-file", c.pidFile, "--log-file", c.log])).code).toBe(0);
    const old = c.pid()!;
    process.kill(old, "SIGUSR2");
    expect(await waitFor(() => readFileSync(c.log, "utf8").includes("app got SIGUSR2"), 10_000)).toBe(true);
    await Bun.sleep(300);
    expect(c.pid()).toBe(old);
    expect(readFileSync(c.log, "utf8")).toContain("SIGUSR2: the app listens for it itself");
    const u = await c.cli(["upgrade", "--pid-file", c.pidFile, "--timeout", "2"]);
    expect(u.code).toBe(1);
  }, 60_000);
});
