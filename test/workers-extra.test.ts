/**
 * Issue 13, workers, the parts around the pool itself: logrotate's SIGUSR1
 * reaches every worker, a terminal's Ctrl-C (SIGINT to the whole process
 * group) stops a foreground primary and its workers once, socket
 * activation's socket is the one the workers share, and the same program
 * compiled with `bun build --compile` runs, reloads and replaces workers.
 * test/workers.test.ts has the pool's contract under load.
 */
import { beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync, readlinkSync, renameSync } from "node:fs";
import { join } from "node:path";
import { serveCase } from "./serve-case.ts";
import { alive, BUN, cleanupProcesses, ROOT, run, statusField, tempDir, track, waitFor } from "./helpers.ts";
import type { WorkerStatus } from "../src/control.ts";

cleanupProcesses();
const APP = join(ROOT, "test/fixtures/serve-app.ts");
const dir = tempDir("bd-workers-x-");
let n = 0;

/** One worker as `status --json` lists it. */
type WorkerRow = WorkerStatus;

function setup(program: string[] = [BUN, APP]) {
  n++;
  const c = serveCase(dir, `wx${process.pid}-${n}`, program);
  return {
    ...c,
    primary: () => c.pid(),
    async workers(): Promise<WorkerRow[]> {
      const r = await c.cli(["status", "--json", "--pid-file", c.pidFile]);
      const w = (JSON.parse(r.stdout) as { workers: WorkerRow[] | null }).workers ?? [];
      for (const x of w) track(x.pid);
      return w;
    },
  };
}

const get = async (port: number) => (await fetch(`http://127.0.0.1:${port}/`)).text();

/** Distinct pids answering over fresh connections. */
async function answering(port: number, tries = 40): Promise<Set<string>> {
  const seen = new Set<string>();
  for (let i = 0; i < tries; i++) {
    const body = await (await fetch(`http://127.0.0.1:${port}/`, { headers: { Connection: "close" } })).text();
    seen.add(/pid (\d+)/.exec(body)?.[1] ?? body);
  }
  return seen;
}

describe("workers and the rest of the daemon", () => {
  test("SIGUSR1 to the primary (logrotate's postrotate) makes every worker reopen the log file: their next lines go to the new file", async () => {
    const c = setup();
    const log = join(dir, `${c.name}.log`);
    expect((await c.cli(["start", "--workers", "2", "--pid-file", c.pidFile, "--log-file", log])).code).toBe(0);
    const ws = await c.workers();
    expect(ws).toHaveLength(2);
    renameSync(log, `${log}.1`);
    process.kill(c.primary()!, "SIGUSR1");
    // The primary and each worker say so, in the file they now write to: the new one.
    const reopened = () => (existsSync(log) ? readFileSync(log, "utf8").split("\n").filter((l) => l.includes("log file reopened")).length : 0);
    expect(await waitFor(() => reopened() === 3, 15_000)).toBe(true);
    for (const w of ws) expect(readlinkSync(`/proc/${w.pid}/fd/1`)).toBe(log);
    expect(readlinkSync(`/proc/${c.primary()}/fd/1`)).toBe(log);
    expect((await c.cli(["stop", "--pid-file", c.pidFile])).code).toBe(0);
  }, 60_000);

  test("a worker outlives its primary's idle threads (PR_SET_PDEATHSIG is tied to the thread that spawned it), and dies with its primary", async () => {
    const c = setup();
    expect((await c.cli(["start", "--workers", "1", "--pid-file", c.pidFile])).code).toBe(0);
    const [w] = await c.workers();
    // Bun ends idle JIT and GC threads after a few seconds (BUN-RUNTIME-NOTES): had a
    // worker been spawned from one of those, its death signal would fire here.
    await Bun.sleep(12_000);
    const [same] = await c.workers();
    expect(same).toEqual({ ...w!, uptimeSeconds: expect.any(Number) } as never);
    expect(alive(w!.pid)).toBe(true);
    // A primary killed outright takes its worker along (SIGTERM: it drains and exits), so no orphan holds the port.
    process.kill(c.primary()!, "SIGKILL");
    expect(await waitFor(() => !alive(w!.pid), 15_000)).toBe(true);
  }, 60_000);

  test("run --workers 2 in the foreground: Ctrl-C (SIGINT to the process group) stops the primary, which drains its workers; all exit, the primary with 0", async () => {
    const c = setup();
    // setsid: its own process group, as a shell job has, so the group signal reaches no one else.
    const p = Bun.spawn(["setsid", BUN, APP, "run", "--workers", "2", "--pid-file", c.pidFile], { env: { ...process.env, ...c.env }, stdout: "ignore", stderr: "pipe" });
    track(p.pid);
    let err = "";
    const reader = (async () => {
      for await (const chunk of p.stderr) err += Buffer.from(chunk).toString();
    })();
    expect(await waitFor(() => err.includes("2 workers ready"), 30_000)).toBe(true);
    await waitFor(() => c.primary() !== undefined, 5000);
    const primary = c.primary()!;
    const ws = await c.workers();
    expect(ws).toHaveLength(2);
    // The group is the primary's (setsid made it a group leader, exec kept the pid).
    const pgrp = Number(readFileSync(`/proc/${primary}/stat`, "utf8").split(") ")[1]!.split(" ")[2]);
    for (const w of ws) expect(Number(readFileSync(`/proc/${w.pid}/stat`, "utf8").split(") ")[1]!.split(" ")[2])).toBe(pgrp);
    process.kill(-pgrp, "SIGINT");
    expect(await p.exited).toBe(0);
    await reader;
    for (const w of ws) expect(await waitFor(() => !alive(w.pid), 10_000)).toBe(true);
    // Each worker stopped once, by the primary's SIGTERM: none reacted to the SIGINT itself.
    expect(err.match(/stopping \(SIGTERM\)/g)?.length).toBe(2);
    expect(err).toContain("stopping (SIGINT)");
    expect(existsSync(c.pidFile)).toBe(false);
  }, 60_000);

  test("under systemd-socket-activate the primary takes the passed socket and every worker accepts on it; nothing else listens on the port", async () => {
    if (!Bun.which("systemd-socket-activate")) throw new Error("systemd-socket-activate is missing: apt-get install systemd");
    const c = setup();
    const env = Object.entries(c.env).flatMap(([k, v]) => ["-E", `${k}=${v}`]);
    const p = Bun.spawn(["systemd-socket-activate", "-l", `127.0.0.1:${c.port}`, "--fdname=http", ...env, BUN, APP, "run", "--workers", "2", "--pid-file", c.pidFile], { stdout: "ignore", stderr: "ignore" });
    track(p.pid);
    // The first connection starts it (systemd-socket-activate execs in place: the pid stays).
    let body = "";
    await waitFor(async () => {
      try {
        body = await get(c.port);
        return true;
      } catch {
        return false;
      }
    }, 30_000, 50);
    expect(body).toMatch(/^v1 pid \d+\n$/);
    await waitFor(() => c.primary() === p.pid, 10_000);
    const ws = await c.workers();
    expect(ws.map((w) => w.state)).toEqual(["running", "running"]);
    const inode = (pid: number) =>
      readdirSync(`/proc/${pid}/fd`).flatMap((fd) => {
        try {
          const t = readlinkSync(`/proc/${pid}/fd/${fd}`);
          return t.startsWith("socket:") ? [t] : [];
        } catch {
          return [];
        }
      });
    const listening = new Set<string>();
    for (const f of ["/proc/net/tcp", "/proc/net/tcp6"]) {
      for (const line of readFileSync(f, "utf8").split("\n").slice(1)) {
        const col = line.trim().split(/\s+/);
        if (col[3] === "0A" && parseInt(col[1]?.split(":")[1] ?? "0", 16) === c.port) listening.add(`socket:[${col[9]}]`);
      }
    }
    expect(listening.size).toBe(1);
    const [sock] = [...listening];
    expect(inode(p.pid)).toContain(sock!);
    for (const w of ws) expect(inode(w.pid)).toContain(sock!);
    expect(await answering(c.port)).toEqual(new Set(ws.map((w) => String(w.pid))));
    p.kill("SIGTERM");
    expect(await p.exited).toBe(0);
  }, 60_000);
});

describe("workers in a compiled binary", () => {
  let bin = "";
  beforeAll(async () => {
    bin = join(dir, "serve-app");
    const r = await run([BUN, "build", "--compile", APP, "--outfile", bin], { timeoutMs: 120_000 });
    if (r.code !== 0) throw new Error(`bun build --compile failed: ${r.stderr}`);
  }, 130_000);

  test("start --workers 2, a rolling reload to a new version, a killed worker replaced, an upgrade, stop: the binary re-executes itself for each", async () => {
    const c = setup([bin]);
    expect((await c.cli(["--workers", "2", "start", "--pid-file", c.pidFile])).code).toBe(0);
    const primary = c.primary()!;
    let ws = await c.workers();
    expect(ws.map((w) => w.state)).toEqual(["running", "running"]);
    for (const w of ws) {
      expect(statusField(w.pid, "PPid")).toBe(String(primary));
      expect(readlinkSync(`/proc/${w.pid}/exe`)).toBe(bin);
    }
    require("node:fs").writeFileSync(join(c.serveDir, "version"), "2");
    expect((await c.cli(["reload", "--pid-file", c.pidFile])).code).toBe(0);
    const reloaded = await c.workers();
    expect(reloaded.map((w) => w.pid).some((p) => ws.some((o) => o.pid === p))).toBe(false);
    expect(await get(c.port)).toStartWith("v2 ");
    ws = reloaded;
    process.kill(ws[0]!.pid, "SIGKILL");
    expect(await waitFor(async () => {
      const now = await c.workers();
      return now.length === 2 && now[0]!.pid !== ws[0]!.pid && now[0]!.state === "running";
    }, 30_000, 100)).toBe(true);
    expect((await c.workers())[0]!.restarts).toBe(1);
    const u = await c.cli(["upgrade", "--pid-file", c.pidFile]);
    expect(u.code).toBe(0);
    const next = c.primary()!;
    expect(next).not.toBe(primary);
    expect(alive(primary)).toBe(false);
    const after = await c.workers();
    for (const w of after) expect(statusField(w.pid, "PPid")).toBe(String(next));
    expect(await answering(c.port)).toEqual(new Set(after.map((w) => String(w.pid))));
    expect((await c.cli(["stop", "--pid-file", c.pidFile])).code).toBe(0);
    for (const w of after) expect(await waitFor(() => !alive(w.pid), 10_000)).toBe(true);
  }, 120_000);
});
