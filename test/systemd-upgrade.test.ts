/**
 * Issue 13, part 4: upgrades and restarts under a real systemd 252 (booted
 * as PID 1 of a private namespace, test/systemd-ns.ts). The unit is the one
 * the daemon's own `unit` command prints (Type=notify, NotifyAccess=all,
 * FileDescriptorStoreMax=16), for test/fixtures/serve-app.ts, which serves
 * HTTP through ctx.serve. A load client (test/load.ts, in its own process on
 * the host: the network namespace is shared) hammers 127.0.0.1 meanwhile.
 *
 * - `upgrade` (run inside the namespace, against the unit's PID file):
 *   exits 0, the unit stays active throughout, MainPID follows the new pid,
 *   which serves the new version, the old pid is gone, no request fails.
 * - `systemctl restart` with the fd store refuses no request; without it
 *   (FileDescriptorStoreMax=0, the control) restarts do fail requests.
 * - A new version whose init throws: `upgrade` exits 1 with its message,
 *   the unit stays active on the old MainPID, no request fails.
 *
 * Workers (the unit `unit --workers 2` prints, ExecStart carrying
 * `--workers 2`): the primary is MainPID and the workers its children;
 * `systemctl reload` (SIGHUP to MainPID) rolls the workers over and
 * `upgrade` replaces primary and workers, under load, failing no request;
 * a worker killed with SIGKILL is replaced by the primary, not by systemd;
 * `systemctl stop` ends with Result=success, no SIGKILL, an empty cgroup.
 *
 * Pids here are the namespace's (what systemd, the PID file and the
 * responses say); they are read and checked inside it.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BUN, cleanupProcesses, freePort, ROOT, run, tempDir, waitFor } from "./helpers.ts";
import type { WorkerStatus } from "../src/control.ts";
import type { LoadResult } from "./load.ts";
import { getFresh, loadClient } from "./serve-case.ts";
import { bootSystemd, systemdSkipReason, type Systemd } from "./systemd-ns.ts";

cleanupProcesses();
const APP = join(ROOT, "test/fixtures/serve-app.ts");
const dir = tempDir("bd-sdup-");
const skip = systemdSkipReason();
if (skip) console.warn(`skipping the systemd upgrade tests: ${skip}`);

let sd: Systemd;
let n = 0;
/** The services the running test installed (whose journals a failure shows). */
let current: string[] = [];

interface Svc {
  unit: string;
  service: string;
  port: number;
  pidFile: string;
  /** Write (or, with undefined, remove) a file of BD_SERVE_DIR: how a test "deploys" a version. */
  set(file: string, text: string | undefined): void;
  /** The pid in the unit's PID file (inside the namespace), or undefined. */
  pid(): Promise<number | undefined>;
  /** `upgrade` run inside the namespace against the PID file. */
  upgrade(): Promise<{ code: number; stdout: string; stderr: string }>;
}

/**
 * A service of its own: the unit `unit` prints for serve-app, installed as
 * printed, plus a drop-in giving the fixture its environment (systemd hands
 * a service a clean one) and the drop-ins a test adds.
 */
async function service(tag: string, dropIns: Record<string, string> = {}, workers?: number): Promise<Svc> {
  n++;
  const unit = `bd-up-${tag}-${process.pid}-${n}`;
  const service = `${unit}.service`;
  current.push(service);
  const port = freePort();
  const pidFile = `/run/${unit}.pid`;
  const serveDir = join(dir, unit);
  mkdirSync(serveDir, { recursive: true });
  const printed = await run([BUN, APP, "unit", ...(workers ? ["--workers", String(workers)] : []), "--pid-file", pidFile], { env: { BD_NAME: unit } });
  if (printed.code !== 0) throw new Error(`unit failed (${printed.code}): ${printed.stderr}`);
  const text = printed.stdout;
  // The contract is about this unit as printed: these three lines are what make upgrades and the fd store work.
  expect(text).toContain("\nType=notify\n");
  expect(text).toContain("\nNotifyAccess=all\n");
  expect(text).toContain("\nFileDescriptorStoreMax=16\n");
  if (workers === undefined) expect(text).toMatch(/^ExecStart=\S+ \S+serve-app\.ts run --pid-file \S+$/m);
  else {
    // The unit must start the workers itself: `--workers N` (and the PID file) on its ExecStart.
    const exec = (/^ExecStart=(.*)$/m.exec(text)?.[1] ?? "").split(" ");
    expect(exec[1]).toEndWith("/serve-app.ts");
    expect(exec[2]).toBe("run");
    const opt = (name: string) => exec[exec.indexOf(name) + 1];
    expect(exec).toContain("--workers");
    expect(opt("--workers")).toBe(String(workers));
    expect(opt("--pid-file")).toBe(pidFile);
  }
  await sd.install(service, text);
  await sd.install(`${service}.d/env.conf`, `[Service]\nEnvironment=BD_SERVE_DIR=${serveDir} BD_PORT=${port} BD_NAME=${unit}\n`);
  for (const [name, body] of Object.entries(dropIns)) await sd.install(`${service}.d/${name}`, body);
  return {
    unit, service, port, pidFile,
    set(file, content) {
      const path = join(serveDir, file);
      if (content === undefined) rmSync(path, { force: true });
      else writeFileSync(path, content);
    },
    async pid() {
      const r = await sd.exec(["cat", pidFile]);
      const p = Number(r.stdout.trim());
      return r.code === 0 && p > 0 ? p : undefined;
    },
    upgrade: () => sd.exec(["env", `BD_NAME=${unit}`, BUN, APP, "upgrade", "--pid-file", pidFile], 90_000),
  };
}

/** systemctl show's ActiveState, SubState and MainPID in one call. */
async function show(service: string): Promise<{ ActiveState: string; SubState: string; MainPID: number }> {
  const out = (await sd.systemctl("show", "-p", "ActiveState", "-p", "SubState", "-p", "MainPID", service)).stdout;
  const kv = Object.fromEntries(out.split("\n").filter(Boolean).map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]));
  return { ActiveState: kv.ActiveState ?? "", SubState: kv.SubState ?? "", MainPID: Number(kv.MainPID ?? 0) };
}

/**
 * A pid inside the namespace: "gone" (no /proc entry), "zombie" (a dead
 * leader with no thread left, not reaped yet: gone too, as far as serving
 * goes), or its state letter.
 */
async function pidState(pid: number): Promise<string> {
  const r = await sd.exec(["sh", "-c", `s=$(cat /proc/${pid}/stat 2>/dev/null) || { echo gone; exit; }; t=$(ls /proc/${pid}/task 2>/dev/null | wc -l); s=\${s##*) }; s=\${s%% *}; if [ "$s" = Z ] && [ "$t" -le 1 ]; then echo zombie; else echo "$s"; fi`]);
  return r.stdout.trim();
}
const gone = (s: string) => s === "gone" || s === "zombie";

/** The load client in its own process until stop(); then its result. */
const startLoad = (port: number, o: { ms?: number; keepAlive?: number; fresh?: number } = {}) =>
  loadClient(port, { ms: o.ms ?? 300_000, keepAlive: o.keepAlive ?? 16, fresh: o.fresh ?? 8 });

/**
 * Samples the unit's state every ~100 ms until stop(), so that "active
 * throughout" is checked between the steps too, not only after them.
 */
function watchUnit(service: string): { stop(): Promise<Array<{ ActiveState: string; SubState: string; MainPID: number }>> } {
  const samples: Array<{ ActiveState: string; SubState: string; MainPID: number }> = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      samples.push(await show(service));
      await Bun.sleep(100);
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return samples;
    },
  };
}

/** On failure, the units' journals (systemd's lines about them and their output, with pids) go to the test's output. */
async function explained<T>(fn: () => Promise<T>): Promise<T> {
  current = [];
  try {
    return await fn();
  } catch (err) {
    for (const u of current) {
      const j = await sd.exec(["journalctl", "--no-pager", "-o", "short-monotonic", "-u", u]);
      console.log(`--- journal of ${u}:\n${j.stdout}`);
    }
    throw err;
  }
}

/** A test whose failure shows the journals of the services it installed. */
const sdTest = (name: string, fn: () => Promise<void>, ms: number) => test(name, () => explained(fn), ms);

/** One line for the test's output: what the load client counted in a phase. */
const summary = (phase: string, r: LoadResult) => console.log(`${phase}: ${r.failed} failed of ${r.ok + r.failed} (${r.retried} retried) ${JSON.stringify(r.failures)}`);

const get = async (port: number) => (await fetch(`http://127.0.0.1:${port}/`)).text();
/** Distinct pids that answered, from the load client's bodies ("v1 pid 42\n"). */
const pidsServed = (r: LoadResult) => new Set(Object.keys(r.bodies).map((b) => Number(/pid (\d+)/.exec(b)?.[1] ?? 0)).filter((p) => p > 0));

// One boot for the whole file (every describe below uses it).
beforeAll(async () => {
  if (!skip) sd = await bootSystemd();
}, 60_000);
afterAll(async () => {
  // SIGKILL of the namespace's PID 1: every service and process in it goes along.
  await sd?.kill();
});

describe.skipIf(!!skip)("upgrade and restart of the unit `unit` prints, under a real systemd, under load (issue 13)", () => {
  test("the boot left the host alone: the /tmp sentinel survives, /dev/log untouched", () => {
    expect(sd.hostIntact()).toEqual({ sentinel: true, devLog: "unchanged" });
  });

  sdTest("3 upgrades under load: upgrade exits 0, the unit stays active, MainPID is the new pid (the PID file's, serving the new version), the old pid is gone, no request fails", async () => {
    const s = await service("upgrade");
    expect((await sd.systemctl("start", s.service)).code).toBe(0);
    const first = await show(s.service);
    expect(first.ActiveState).toBe("active");
    expect(await s.pid()).toBe(first.MainPID);
    expect(await get(s.port)).toBe(`v1 pid ${first.MainPID}\n`);
    const pids = [first.MainPID];
    const load = startLoad(s.port);
    const watch = watchUnit(s.service);
    await Bun.sleep(500);
    for (let v = 2; v <= 4; v++) {
      const old = pids.at(-1)!;
      s.set("version", String(v));
      const u = await s.upgrade();
      expect({ code: u.code, stderr: u.stderr }).toEqual({ code: 0, stderr: "" });
      const now = (await s.pid())!;
      expect(now).not.toBe(old);
      expect(u.stdout).toContain(`pid ${old} -> ${now}`);
      const st = await show(s.service);
      expect(st.ActiveState).toBe("active");
      expect(st.MainPID).toBe(now);
      // upgrade exits 0 once the old process has exited.
      expect(gone(await pidState(old))).toBe(true);
      expect(gone(await pidState(now))).toBe(false);
      expect(await get(s.port)).toBe(`v${v} pid ${now}\n`);
      pids.push(now);
      await Bun.sleep(300);
    }
    const samples = await watch.stop();
    const res = await load.stop();
    summary("3 upgrades", res);
    expect(res.failed).toBe(0);
    expect(res.failures).toEqual({});
    expect(res.ok).toBeGreaterThan(0);
    // Every version answered the load client.
    expect([...pidsServed(res)].sort()).toEqual([...pids].sort());
    // Throughout: active/running, and systemd's main pid was always one of ours.
    expect(samples.length).toBeGreaterThan(0);
    expect(new Set(samples.map((x) => `${x.ActiveState}/${x.SubState}`))).toEqual(new Set(["active/running"]));
    for (const x of samples) expect(pids).toContain(x.MainPID);
    expect(await sd.prop(s.service, "NRestarts")).toBe("0");
    // systemd must take each new main pid for its own child. One it takes
    // for an alien ("Supervising process N which is not our child": MAINPID=
    // came while the old process, its parent, was alive) it does not wait
    // for at stop: SIGKILL right after SIGTERM (no drain, no shutdown hooks,
    // Result=signal). The journal line shows it for each upgrade; the stop
    // below shows what it costs (for the last one).
    const aliens = (await sd.journal(s.service)).split("\n").filter((l) => l.includes("which is not our child"));
    expect(aliens).toEqual([]);
    expect((await sd.systemctl("stop", s.service)).code).toBe(0);
    expect(await sd.prop(s.service, "ActiveState")).toBe("inactive");
    expect(await sd.prop(s.service, "Result")).toBe("success");
  }, 180_000);

  sdTest("systemctl restart x10 under load: with the fd store no request fails; without it (FileDescriptorStoreMax=0, the control) requests do fail", async () => {
    // Without StartLimitIntervalSec=0 the fifth restart within 10 s hits
    // systemd's default start limit (StartLimitBurst=5 per 10 s) and the unit
    // ends failed: the limit is systemd's, not what this test is about.
    const noLimit = "[Unit]\nStartLimitIntervalSec=0\n";
    const stored = await service("fdstore", { "limit.conf": noLimit });
    const bare = await service("nostore", { "limit.conf": noLimit, "nostore.conf": "[Service]\nFileDescriptorStoreMax=0\n" });
    const nStored = async (svc: Svc) => sd.prop(svc.service, "NFileDescriptorStore");

    const restarts = async (svc: Svc): Promise<{ res: LoadResult; pids: number[] }> => {
      expect((await sd.systemctl("start", svc.service)).code).toBe(0);
      const pids = [(await show(svc.service)).MainPID];
      expect(await get(svc.port)).toBe(`v1 pid ${pids[0]}\n`);
      const load = startLoad(svc.port);
      await Bun.sleep(500);
      for (let i = 0; i < 10; i++) {
        const r = await sd.systemctl("restart", svc.service);
        expect({ i, code: r.code, stderr: r.stderr }).toEqual({ i, code: 0, stderr: "" });
        const st = await show(svc.service);
        expect(st.ActiveState).toBe("active");
        expect(pids).not.toContain(st.MainPID);
        pids.push(st.MainPID);
        await Bun.sleep(300);
      }
      const res = await load.stop();
      summary(`systemctl restart x10, ${svc === stored ? "fd store" : "FileDescriptorStoreMax=0 (control)"}`, res);
      return { res, pids };
    };

    const withStore = await restarts(stored);
    // One fd, after 11 starts: each process after the first got the socket from the store (and did not put it in again).
    // systemd 252 has NFileDescriptorStore; an older one answers nothing and the check is skipped.
    const held = await nStored(stored);
    if (held !== "") expect(held).toBe("1");
    expect(withStore.res.failures).toEqual({});
    expect(withStore.res.failed).toBe(0);
    expect(withStore.res.ok).toBeGreaterThan(0);
    // The restarts happened under the load: more than one process answered it.
    expect(pidsServed(withStore.res).size).toBeGreaterThan(1);
    expect(await get(stored.port)).toBe(`v1 pid ${withStore.pids.at(-1)}\n`);
    expect(await sd.prop(stored.service, "NRestarts")).toBe("0");

    const control = await restarts(bare);
    const none = await nStored(bare);
    if (none !== "") expect(none).toBe("0");
    // The load client sees a closed port: the proof that the zero above could have been otherwise.
    expect(control.res.failed).toBeGreaterThan(0);
    expect(control.res.failures.refused ?? 0).toBeGreaterThan(0);

    for (const svc of [stored, bare]) {
      expect((await sd.systemctl("stop", svc.service)).code).toBe(0);
      expect(await sd.prop(svc.service, "Result")).toBe("success");
    }
  }, 240_000);

  sdTest("a new version whose init throws: upgrade exits 1 with its message, the unit stays active on the old MainPID, no request fails", async () => {
    const s = await service("failing");
    expect((await sd.systemctl("start", s.service)).code).toBe(0);
    const old = (await show(s.service)).MainPID;
    expect(await s.pid()).toBe(old);
    const load = startLoad(s.port);
    const watch = watchUnit(s.service);
    await Bun.sleep(500);
    s.set("version", "2");
    s.set("fail", "the database is down");
    const u = await s.upgrade();
    expect(u.code).toBe(1);
    expect(u.stderr).toContain("version 2 refuses to start: the database is down");
    expect(u.stderr).toContain(`pid ${old} still serving`);
    // Give systemd time to act on anything the failed process may have told it.
    await Bun.sleep(1500);
    const samples = await watch.stop();
    const res = await load.stop();
    summary("a failing upgrade", res);
    const st = await show(s.service);
    expect(st.ActiveState).toBe("active");
    expect(st.MainPID).toBe(old);
    expect(await s.pid()).toBe(old);
    expect(new Set(samples.map((x) => `${x.ActiveState}/${x.SubState}/${x.MainPID}`))).toEqual(new Set([`active/running/${old}`]));
    expect(res.failed).toBe(0);
    expect(res.failures).toEqual({});
    expect(res.ok).toBeGreaterThan(0);
    expect(await get(s.port)).toBe(`v1 pid ${old}\n`);
    // Fixed, the next upgrade goes through, and systemd follows it.
    s.set("fail", undefined);
    const again = await s.upgrade();
    expect(again.code).toBe(0);
    const now = (await s.pid())!;
    expect(now).not.toBe(old);
    expect((await show(s.service)).MainPID).toBe(now);
    expect(await get(s.port)).toBe(`v2 pid ${now}\n`);
    expect((await sd.systemctl("stop", s.service)).code).toBe(0);
    expect(await sd.prop(s.service, "Result")).toBe("success");
  }, 120_000);
});

// ---------------------------------------------------------------------------
// Workers under systemd: the unit `unit --workers 2` prints. The primary is
// the main pid; the workers are its children, in the unit's cgroup.

/** One worker as `status --json` lists it. */
type WorkerInfo = WorkerStatus;
interface WorkersStatus {
  code: number;
  state: string;
  pid: number | null;
  /** Sorted by id; [] when status lists none. */
  workers: WorkerInfo[];
}

/** `status --json`, run inside the namespace against the unit's PID file. */
async function statusIn(s: Svc): Promise<WorkersStatus> {
  const r = await sd.exec(["env", `BD_NAME=${s.unit}`, BUN, APP, "status", "--json", "--pid-file", s.pidFile], 60_000);
  let report: { state: string; pid: number | null; workers: WorkerInfo[] | null };
  try {
    report = JSON.parse(r.stdout);
  } catch {
    throw new Error(`status --json printed no JSON (exit ${r.code}): ${r.stdout} ${r.stderr}`);
  }
  return { code: r.code, state: report.state, pid: report.pid, workers: [...(report.workers ?? [])].sort((a, b) => a.id - b.id) };
}

/** Poll status --json until it lists 2 running workers that `accept` takes; throws with the last answer otherwise. */
async function twoRunning(s: Svc, accept: (st: WorkersStatus) => boolean = () => true, ms = 60_000): Promise<WorkersStatus> {
  let last: WorkersStatus | undefined;
  const ok = await waitFor(async () => {
    last = await statusIn(s);
    return last.workers.length === 2 && last.workers.every((w) => w.state === "running") && accept(last);
  }, ms, 250);
  if (!ok) throw new Error(`status --json did not list 2 running workers as expected within ${ms} ms: ${JSON.stringify(last)}`);
  return last!;
}

const workerPid = (st: WorkersStatus, id: number) => st.workers.find((w) => w.id === id)?.pid ?? 0;

/** PPid of a pid inside the namespace (0 when it is gone). */
async function ppidIn(pid: number): Promise<number> {
  const r = await sd.exec(["awk", "/^PPid:/ { print $2 }", `/proc/${pid}/status`]);
  return Number(r.stdout.trim()) || 0;
}


/** Fresh-connection load rounds (2 s each, at most 5) until every pid in `want` has answered; the pids that did. */
async function answering(port: number, want: number[]): Promise<Set<number>> {
  const got = new Set<number>();
  for (let round = 0; round < 5 && !want.every((p) => got.has(p)); round++) {
    const res = await startLoad(port, { ms: 2000, keepAlive: 0, fresh: 8 }).done;
    expect(res.failed).toBe(0);
    for (const p of pidsServed(res)) got.add(p);
  }
  return got;
}

/**
 * The directory of a unit's cgroup (systemctl show's ControlGroup) while it
 * exists: under /sys/fs/cgroup on a unified (v2) machine, under its
 * `unified` (hybrid) or `systemd` (legacy v1) hierarchy otherwise.
 */
async function cgroupDir(cg: string): Promise<string | undefined> {
  for (const base of ["/sys/fs/cgroup", "/sys/fs/cgroup/unified", "/sys/fs/cgroup/systemd"]) {
    if ((await sd.exec(["test", "-f", `${base}${cg}/cgroup.procs`])).code === 0) return `${base}${cg}`;
  }
  return undefined;
}

/** The pids listed in a cgroup's cgroup.procs (read inside the namespace: its pids), or undefined when the cgroup is gone. */
async function cgroupProcs(dir: string): Promise<number[] | undefined> {
  const r = await sd.exec(["sh", "-c", `cat '${dir}/cgroup.procs' 2>/dev/null || echo gone`]);
  const out = r.stdout.trim();
  if (out === "gone") return undefined;
  return out.split(/\s+/).filter(Boolean).map(Number);
}

/**
 * Start a workers unit: active, MainPID the PID file's pid, status lists 2
 * running workers whose parent is MainPID. Returns the primary and status.
 */
async function startWorkers(s: Svc): Promise<{ primary: number; st: WorkersStatus }> {
  const r = await sd.systemctl("start", s.service);
  expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: "" });
  const sh = await show(s.service);
  expect(sh.ActiveState).toBe("active");
  expect(sh.SubState).toBe("running");
  const primary = sh.MainPID;
  expect(primary).toBeGreaterThan(1);
  expect(await s.pid()).toBe(primary);
  // The daemon is ready when every worker is: status lists them running at once.
  const st = await statusIn(s);
  expect(st.code).toBe(0);
  expect(st.state).toBe("running");
  expect(st.pid).toBe(primary);
  expect(st.workers.map((w) => [w.id, w.state, w.restarts])).toEqual([[1, "running", 0], [2, "running", 0]]);
  for (const w of st.workers) {
    expect(w.pid).not.toBe(primary);
    expect({ worker: w.id, ppid: await ppidIn(w.pid) }).toEqual({ worker: w.id, ppid: primary });
  }
  return { primary, st };
}

/**
 * systemctl stop, as the contract has it: exit 0, inactive with
 * Result=success, no SIGKILL in the unit's journal (neither systemd's
 * "Killing process N ... with signal SIGKILL" for a leftover nor the
 * primary's for a worker that would not drain), the unit's cgroup empty
 * (or gone), every pid seen gone. `seen`: every process of the unit the
 * test saw.
 */
async function stopChecked(s: Svc, seen: number[], label: string): Promise<void> {
  const cg = await sd.prop(s.service, "ControlGroup");
  expect({ label, cg }).not.toEqual({ label, cg: "" });
  // The oracle must see the unit's processes while it runs, or "empty" below proves nothing.
  const dir = await cgroupDir(cg);
  expect({ label, cg, found: dir !== undefined }).toEqual({ label, cg, found: true });
  const before = await cgroupProcs(dir!);
  expect({ label, readable: before !== undefined }).toEqual({ label, readable: true });
  const live: number[] = [];
  for (const p of seen) if (!gone(await pidState(p))) live.push(p);
  for (const p of live) expect({ label, pid: p, inCgroup: before!.includes(p) }).toEqual({ label, pid: p, inCgroup: true });
  const r = await sd.systemctl("stop", s.service);
  expect({ label, code: r.code, stderr: r.stderr }).toEqual({ label, code: 0, stderr: "" });
  expect({ label, ActiveState: await sd.prop(s.service, "ActiveState"), Result: await sd.prop(s.service, "Result") }).toEqual({ label, ActiveState: "inactive", Result: "success" });
  // From systemd's "Stopping" on (a test's own kill -9 before it is logged too, and is not the stop's).
  const lines = (await sd.journal(s.service)).split("\n");
  const from = lines.findLastIndex((l) => l.startsWith(`Stopping ${s.service}`));
  expect({ label, stoppingLogged: from >= 0 }).toEqual({ label, stoppingLogged: true });
  const kills = lines.slice(from).filter((l) => /SIGKILL|Killing process/.test(l));
  expect({ label, kills }).toEqual({ label, kills: [] });
  const after = await cgroupProcs(dir!);
  expect({ label, left: after ?? [] }).toEqual({ label, left: [] });
  const states: Record<number, string> = {};
  for (const p of seen) states[p] = gone(await pidState(p)) ? "gone" : await pidState(p);
  expect({ label, states }).toEqual({ label, states: Object.fromEntries(seen.map((p) => [p, "gone"])) });
}

describe.skipIf(!!skip)("workers under a real systemd: the unit `unit --workers 2` prints (issue 13)", () => {
  const WORKERS = 2;
  const noLimit = { "limit.conf": "[Unit]\nStartLimitIntervalSec=0\n" };

  sdTest("1. start: the unit becomes active, MainPID is the primary (the PID file's pid), status --json lists 2 running workers whose parent is MainPID, both answer", async () => {
    const s = await service("wk-start", noLimit, WORKERS);
    const { primary, st } = await startWorkers(s);
    const pids = st.workers.map((w) => w.pid);
    const got = await answering(s.port, pids);
    expect([...got].sort()).toEqual([...pids].sort());
    // The primary serves nothing itself: every answer names a worker.
    expect(got.has(primary)).toBe(false);
    expect(pids).toContain(Number(/pid (\d+)/.exec(await getFresh(s.port))?.[1]));
    expect(await sd.prop(s.service, "NRestarts")).toBe("0");
    await stopChecked(s, [primary, ...pids], "stop after start");
  }, 120_000);

  sdTest("2. systemctl reload x5 under load (a rolling reload): 0 failed requests, MainPID unchanged, every worker pid new after each, the new version served", async () => {
    const s = await service("wk-reload", noLimit, WORKERS);
    const { primary, st } = await startWorkers(s);
    let ws = st;
    const seen = new Set(ws.workers.map((w) => w.pid));
    const load = startLoad(s.port);
    const watch = watchUnit(s.service);
    await Bun.sleep(500);
    for (let v = 2; v <= 6; v++) {
      const old = ws.workers.map((w) => w.pid);
      s.set("version", String(v));
      const r = await sd.systemctl("reload", s.service);
      expect({ v, code: r.code, stderr: r.stderr }).toEqual({ v, code: 0, stderr: "" });
      // The reload is over when both workers are new ones, running; and systemd is back to active (READY=1 after RELOADING=1).
      ws = await twoRunning(s, (x) => x.workers.every((w) => !seen.has(w.pid)));
      expect(await waitFor(async () => (await show(s.service)).ActiveState === "active", 30_000, 200)).toBe(true);
      expect({ v, ids: ws.workers.map((w) => [w.id, w.restarts]) }).toEqual({ v, ids: [[1, 0], [2, 0]] });
      expect(ws.pid).toBe(primary);
      const sh = await show(s.service);
      expect({ v, MainPID: sh.MainPID, pidFile: await s.pid() }).toEqual({ v, MainPID: primary, pidFile: primary });
      for (const w of ws.workers) {
        seen.add(w.pid);
        expect({ v, worker: w.id, ppid: await ppidIn(w.pid) }).toEqual({ v, worker: w.id, ppid: primary });
      }
      // The old workers drained and exited.
      expect(await waitFor(async () => (await Promise.all(old.map(pidState))).every(gone), 15_000, 200)).toBe(true);
      const now = ws.workers.map((w) => w.pid);
      for (let i = 0; i < 4; i++) {
        const body = await getFresh(s.port);
        expect(body).toStartWith(`v${v} pid `);
        expect(now).toContain(Number(/pid (\d+)/.exec(body)?.[1]));
      }
      await Bun.sleep(300);
    }
    const samples = await watch.stop();
    const res = await load.stop();
    summary("workers: systemctl reload x5", res);
    console.log(`workers: systemctl reload x5: unit states sampled ${JSON.stringify([...new Set(samples.map((x) => `${x.ActiveState}/${x.SubState}`))])}`);
    expect(res.failed).toBe(0);
    expect(res.failures).toEqual({});
    expect(res.ok).toBeGreaterThan(0);
    // Every version answered the load client, and only workers did.
    const versions = new Set(Object.keys(res.bodies).map((b) => /^v(\d+) /.exec(b)?.[1]));
    expect([...versions].sort()).toEqual(["1", "2", "3", "4", "5", "6"]);
    for (const p of pidsServed(res)) expect(seen.has(p)).toBe(true);
    // Throughout: systemd's main pid was the primary, the unit active (reloading while a reload ran).
    expect(samples.length).toBeGreaterThan(0);
    for (const x of samples) expect(x.MainPID).toBe(primary);
    for (const x of samples) expect(["active/running", "reloading/reload"]).toContain(`${x.ActiveState}/${x.SubState}`);
    expect(await sd.prop(s.service, "NRestarts")).toBe("0");
    await stopChecked(s, [primary, ...seen], "stop after 5 reloads");
  }, 240_000);

  sdTest("3. upgrade x3 under load: exit 0, 0 failed requests, MainPID is the new primary, its workers' parent is the new MainPID, systemd never supervises an alien, old primary and workers gone", async () => {
    const s = await service("wk-upgrade", noLimit, WORKERS);
    const first = await startWorkers(s);
    let primary = first.primary;
    let ws = first.st;
    const primaries = [primary];
    const seen = new Set(ws.workers.map((w) => w.pid));
    const load = startLoad(s.port);
    const watch = watchUnit(s.service);
    await Bun.sleep(500);
    for (let v = 2; v <= 4; v++) {
      const old = { primary, workers: ws.workers.map((w) => w.pid) };
      s.set("version", String(v));
      const u = await s.upgrade();
      expect({ v, code: u.code, stderr: u.stderr }).toEqual({ v, code: 0, stderr: "" });
      const now = (await s.pid())!;
      expect(primaries).not.toContain(now);
      expect(u.stdout).toContain(`pid ${old.primary} -> ${now}`);
      const sh = await show(s.service);
      expect({ v, ActiveState: sh.ActiveState, MainPID: sh.MainPID }).toEqual({ v, ActiveState: "active", MainPID: now });
      // upgrade exits 0 once the old primary has exited.
      expect({ v, oldPrimary: gone(await pidState(old.primary)) }).toEqual({ v, oldPrimary: true });
      ws = await twoRunning(s, (x) => x.workers.every((w) => !seen.has(w.pid)));
      expect(ws.pid).toBe(now);
      for (const w of ws.workers) {
        seen.add(w.pid);
        expect({ v, worker: w.id, ppid: await ppidIn(w.pid) }).toEqual({ v, worker: w.id, ppid: now });
      }
      // The new primary is systemd's child (through the relay), so systemd waits for it.
      expect({ v, primaryPpid: await ppidIn(now) }).toEqual({ v, primaryPpid: 1 });
      expect(await waitFor(async () => (await Promise.all(old.workers.map(pidState))).every(gone), 15_000, 200)).toBe(true);
      const pids = ws.workers.map((w) => w.pid);
      for (let i = 0; i < 4; i++) {
        const body = await getFresh(s.port);
        expect(body).toStartWith(`v${v} pid `);
        expect(pids).toContain(Number(/pid (\d+)/.exec(body)?.[1]));
      }
      primary = now;
      primaries.push(now);
      await Bun.sleep(300);
    }
    const samples = await watch.stop();
    const res = await load.stop();
    summary("workers: 3 upgrades", res);
    expect(res.failed).toBe(0);
    expect(res.failures).toEqual({});
    expect(res.ok).toBeGreaterThan(0);
    const versions = new Set(Object.keys(res.bodies).map((b) => /^v(\d+) /.exec(b)?.[1]));
    expect([...versions].sort()).toEqual(["1", "2", "3", "4"]);
    for (const p of pidsServed(res)) expect(seen.has(p)).toBe(true);
    expect(samples.length).toBeGreaterThan(0);
    expect(new Set(samples.map((x) => `${x.ActiveState}/${x.SubState}`))).toEqual(new Set(["active/running"]));
    for (const x of samples) expect(primaries).toContain(x.MainPID);
    expect(await sd.prop(s.service, "NRestarts")).toBe("0");
    const aliens = (await sd.journal(s.service)).split("\n").filter((l) => l.includes("which is not our child"));
    expect(aliens).toEqual([]);
    // No primary or worker but the last ones is left.
    for (const p of [...primaries.slice(0, -1), ...[...seen].filter((p) => !ws.workers.some((w) => w.pid === p))]) {
      expect({ pid: p, gone: gone(await pidState(p)) }).toEqual({ pid: p, gone: true });
    }
    await stopChecked(s, [...primaries, ...seen], "stop after 3 upgrades");
  }, 240_000);

  sdTest("4. kill -9 of a worker: the unit stays active, MainPID unchanged, the worker is replaced (restarts 1), requests keep being answered", async () => {
    const keepAlive = 16;
    const fresh = 8;
    const s = await service("wk-kill", noLimit, WORKERS);
    const { primary, st } = await startWorkers(s);
    const [w1, w2] = [workerPid(st, 1), workerPid(st, 2)];
    const load = startLoad(s.port, { keepAlive, fresh });
    const watch = watchUnit(s.service);
    await Bun.sleep(1000);
    const k = await sd.exec(["kill", "-9", String(w1)]);
    expect({ code: k.code, stderr: k.stderr }).toEqual({ code: 0, stderr: "" });
    const after = await twoRunning(s, (x) => workerPid(x, 1) !== w1);
    const n1 = workerPid(after, 1);
    expect(after.workers.find((w) => w.id === 1)).toMatchObject({ restarts: 1, state: "running" });
    expect(after.workers.find((w) => w.id === 2)).toMatchObject({ pid: w2, restarts: 0, state: "running" });
    expect(after.pid).toBe(primary);
    expect(await ppidIn(n1)).toBe(primary);
    expect(gone(await pidState(w1))).toBe(true);
    // Let the load client talk to the replacement for a while.
    await Bun.sleep(1500);
    const samples = await watch.stop();
    const res = await load.stop();
    summary("workers: kill -9 of a worker", res);
    // Only requests in flight on the dead worker may fail; the socket never closes.
    expect(res.failures.refused).toBeUndefined();
    expect(res.failed).toBeLessThanOrEqual(keepAlive + fresh);
    expect(res.ok).toBeGreaterThan(0);
    // Answered after the kill too: by the replacement and the other worker.
    const got = await answering(s.port, [n1, w2]);
    expect({ n1: got.has(n1), w2: got.has(w2) }).toEqual({ n1: true, w2: true });
    expect(samples.length).toBeGreaterThan(0);
    expect(new Set(samples.map((x) => `${x.ActiveState}/${x.SubState}/${x.MainPID}`))).toEqual(new Set([`active/running/${primary}`]));
    const sh = await show(s.service);
    expect({ ActiveState: sh.ActiveState, MainPID: sh.MainPID, pidFile: await s.pid() }).toEqual({ ActiveState: "active", MainPID: primary, pidFile: primary });
    // systemd restarted nothing: the primary replaced the worker.
    expect(await sd.prop(s.service, "NRestarts")).toBe("0");
    await stopChecked(s, [primary, w1, n1, w2], "stop after kill -9");
  }, 150_000);

  sdTest("5. systemctl stop: inactive with Result=success, no SIGKILL in the journal, no process of the unit left (its cgroup is empty or gone)", async () => {
    const s = await service("wk-stop", noLimit, WORKERS);
    const { primary, st } = await startWorkers(s);
    const pids = [primary, ...st.workers.map((w) => w.pid)];
    // Stopped while serving: a load client runs through the stop (what it counts is not the contract here).
    const load = startLoad(s.port, { keepAlive: 4, fresh: 2 });
    await Bun.sleep(500);
    await stopChecked(s, pids, "stop");
    await load.stop();
    expect(await sd.prop(s.service, "MainPID")).toBe("0");
    // The primary removed its PID file on the way out.
    expect((await sd.exec(["test", "-e", s.pidFile])).code).toBe(1);
  }, 120_000);
});
describe.skipIf(!!skip)("after every test of the file", () => {
  test("after it all the host is still intact", () => {
    expect(sd.hostIntact()).toEqual({ sentinel: true, devLog: "unchanged" });
  });
});
