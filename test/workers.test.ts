/**
 * Issue 13 part 3, workers: `--workers N|auto` (or defineDaemon's `workers`)
 * runs the app in N worker processes, fresh execs of the program and
 * children of a primary that loads none of it and owns the listeners they
 * all accept on. A worker that dies unasked is replaced (same id, backoff);
 * a crash loop stops the daemon; `reload` replaces the workers one by one;
 * `upgrade` replaces the primary and its workers; a load client
 * (test/load.ts, in its own process) counts what fails meanwhile.
 *
 * Everything is checked from outside: the PID file, `status --json`,
 * /proc/PID/status, HTTP answers (each names its worker's id and pid), and
 * the files the app (test/fixtures/workers-app-impl.ts) leaves per pid.
 */
import { afterAll, afterEach, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism, cpus } from "node:os";
import { join } from "node:path";
import { alive, BUN, cleanupProcesses, freePort, ROOT, run, startedPid, statusField, stopTracked, tempDir, track, waitFor, type Result } from "./helpers.ts";
import type { WorkerStatus } from "../src/control.ts";
import type { LoadResult } from "./load.ts";
import { getFresh as get, loadClient } from "./serve-case.ts";

const APP = join(ROOT, "test/fixtures/workers-app.ts");
const dir = tempDir("bd-workers-");
let n = 0;

/** One worker as `status --json` lists it. */
type WorkerInfo = WorkerStatus;

interface Status {
  code: number;
  report: { state: string; pid: number | null; workers: WorkerInfo[] | null } & Record<string, unknown>;
}

interface Load {
  /** SIGTERM the client (it stops early) and get its result. */
  stop(): Promise<LoadResult>;
  done: Promise<LoadResult>;
}

interface Case {
  name: string;
  port: number;
  pidFile: string;
  log: string;
  dir: string;
  cli(args: string[]): Promise<Result>;
  /** `--pid-file` and `--log-file` added. */
  start(...args: string[]): Promise<Result>;
  /** The pid the PID file names, if any. */
  pid(): number | undefined;
  status(): Promise<Status>;
  /** The workers from `status --json`, sorted by id ([] when status has none). */
  workers(): Promise<WorkerInfo[]>;
  /** pid -> content of each `${kind}.PID` file the app left. */
  files(kind: "loaded" | "init" | "shutdown"): Map<number, string>;
  set(file: string, text: string | undefined): void;
  /** Every process of this daemon this test learned of, alive or not. */
  everyPid(): number[];
  load(o?: { ms?: number; keepAlive?: number; fresh?: number }): Load;
}

/** Cases of the running test: their daemons are stopped after it. */
let cases: Case[] = [];
/** Primaries seen per case (an upgrade makes new ones). */
const primaries = new WeakMap<Case, Set<number>>();

function setup(extraEnv: Record<string, string> = {}): Case {
  n++;
  const name = `wk${process.pid}-${n}`;
  const port = freePort();
  const pidFile = join(dir, `${name}.pid`);
  const log = join(dir, `${name}.log`);
  const caseDir = join(dir, name);
  mkdirSync(caseDir, { recursive: true });
  const env = { BD_SERVE_DIR: caseDir, BD_PORT: String(port), BD_NAME: name, ...extraEnv };
  const seen = new Set<number>();
  const learn = (pid: number | undefined) => {
    if (pid !== undefined && pid > 1) {
      track(pid);
      seen.add(pid);
    }
    return pid;
  };
  const c: Case = {
    name, port, pidFile, log, dir: caseDir,
    async cli(args) {
      const r = await run([BUN, APP, ...args], { env, timeoutMs: 90_000 });
      learn(startedPid(r.stdout));
      c.pid();
      for (const p of c.files("loaded").keys()) learn(p);
      return r;
    },
    start(...args) {
      return c.cli([...args, "--pid-file", pidFile, "--log-file", log]);
    },
    pid() {
      try {
        const p = Number(readFileSync(pidFile, "utf8").trim());
        if (!(p > 0)) return undefined;
        learn(p);
        primaries.get(c)!.add(p);
        return p;
      } catch {
        return undefined;
      }
    },
    async status() {
      const r = await c.cli(["status", "--json", "--pid-file", pidFile]);
      let report: Status["report"];
      try {
        report = JSON.parse(r.stdout);
      } catch {
        throw new Error(`status --json printed no JSON (exit ${r.code}): ${r.stdout} ${r.stderr}`);
      }
      for (const w of report.workers ?? []) learn(w.pid);
      return { code: r.code, report };
    },
    async workers() {
      const s = await c.status();
      return [...(s.report.workers ?? [])].sort((a, b) => a.id - b.id);
    },
    files(kind) {
      const out = new Map<number, string>();
      for (const f of readdirSync(caseDir)) {
        const m = /^(\w+)\.(\d+)$/.exec(f);
        if (!m || m[1] !== kind) continue;
        try {
          out.set(Number(m[2]), readFileSync(join(caseDir, f), "utf8"));
        } catch {}
      }
      return out;
    },
    set(file, text) {
      const path = join(caseDir, file);
      if (text === undefined) rmSync(path, { force: true });
      else writeFileSync(path, text);
    },
    everyPid() {
      for (const p of c.files("loaded").keys()) learn(p);
      for (const [, ppid] of c.files("loaded")) learn(Number(ppid));
      return [...seen];
    },
    load: (o = {}) => loadClient(port, { ms: o.ms ?? 120_000, keepAlive: o.keepAlive ?? 8, fresh: o.fresh ?? 4 }),
  };
  primaries.set(c, new Set());
  cases.push(c);
  return c;
}

/** The pids listed in /proc/PID/task/ * /children. */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  try {
    for (const t of readdirSync(`/proc/${pid}/task`)) {
      try {
        out.push(...readFileSync(`/proc/${pid}/task/${t}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number));
      } catch {}
    }
  } catch {}
  return out;
}

/** Stop what a test left: SIGTERM its primaries (they stop their workers), then every pid it saw. */
async function stopCases(): Promise<void> {
  const list = cases;
  cases = [];
  await Promise.all(
    list.map(async (c) => {
      c.pid();
      const prim = [...primaries.get(c)!].filter(alive);
      for (const p of prim) for (const ch of childrenOf(p)) track(ch);
      c.everyPid();
      for (const p of prim) {
        try {
          process.kill(p, "SIGTERM");
        } catch {}
      }
      await waitFor(() => prim.every((p) => !alive(p)), 15_000, 50);
    }),
  );
  await stopTracked();
}
afterEach(stopCases);
afterAll(stopCases);
cleanupProcesses();


/** worker id -> pid, from the bodies a load run got ("v1 worker 2 pid 1234"). */
function servers(res: LoadResult): Map<number, Set<number>> {
  const out = new Map<number, Set<number>>();
  for (const b of Object.keys(res.bodies)) {
    const m = /^v\d+ worker (\d+) pid (\d+)$/.exec(b.trim());
    if (!m) continue;
    const id = Number(m[1]);
    if (!out.has(id)) out.set(id, new Set());
    out.get(id)!.add(Number(m[2]));
  }
  return out;
}

/** Both workers answer: fresh connections, concurrently, until each pid has been seen (or ~10 s). */
async function servingPids(c: Case, want: number[]): Promise<Set<number>> {
  const got = new Set<number>();
  for (let round = 0; round < 5 && !want.every((p) => got.has(p)); round++) {
    const res = await c.load({ ms: 2000, keepAlive: 0, fresh: 8 }).done;
    expect(res.failed).toBe(0);
    for (const pids of servers(res).values()) for (const p of pids) got.add(p);
  }
  return got;
}

const ppid = (pid: number) => Number(statusField(pid, "PPid"));

/** Wait until `status --json` lists `count` running workers; returns them. */
async function running(c: Case, count: number, ms = 30_000, accept: (ws: WorkerInfo[]) => boolean = () => true): Promise<WorkerInfo[]> {
  let ws: WorkerInfo[] = [];
  const ok = await waitFor(async () => {
    ws = await c.workers();
    return ws.length === count && ws.every((w) => w.state === "running") && accept(ws);
  }, ms, 200);
  if (!ok) throw new Error(`not ${count} running workers within ${ms} ms: ${JSON.stringify(ws)}`);
  return ws;
}

/** Worker pid of `id` in a list. */
const pidOf = (ws: WorkerInfo[], id: number) => ws.find((w) => w.id === id)!.pid;

describe("workers: start", () => {
  test("start --workers 2: 2 running workers, children of the primary, each serving; only the workers load the app; status lists them", async () => {
    const c = setup();
    const r = await c.start("start", "--workers", "2");
    // (stderr carries the log lines written before ready: the launcher relays them.)
    expect(r.stderr).not.toContain("[error]");
    expect(r.code).toBe(0);
    const primary = c.pid()!;
    expect(startedPid(r.stdout)).toBe(primary);

    const s = await c.status();
    expect(s.code).toBe(0);
    expect(s.report).toMatchObject({ state: "running", pid: primary });
    const ws = [...s.report.workers!].sort((a, b) => a.id - b.id);
    expect(ws.map((w) => w.id)).toEqual([1, 2]);
    for (const w of ws) {
      expect(w).toMatchObject({ state: "running", restarts: 0 });
      expect(typeof w.uptimeSeconds).toBe("number");
      expect(w.pid).not.toBe(primary);
      expect(alive(w.pid)).toBe(true);
      expect(ppid(w.pid)).toBe(primary);
    }
    const [w1, w2] = [pidOf(ws, 1), pidOf(ws, 2)];
    expect(w1).not.toBe(w2);

    // The app: loaded and initialised in each worker, never in the primary.
    const loaded = c.files("loaded");
    const init = c.files("init");
    expect([...loaded.keys()].sort()).toEqual([w1, w2].sort());
    expect(loaded.get(w1)).toBe(String(primary));
    expect(init.has(primary)).toBe(false);
    expect(init.get(w1)).toBe("1/2");
    expect(init.get(w2)).toBe("2/2");

    // Both accept on the same port.
    const seen = await servingPids(c, [w1, w2]);
    expect([...seen].sort()).toEqual([w1, w2].sort());
    const body = await get(c.port);
    expect([`v1 worker 1 pid ${w1}\n`, `v1 worker 2 pid ${w2}\n`]).toContain(body);

    // The human status: the usual line, then one line per worker.
    const st = await c.cli(["status", "--pid-file", c.pidFile]);
    expect(st.code).toBe(0);
    const lines = st.stdout.trimEnd().split("\n");
    expect(lines[0]).toStartWith(`${c.name} is running (pid ${primary}`);
    expect(lines[1]).toMatch(new RegExp(`^  worker 1: pid ${w1}, running, up [^,]+, 0 restarts$`));
    expect(lines[2]).toMatch(new RegExp(`^  worker 2: pid ${w2}, running, up [^,]+, 0 restarts$`));
    expect(lines.length).toBe(3);

    const stop = await c.cli(["stop", "--pid-file", c.pidFile]);
    expect(stop.code).toBe(0);
    for (const p of [primary, w1, w2]) expect(alive(p)).toBe(false);
    expect(existsSync(c.pidFile)).toBe(false);
  }, 90_000);

  for (const args of [["--workers", "2", "start"], ["--daemon", "--workers", "2"], ["--workers", "2", "--daemon"]]) {
    test(`${args.join(" ")}: the same 2 workers (options go before or after the command word)`, async () => {
      const c = setup();
      const r = await c.start(...args);
      expect(r.code).toBe(0);
      const primary = c.pid()!;
      const ws = await c.workers();
      expect(ws.map((w) => [w.id, w.state])).toEqual([[1, "running"], [2, "running"]]);
      for (const w of ws) expect(ppid(w.pid)).toBe(primary);
      const init = c.files("init");
      expect(init.get(pidOf(ws, 1))).toBe("1/2");
      expect(init.get(pidOf(ws, 2))).toBe("2/2");
      expect(c.files("loaded").has(primary)).toBe(false);
      // SIGTERM to the primary stops the whole daemon, as `stop` does.
      process.kill(primary, "SIGTERM");
      expect(await waitFor(() => [primary, ...ws.map((w) => w.pid)].every((p) => !alive(p)), 20_000)).toBe(true);
      expect(existsSync(c.pidFile)).toBe(false);
    }, 60_000);
  }

  test("defineDaemon({ workers: 2 }) starts 2; --workers on the command line wins over defineDaemon; auto is one per CPU", async () => {
    const a = setup({ BD_WORKERS: "2" });
    const b = setup({ BD_WORKERS: "3" });
    const c = setup();
    const starts = await Promise.all([a.start("start"), b.start("start", "--workers", "2"), c.start("start", "--workers", "auto")]);
    expect(starts.map((r) => r.code)).toEqual([0, 0, 0]);

    expect((await a.workers()).map((w) => w.id)).toEqual([1, 2]);

    const bw = await b.workers();
    expect(bw.map((w) => w.id)).toEqual([1, 2]);
    expect(b.files("init").get(pidOf(bw, 2))).toBe("2/2");

    const cw = await c.workers();
    // "CPU count": the CPUs this process may run on, or all of them.
    expect([availableParallelism(), cpus().length]).toContain(cw.length);
    expect(cw.every((w) => w.state === "running")).toBe(true);
    expect(new Set(c.files("init").values())).toEqual(new Set(cw.map((w) => `${w.id}/${cw.length}`)));

    const stops = await Promise.all([a, b, c].map((x) => x.cli(["stop", "--pid-file", x.pidFile])));
    expect(stops.map((r) => r.code)).toEqual([0, 0, 0]);
  }, 90_000);

  test("without workers: the daemon runs the app itself, ctx.worker is undefined, status --json has workers: null", async () => {
    const c = setup();
    expect((await c.start("start")).code).toBe(0);
    const primary = c.pid()!;
    expect(c.files("init").get(primary)).toBe("undefined/undefined");
    expect(c.files("loaded").has(primary)).toBe(true);
    const s = await c.status();
    expect(s.report.workers).toBeNull();
    expect(await get(c.port)).toBe(`v1 worker undefined pid ${primary}\n`);
    const st = await c.cli(["status", "--pid-file", c.pidFile]);
    expect(st.stdout.trimEnd().split("\n").length).toBe(1);
  }, 60_000);

  test("bad --workers values (0, -1, x, 1.5, empty), before or after the command word: exit 2 naming --workers, nothing started", async () => {
    const c = setup();
    for (const v of ["0", "-1", "x", "1.5", ""]) {
      for (const args of [["start", "--workers", v], ["--workers", v, "start"]]) {
        const r = await c.start(...args);
        expect({ args, code: r.code }).toEqual({ args, code: 2 });
        expect(r.stderr).toContain("--workers");
        expect(r.stdout).not.toContain("started");
        expect(existsSync(c.pidFile)).toBe(false);
        expect(c.files("loaded").size).toBe(0);
      }
    }
  }, 90_000);

  test("a worker whose init throws: start exits 1 with its message, and nothing is left running", async () => {
    // Every worker fails; then only worker 2 (worker 1 may have been ready: it must go too).
    for (const failId of [undefined, "2"]) {
      const c = setup();
      c.set("fail", "the database is down");
      c.set("fail-id", failId);
      const r = await c.start("start", "--workers", "2");
      expect(r.code).toBe(1);
      expect(r.stderr).toContain("version 1 refuses to start: the database is down");
      const init = c.files("init");
      expect(init.size).toBeGreaterThanOrEqual(1);
      if (failId) expect([...init.values()]).toContain("2/2");
      // Every process that ran the app, and their parent (the primary).
      const pids = c.everyPid();
      const prims = new Set([...c.files("loaded").values()].map(Number));
      expect(prims.size).toBe(1);
      expect(pids.length).toBeGreaterThanOrEqual(2);
      for (const p of pids) expect({ pid: p, alive: alive(p) }).toEqual({ pid: p, alive: false });
      expect(existsSync(c.pidFile)).toBe(false);
      expect((await c.cli(["status", "--pid-file", c.pidFile])).code).toBe(3);
    }
  }, 90_000);
});

describe("workers: replacement of a worker that dies", () => {
  test("kill -9 of a worker: a new one with the same id serves, restarts 1, the other untouched; SIGTERM sent to a worker by someone else: replaced too, the PID file stays", async () => {
    const c = setup();
    expect((await c.start("start", "--workers", "2")).code).toBe(0);
    const primary = c.pid()!;
    const before = await running(c, 2);
    const [w1, w2] = [pidOf(before, 1), pidOf(before, 2)];

    process.kill(w1, "SIGKILL");
    const after = await running(c, 2, 30_000, (ws) => pidOf(ws, 1) !== w1);
    const n1 = pidOf(after, 1);
    expect(alive(w1)).toBe(false);
    expect(after.find((w) => w.id === 1)).toMatchObject({ restarts: 1, state: "running" });
    expect(after.find((w) => w.id === 2)).toMatchObject({ pid: w2, restarts: 0 });
    expect(ppid(n1)).toBe(primary);
    expect(c.files("init").get(n1)).toBe("1/2");
    expect(c.pid()).toBe(primary);
    const seen = await servingPids(c, [n1, w2]);
    expect(seen.has(n1)).toBe(true);
    expect(seen.has(w2)).toBe(true);

    // A worker's own shutdown (SIGTERM from someone else) is still an unasked exit:
    // replaced, and it leaves the primary's PID file alone.
    process.kill(w2, "SIGTERM");
    const again = await running(c, 2, 30_000, (ws) => pidOf(ws, 2) !== w2);
    expect(await waitFor(() => !alive(w2), 15_000)).toBe(true);
    const n2 = pidOf(again, 2);
    expect(again.find((w) => w.id === 2)).toMatchObject({ restarts: 1, state: "running" });
    expect(again.find((w) => w.id === 1)).toMatchObject({ pid: n1, restarts: 1 });
    expect(c.files("init").get(n2)).toBe("2/2");
    expect(c.pid()).toBe(primary);
    expect(alive(primary)).toBe(true);
    const st = await c.cli(["status", "--pid-file", c.pidFile]);
    expect(st.stdout).toMatch(new RegExp(`^  worker 1: pid ${n1}, running, up [^,]+, 1 restarts?$`, "m"));
    expect(st.stdout).toMatch(new RegExp(`^  worker 2: pid ${n2}, running, up [^,]+, 1 restarts?$`, "m"));
    expect((await c.cli(["stop", "--pid-file", c.pidFile])).code).toBe(0);
    for (const p of [primary, n1, n2]) expect(alive(p)).toBe(false);
  }, 120_000);

  test("10 kill -9 under load, alternating the two workers: no connection refused, only requests in flight on the killed worker fail", async () => {
    const keepAlive = 8;
    const fresh = 4;
    const c = setup();
    expect((await c.start("start", "--workers", "2")).code).toBe(0);
    const primary = c.pid()!;
    let ws = await running(c, 2);
    const l = c.load({ keepAlive, fresh });
    await Bun.sleep(500);
    const killed: number[] = [];
    for (let i = 0; i < 10; i++) {
      const id = (i % 2) + 1;
      const victim = pidOf(ws, id);
      process.kill(victim, "SIGKILL");
      killed.push(victim);
      ws = await running(c, 2, 40_000, (list) => pidOf(list, id) !== victim);
      await Bun.sleep(200);
    }
    const res = await l.stop();
    console.log(`workers: 10 kill -9 under load: ${res.ok} ok, ${res.failed} failed ${JSON.stringify(res.failures)}, ${res.retried} retried`);
    expect(res.failures.refused).toBeUndefined();
    expect(res.failed).toBeLessThanOrEqual(10 * (keepAlive + fresh));
    expect(res.ok).toBeGreaterThan(100);
    // 5 crashes of each id within 60 s is not more than 5: the daemon lives on.
    expect(alive(primary)).toBe(true);
    expect(c.pid()).toBe(primary);
    expect(ws.map((w) => [w.id, w.restarts])).toEqual([[1, 5], [2, 5]]);
    for (const p of killed) expect(alive(p)).toBe(false);
    const seen = await servingPids(c, ws.map((w) => w.pid));
    for (const w of ws) expect(seen.has(w.pid)).toBe(true);
  }, 150_000);

  test("a crash loop (every new worker exits at ready): the primary stops everything by itself after the 6th crash of that id", async () => {
    const c = setup();
    expect((await c.start("start", "--workers", "2")).code).toBe(0);
    const primary = c.pid()!;
    const ws = await running(c, 2);
    c.set("crash-at-ready", "1");
    process.kill(pidOf(ws, 1), "SIGKILL");
    expect(await waitFor(() => !alive(primary), 60_000, 100)).toBe(true);
    expect(existsSync(c.pidFile)).toBe(false);
    for (const p of c.everyPid()) expect({ pid: p, alive: alive(p) }).toEqual({ pid: p, alive: false });
    // The first worker 1 and its 5 replacements; the 6th crash ended it. Worker 2 never crashed.
    const inits = [...c.files("init").values()];
    expect(inits.filter((x) => x === "1/2").length).toBe(6);
    expect(inits.filter((x) => x === "2/2").length).toBe(1);
  }, 90_000);
});

describe("workers: reload, upgrade, signals, stop", () => {
  test("15 rolling reloads under load: each exits 0, every worker pid is new, the new version serves, the PID file names the same primary throughout, no request fails", async () => {
    const c = setup();
    expect((await c.start("start", "--workers", "2")).code).toBe(0);
    const primary = c.pid()!;
    let ws = await running(c, 2);
    const odd = new Set<string>();
    const sampler = setInterval(() => {
      let t: string;
      try {
        t = readFileSync(c.pidFile, "utf8").trim();
      } catch (e) {
        t = `unreadable: ${(e as Error).message}`;
      }
      if (t !== String(primary)) odd.add(t);
    }, 25);
    const l = c.load();
    await Bun.sleep(300);
    try {
      let current = ws.map((w) => w.pid);
      for (let v = 2; v <= 16; v++) {
        c.set("version", String(v));
        const old = current;
        const initBefore = new Set(c.files("init").keys());
        const r = await c.cli(["reload", "--pid-file", c.pidFile]);
        expect({ v, code: r.code, stderr: r.stderr }).toEqual({ v, code: 0, stderr: "" });
        // Exactly one new worker per id ran init (fresh execs), and they are the ones alive.
        const fresh = [...c.files("init")].filter(([p]) => !initBefore.has(p));
        expect({ v, ids: fresh.map(([, x]) => x).sort() }).toEqual({ v, ids: ["1/2", "2/2"] });
        current = fresh.map(([p]) => p);
        for (const p of current) {
          expect(alive(p)).toBe(true);
          expect(ppid(p)).toBe(primary);
        }
        // status (a CLI run, slow on a busy machine) every few reloads and after the last.
        if (v % 5 === 2 || v === 16) {
          ws = await c.workers();
          expect(ws.map((w) => [w.id, w.state, w.restarts])).toEqual([[1, "running", 0], [2, "running", 0]]);
          expect(ws.map((w) => w.pid).sort()).toEqual([...current].sort());
        }
        expect(c.pid()).toBe(primary);
        expect(await waitFor(() => old.every((p) => !alive(p)), 15_000)).toBe(true);
        for (let i = 0; i < 4; i++) expect(await get(c.port)).toStartWith(`v${v} worker `);
      }
    } finally {
      clearInterval(sampler);
    }
    const res = await l.stop();
    expect(res.failed).toBe(0);
    expect(res.failures).toEqual({});
    expect(res.ok).toBeGreaterThan(100);
    expect([...odd]).toEqual([]);
    expect(alive(primary)).toBe(true);
    const seen = await servingPids(c, ws.map((w) => w.pid));
    for (const w of ws) expect(seen.has(w.pid)).toBe(true);
    expect(new Set([...c.files("init").values()])).toEqual(new Set(["1/2", "2/2"]));
    expect(c.files("init").size).toBe(32);
  }, 180_000);

  test("a reload whose new worker fails: exit 1 with its message, the old workers serve on, no request fails; SIGHUP to the primary then reloads", async () => {
    const c = setup();
    expect((await c.start("start", "--workers", "2")).code).toBe(0);
    const primary = c.pid()!;
    const ws = await running(c, 2);
    const l = c.load({ ms: 120_000 });
    await Bun.sleep(300);
    c.set("version", "2");
    c.set("fail", "the database is down");
    const r = await c.cli(["reload", "--pid-file", c.pidFile]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("version 2 refuses to start: the database is down");
    const after = await running(c, 2, 10_000);
    expect(after.map((w) => [w.id, w.pid, w.restarts])).toEqual(ws.map((w) => [w.id, w.pid, 0]));
    for (let i = 0; i < 6; i++) expect(await get(c.port)).toStartWith("v1 worker ");
    // The replacement that failed is gone: only the two old workers ran the app and live.
    const live = [...c.files("loaded").keys()].filter(alive).sort();
    expect(live).toEqual(ws.map((w) => w.pid).sort());
    const res = await l.stop();
    expect(res.failed).toBe(0);
    expect(res.failures).toEqual({});

    // Fixed: a plain SIGHUP to the primary rolls the workers over.
    c.set("fail", undefined);
    process.kill(primary, "SIGHUP");
    const fresh = await running(c, 2, 60_000, (list) => list.every((w) => !ws.some((o) => o.pid === w.pid)));
    expect(await waitFor(() => ws.every((w) => !alive(w.pid)), 15_000)).toBe(true);
    for (let i = 0; i < 4; i++) expect(await get(c.port)).toStartWith("v2 worker ");
    expect(fresh.map((w) => w.restarts)).toEqual([0, 0]);
    expect(c.pid()).toBe(primary);
  }, 120_000);

  test("upgrade under load: a new primary with new workers, the old ones exit, no request fails", async () => {
    const c = setup();
    expect((await c.start("start", "--workers", "2")).code).toBe(0);
    let primary = c.pid()!;
    let ws = await running(c, 2);
    const l = c.load();
    await Bun.sleep(300);
    for (const v of [2, 3]) {
      c.set("version", String(v));
      const u = await c.cli(["upgrade", "--pid-file", c.pidFile]);
      expect({ v, code: u.code, stderr: u.stderr }).toEqual({ v, code: 0, stderr: "" });
      const now = c.pid()!;
      expect(now).not.toBe(primary);
      expect(u.stdout).toContain(`pid ${primary} -> ${now}`);
      expect(alive(primary)).toBe(false);
      const fresh = await running(c, 2, 30_000);
      for (const w of fresh) {
        expect(ws.map((o) => o.pid)).not.toContain(w.pid);
        expect(ppid(w.pid)).toBe(now);
      }
      expect(await waitFor(() => ws.every((w) => !alive(w.pid)), 15_000)).toBe(true);
      for (let i = 0; i < 4; i++) expect(await get(c.port)).toStartWith(`v${v} worker `);
      expect(c.files("loaded").has(now)).toBe(false);
      primary = now;
      ws = fresh;
    }
    const res = await l.stop();
    expect(res.failed).toBe(0);
    expect(res.failures).toEqual({});
    expect(res.ok).toBeGreaterThan(100);
    expect((await c.cli(["stop", "--pid-file", c.pidFile])).code).toBe(0);
    for (const p of [primary, ...ws.map((w) => w.pid)]) expect(alive(p)).toBe(false);
  }, 120_000);

  test("HUP, INT, USR2 and QUIT sent to a worker are ignored by it; stop drains every worker and exits 0, nothing remains", async () => {
    const c = setup();
    expect((await c.start("start", "--workers", "2")).code).toBe(0);
    const primary = c.pid()!;
    const ws = await running(c, 2);
    const [w1, w2] = [pidOf(ws, 1), pidOf(ws, 2)];
    for (const sig of ["SIGHUP", "SIGINT", "SIGUSR2", "SIGQUIT"] as const) {
      process.kill(w1, sig);
      await Bun.sleep(1000);
      expect({ sig, alive: alive(w1) }).toEqual({ sig, alive: true });
      const now = await c.workers();
      expect({ sig, workers: now.map((w) => [w.id, w.pid, w.state, w.restarts]) }).toEqual({ sig, workers: [[1, w1, "running", 0], [2, w2, "running", 0]] });
      expect(c.pid()).toBe(primary);
    }
    const seen = await servingPids(c, [w1, w2]);
    expect(seen.has(w1)).toBe(true);
    expect(seen.has(w2)).toBe(true);
    // Nothing but the two workers ever ran the app.
    expect([...c.files("loaded").keys()].sort()).toEqual([w1, w2].sort());

    const stop = await c.cli(["stop", "--pid-file", c.pidFile]);
    expect(stop.code).toBe(0);
    for (const p of [primary, w1, w2]) expect({ pid: p, alive: alive(p) }).toEqual({ pid: p, alive: false });
    expect(childrenOf(primary)).toEqual([]);
    expect(existsSync(c.pidFile)).toBe(false);
    // Each worker ran its shutdown hooks (drained), the primary none.
    const down = c.files("shutdown");
    expect([...down.keys()].sort()).toEqual([w1, w2].sort());
  }, 90_000);
});
