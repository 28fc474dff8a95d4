/**
 * 12. Churn: requests per second, and the requests that failed, while the
 * server is being replaced, beside the same setups left alone.
 *
 * Replaced: bun-daemon `upgrade` (ctx.serve) and `restart`; node:cluster
 * under Bun (rolling restarts, then worker crashes); pm2 7's cluster-mode
 * `pm2 reload`; bun-daemon's own workers (rolling `reload`, worker crashes).
 * Left alone: a bare Bun.serve, the serve-app daemon (no workers,
 * `--workers 1`, `--workers 2`), the node:cluster primary, the pm2 cluster.
 * Each window is one setup under test/load.ts's client, run in its own
 * process so it shares no event loop with the servers or with us.
 *
 * BENCH_CHURN_MS=N sets the load window (default 10 000 ms); the counts of
 * replacements scale with it (15 per 10 s stay 15 per 10 s).
 * BENCH_CHURN_ONLY=daemon,upgrade-5 runs only the variants named.
 */
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  BARE, BUN, FIXTURES, ROOT, Samples, childEnv, fmt, freePort, interleave, num, runsOf, startedPid, stopChild, stopPid, summarize, table,
  timed, tmpFile, tracked, waitPort,
  type Derived, type Options, type Section, type Step,
} from "../harness.ts";
import type { LoadResult } from "../../../test/load.ts";

const APP = join(ROOT, "test/fixtures/serve-app.ts");
const LOAD = join(ROOT, "test/load.ts");
const PLAIN = join(FIXTURES, "churn-bare.ts");
const CLUSTER = join(FIXTURES, "churn-cluster.ts");

/** One load window, ms (BENCH_CHURN_MS for short development runs). */
const WINDOW_MS = Number(process.env.BENCH_CHURN_MS ?? 10_000);
/** The uncounted warm-up round's window. */
const WARM_MS = Math.min(2000, WINDOW_MS);
/** The load: concurrent keep-alive clients and clients that open a connection per request (test/upgrade.test.ts's mix). */
const KEEP_ALIVE = 16;
const FRESH = 8;
/** Workers wherever there are workers. */
const WORKERS = 2;
/** Replacements per 10 s window. */
const COUNTS = { upgrade: 15, restart: 15, clusterRoll: 5, clusterCrash: 10, pm2Reload: 15, workersReload: 15, workersCrash: 10, atClusterPace: 5 };
/** BENCH_CHURN_ONLY=key,key: run only these variants (their references too, if named). */
const ONLY = process.env.BENCH_CHURN_ONLY?.split(",").filter(Boolean);
/** Events scaled to a window: the same rate as N per 10 s, at least one. */
const scaled = (n: number, ms: number) => Math.max(1, Math.round((n * ms) / 10_000));

// ---------------------------------------------------------------- processes

interface Ran {
  ms: number;
  code: number;
  stdout: string;
  stderr: string;
}

/** A command to completion without blocking our event loop (killed after 90 s). */
async function cmd(argv: string[], env: Record<string, string> = {}): Promise<Ran> {
  const t0 = performance.now();
  const p = Bun.spawn(argv, { cwd: ROOT, env: { ...childEnv, ...env }, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  tracked.add(p.pid);
  const timer = setTimeout(() => p.kill("SIGKILL"), 90_000);
  try {
    const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
    return { ms: performance.now() - t0, code, stdout, stderr };
  } finally {
    clearTimeout(timer);
    tracked.delete(p.pid);
  }
}

const said = (r: Ran) => JSON.stringify((r.stdout + r.stderr).trim().split("\n").slice(-3).join(" | "));

function statFields(pid: number): string[] | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, "utf8");
    return s.slice(s.lastIndexOf(")") + 2).split(" ");
  } catch {
    return undefined;
  }
}

/** Running (not a zombie, not gone). */
function running(pid: number): boolean {
  const st = statFields(pid)?.[0];
  return st !== undefined && st !== "Z" && st !== "X";
}

const ppidOf = (pid: number) => Number(statFields(pid)?.[1] ?? 0);
const startTime = (pid: number) => Number(statFields(pid)?.[19] ?? 0);

/** The running children of `pid` (every thread's list), oldest first. */
function childrenOf(pid: number): number[] {
  const out = new Set<number>();
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return [];
  }
  for (const t of tasks) {
    try {
      for (const c of readFileSync(`/proc/${pid}/task/${t}/children`, "utf8").split(" ")) if (c) out.add(Number(c));
    } catch {}
  }
  return [...out].filter(running).sort((a, b) => startTime(a) - startTime(b));
}

/**
 * The worker processes of one primary, as seen from outside. Every pid seen
 * is tracked (stopped on the way out) while it is still the primary's child
 * or, the primary gone, our own (we are the run's subreaper); never another's.
 */
class Workers {
  readonly seen = new Set<number>();
  constructor(readonly primary: () => number, private readonly match: (pid: number) => boolean = () => true) {}

  list(): number[] {
    const kids = childrenOf(this.primary()).filter(this.match);
    for (const k of kids) {
      this.seen.add(k);
      tracked.add(k);
    }
    // One that is no longer the primary's child is not stopped by pid on the way out: its pid may be reused.
    for (const k of this.seen) if (!kids.includes(k)) tracked.delete(k);
    return kids;
  }

  /** Stop what is left of them (SIGTERM, then SIGKILL), only while they are still ours or the primary's. */
  stopLeft(): void {
    const parents = new Set([this.primary(), process.pid]);
    for (const pid of this.seen) {
      if (running(pid) && parents.has(ppidOf(pid))) stopPid(pid);
      tracked.delete(pid);
    }
    this.seen.clear();
  }
}

const cmdlineHas = (word: string) => (pid: number) => {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(word);
  } catch {
    return false;
  }
};

async function until(cond: () => boolean, ms: number, what: () => string): Promise<void> {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) throw new Error(what());
    await Bun.sleep(5);
  }
}

/** Until process `pid` answers an HTTP request on `port` (new connections, so any process may take one). */
async function answeredBy(port: number, pid: number, ms: number): Promise<void> {
  const end = performance.now() + ms;
  let last = "";
  while (performance.now() < end) {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/`, { headers: { connection: "close" }, signal: AbortSignal.timeout(2000) });
      last = await res.text();
      if (Number(/pid (\d+)/.exec(last)?.[1]) === pid) return;
    } catch (err) {
      last = (err as Error).message;
    }
    await Bun.sleep(2);
  }
  throw new Error(`pid ${pid} never answered on port ${port} within ${ms} ms (last: ${JSON.stringify(last.trim())})`);
}

/** Lines a child prints on stdout, read as they come. */
class Tail {
  readonly lines: string[] = [];
  ended = false;
  constructor(stream: ReadableStream<Uint8Array>) {
    void this.pump(stream);
  }

  private async pump(stream: ReadableStream<Uint8Array>): Promise<void> {
    const dec = new TextDecoder();
    let buf = "";
    try {
      for await (const chunk of stream) {
        buf += dec.decode(chunk, { stream: true });
        for (let i = buf.indexOf("\n"); i >= 0; i = buf.indexOf("\n")) {
          this.lines.push(buf.slice(0, i));
          buf = buf.slice(i + 1);
        }
      }
    } finally {
      this.ended = true;
    }
  }

  async waitFor(re: RegExp, ms: number): Promise<string> {
    let hit: string | undefined;
    await until(() => (hit = this.lines.find((l) => re.test(l))) !== undefined || this.ended, ms, () => `never printed ${re} (printed: ${JSON.stringify(this.lines.slice(-3))})`);
    if (hit === undefined) throw new Error(`exited without printing ${re} (printed: ${JSON.stringify(this.lines.slice(-3))})`);
    return hit;
  }
}

// ---------------------------------------------------------------- setups

/** One running setup: where it listens, how it is replaced (if it is), how it stops. */
interface Running {
  port: number;
  event?: (i: number) => Promise<void>;
  stop(): Promise<void>;
}

/** Thrown when a setup cannot run at all here: the variant is skipped, with this as the reason. */
class Unavailable extends Error {}

let seq = 0;

/** test/fixtures/serve-app.ts as a daemon (`start`), optionally with `--workers N`. */
async function serveApp(workers?: number) {
  const name = `churn${process.pid}x${++seq}`;
  const port = freePort();
  const dir = tmpFile(name);
  mkdirSync(dir);
  const pidFile = join(dir, "pid");
  const log = join(dir, "log");
  // JOURNAL_STREAM: the daemon's log goes to its --log-file, not to a journal we happen to run under.
  const env = { BD_SERVE_DIR: dir, BD_PORT: String(port), BD_NAME: name, JOURNAL_STREAM: "" };
  const cli = (...args: string[]) => cmd([BUN, APP, ...args, "--pid-file", pidFile], env);
  const extra = workers === undefined ? [] : ["--workers", String(workers)];
  const r = await cli("start", "--log-file", log, ...extra);
  if (r.code !== 0) {
    const msg = `\`serve-app.ts start ${extra.join(" ")}\` exited ${r.code}: ${said(r)}`;
    throw workers === undefined ? new Error(msg) : new Unavailable(msg);
  }
  // The daemon is our child (we are the run's subreaper), and so is each pid that replaces it once
  // the one before has exited: stopPid() after its exit only reaps it, and no pid is signalled after that.
  let pid = startedPid(r.stdout);
  const readPid = (): number => {
    const p = Number(readFileSync(pidFile, "utf8").trim());
    if (!(p > 0)) throw new Error(`no pid in ${pidFile}`);
    if (p !== pid) tracked.add(p);
    return p;
  };
  const kids = new Workers(() => pid);
  await waitPort(port);
  if (workers !== undefined) {
    try {
      await until(() => kids.list().length >= workers, 10_000, () => `\`start --workers ${workers}\` is ready, but pid ${pid} has ${kids.list().length} child processes after 10 s, not ${workers}`);
    } catch (err) {
      await cli("stop");
      stopPid(pid);
      kids.stopLeft();
      throw new Unavailable((err as Error).message);
    }
  }
  const version = (v: number) => writeFileSync(join(dir, "version"), String(v));
  /** The daemon's last log lines, for an error message. */
  const logTail = () => {
    try {
      return ` (its log: ${JSON.stringify(readFileSync(log, "utf8").trim().split("\n").slice(-3).join(" | "))})`;
    } catch {
      return "";
    }
  };
  return {
    port,
    pid: () => pid,
    kids,
    cli,
    log,
    version,
    logTail,
    readPid,
    setPid(p: number) {
      pid = p;
    },
    async stop() {
      const s = await cli("stop");
      stopPid(pid);
      kids.stopLeft();
      if (s.code !== 0) throw new Error(`serve-app.ts stop exited ${s.code}: ${said(s)}`);
    },
  };
}

type ServeApp = Awaited<ReturnType<typeof serveApp>>;

/** kill -9 the oldest worker; done once its replacement answers on the port. */
async function crashOne(kids: Workers, n: number, port: number): Promise<void> {
  const before = kids.list();
  const victim = before[0];
  if (victim === undefined || before.length < n) throw new Error(`${before.length} workers before the crash, not ${n}`);
  process.kill(victim, "SIGKILL");
  let fresh: number | undefined;
  await until(
    () => {
      const now = kids.list().filter((p) => p !== victim);
      fresh = now.find((p) => !before.includes(p));
      return now.length >= n && fresh !== undefined;
    },
    15_000,
    () => `no replacement for worker ${victim} within 15 s (workers now: ${kids.list().join(" ") || "none"})`,
  );
  await answeredBy(port, fresh!, 15_000);
}

/** After a rolling replacement: every worker is new, and there are `n`. */
async function allReplaced(kids: Workers, before: number[], n: number, what: string): Promise<void> {
  await until(
    () => {
      const now = kids.list();
      return now.length === n && now.every((p) => !before.includes(p));
    },
    15_000,
    () => `${what}: workers before ${before.join(" ")}, after 15 s ${kids.list().join(" ")}`,
  );
}

const setups = {
  async plain(): Promise<Running> {
    const port = freePort();
    const proc = Bun.spawn([BUN, PLAIN], { cwd: ROOT, env: { ...childEnv, CHURN_PORT: String(port) }, stdin: "ignore", stdout: "pipe", stderr: Bun.file(tmpFile("churn-bare.err")) });
    tracked.add(proc.pid);
    await new Tail(proc.stdout).waitFor(/^READY\b/, 30_000);
    await waitPort(port);
    return { port, stop: () => stopChild(proc) };
  },

  async daemon(workers?: number): Promise<Running> {
    const d = await serveApp(workers);
    return { port: d.port, stop: () => d.stop() };
  },

  async upgrade(): Promise<Running> {
    const d = await serveApp();
    return {
      port: d.port,
      async event(i) {
        const old = d.pid();
        d.version(i + 2);
        const r = await d.cli("upgrade");
        const now = d.readPid();
        if (r.code !== 0 || now === old) throw new Error(`upgrade exited ${r.code} (pid ${old} -> ${now}): ${said(r)}${d.logTail()}`);
        if (running(old)) throw new Error(`upgrade exited 0 but the old pid ${old} still runs`);
        d.setPid(now);
        stopPid(old); // reaps it: we are its subreaper
      },
      stop: () => d.stop(),
    };
  },

  async restart(): Promise<Running> {
    const d = await serveApp();
    return {
      port: d.port,
      async event(i) {
        const old = d.pid();
        d.version(i + 2);
        const r = await d.cli("restart", "--log-file", d.log);
        if (r.code !== 0) throw new Error(`restart exited ${r.code}: ${said(r)}${d.logTail()}`);
        const now = d.readPid();
        if (now === old) throw new Error(`restart exited 0 but the PID file still names ${old}`);
        d.setPid(now);
        stopPid(old);
      },
      stop: () => d.stop(),
    };
  },

  async workersReload(): Promise<Running> {
    const d: ServeApp = await serveApp(WORKERS);
    return {
      port: d.port,
      async event(i) {
        const before = d.kids.list();
        d.version(i + 2);
        const r = await d.cli("reload");
        if (r.code !== 0) throw new Error(`reload exited ${r.code}: ${said(r)}${d.logTail()}`);
        await allReplaced(d.kids, before, WORKERS, "reload exited 0 but not every worker was replaced");
      },
      stop: () => d.stop(),
    };
  },

  async workersCrash(): Promise<Running> {
    const d = await serveApp(WORKERS);
    return { port: d.port, event: () => crashOne(d.kids, WORKERS, d.port), stop: () => d.stop() };
  },

  async cluster(churn: "none" | "roll" | "crash"): Promise<Running> {
    const port = freePort();
    const proc = Bun.spawn([BUN, CLUSTER], {
      cwd: ROOT,
      env: { ...childEnv, CHURN_PORT: String(port), CHURN_WORKERS: String(WORKERS) },
      stdin: "ignore",
      stdout: "pipe",
      stderr: Bun.file(tmpFile("churn-cluster.err")),
    });
    tracked.add(proc.pid);
    const tail = new Tail(proc.stdout);
    const kids = new Workers(() => proc.pid);
    const stop = async () => {
      await stopChild(proc);
      kids.stopLeft();
    };
    try {
      await tail.waitFor(/^READY\b/, 30_000);
      await waitPort(port);
      kids.list();
    } catch (err) {
      await stop();
      throw err;
    }
    let rolls = 0;
    const roll = async () => {
      const before = kids.list();
      const k = ++rolls;
      process.kill(proc.pid, "SIGHUP");
      await tail.waitFor(new RegExp(`^rolled ${k}$`), 30_000);
      await allReplaced(kids, before, WORKERS, "the rolling restart ended but not every worker was replaced");
    };
    const event = churn === "roll" ? roll : churn === "crash" ? () => crashOne(kids, WORKERS, port) : undefined;
    return { port, event, stop };
  },
};

// ---------------------------------------------------------------- pm2

interface Pm2 {
  bin: string;
  home: string;
  version: string;
}

/** `npm install pm2@7` into the run's temp dir; a reason when that fails. */
async function installPm2(): Promise<Pm2 | string> {
  const npm = Bun.which("npm");
  if (!npm) return "no `npm` on PATH to install pm2@7 with";
  const dir = tmpFile("pm2");
  mkdirSync(dir);
  process.stderr.write("[churn] npm install pm2@7 …\n");
  const r = await cmd([npm, "install", "--no-audit", "--no-fund", "--no-save", "--loglevel=error", "--prefix", dir, "pm2@7"]);
  if (r.code !== 0) {
    // npm's own summary: its "npm error code …" line and the one after it, not the log-file footer.
    const errs = r.stderr.split("\n").map((l) => l.replace(/^npm (?:error|ERR!)\s*/, "").trim()).filter((l) => l && !/complete log|proxy/i.test(l));
    return `\`npm install pm2@7\` exited ${r.code}: ${JSON.stringify(errs.slice(0, 2).join(" | "))}`;
  }
  const bin = join(dir, "node_modules/pm2/bin/pm2");
  let version: string;
  try {
    version = (JSON.parse(readFileSync(join(dir, "node_modules/pm2/package.json"), "utf8")) as { version: string }).version;
  } catch (err) {
    return `npm install pm2@7 exited 0 but left no node_modules/pm2/package.json (${(err as Error).message})`;
  }
  const home = join(dir, "home");
  mkdirSync(home);
  return { bin, home, version };
}

/** The pm2 CLI run by Bun, so its daemon (and with it node:cluster) runs under Bun: pm2's IS_BUN path. */
const pm2Cli = (p: Pm2, ...args: string[]) => cmd([BUN, p.bin, ...args], { PM2_HOME: p.home });

function pm2Daemon(p: Pm2): number {
  try {
    const pid = Number(readFileSync(join(p.home, "pm2.pid"), "utf8").trim());
    return pid > 0 ? pid : 0;
  } catch {
    return 0;
  }
}

/** One app under pm2: churn-bare.ts ×2, cluster mode asked for explicitly (an ecosystem file's exec_mode). */
async function pm2App(p: Pm2, reloads: boolean): Promise<Running> {
  const port = freePort();
  const name = `churn${++seq}`;
  const eco = `${tmpFile("pm2-eco")}.json`;
  writeFileSync(
    eco,
    JSON.stringify({
      apps: [{ name, script: PLAIN, exec_mode: "cluster", instances: WORKERS, wait_ready: true, listen_timeout: 10_000, kill_timeout: 5000, autorestart: true, env: { CHURN_PORT: String(port) } }],
    }),
  );
  const r = await pm2Cli(p, "start", eco);
  const god = pm2Daemon(p);
  if (god) tracked.add(god);
  const kids = new Workers(() => pm2Daemon(p), cmdlineHas("ProcessContainer"));
  const stop = async () => {
    const d = await pm2Cli(p, "delete", name);
    kids.stopLeft();
    if (d.code !== 0) throw new Error(`pm2 delete exited ${d.code}: ${said(d)}`);
  };
  if (r.code !== 0) {
    await stop();
    throw new Unavailable(`\`pm2 start\` exited ${r.code}: ${said(r)}`);
  }
  const j = await pm2Cli(p, "jlist");
  let procs: Array<{ name?: string; pid: number; pm2_env?: { exec_mode?: string; status?: string } }> = [];
  try {
    procs = (JSON.parse(j.stdout.slice(j.stdout.indexOf("["))) as typeof procs).filter((x) => x.name === name);
  } catch {
    await stop();
    throw new Unavailable(`\`pm2 jlist\` printed no JSON: ${said(j)}`);
  }
  const modes = [...new Set(procs.map((x) => x.pm2_env?.exec_mode))];
  if (modes.length !== 1 || modes[0] !== "cluster_mode") {
    await stop();
    throw new Unavailable(`pm2 ${p.version} ran the app in ${modes.join(", ") || "no"} mode, not cluster_mode (exec_mode: "cluster" was asked for)`);
  }
  try {
    await waitPort(port);
    await until(() => kids.list().length >= WORKERS, 15_000, () => `pm2 shows ${procs.length} processes but its daemon has ${kids.list().length} ProcessContainer children`);
  } catch (err) {
    await stop();
    throw new Unavailable((err as Error).message);
  }
  const event = reloads
    ? async () => {
        const before = kids.list();
        const rl = await pm2Cli(p, "reload", name);
        if (rl.code !== 0) throw new Error(`pm2 reload exited ${rl.code}: ${said(rl)}`);
        await allReplaced(kids, before, WORKERS, "pm2 reload exited 0 but not every worker was replaced");
      }
    : undefined;
  return { port, event, stop };
}

async function killPm2(p: Pm2): Promise<void> {
  const god = pm2Daemon(p);
  await pm2Cli(p, "kill");
  if (god) stopPid(god);
}

// ---------------------------------------------------------------- the load window

interface Window {
  load: LoadResult;
  /** Replacements finished while the load ran. */
  done: number;
  /** Each replacement that succeeded (in the window or just after it), ms. */
  eventMs: number[];
  errors: string[];
}

/** The longest a churn window may run for its replacements to finish: its length plus this. */
const CAP_MS = 120_000;

/**
 * The load client in its own process, and `events` replacements, one after
 * another, paced evenly over 85 % of `ms` (after max(300 ms, 5 %): the
 * client's start-up). Without replacements the client stops itself after
 * `ms`; with them it is stopped (SIGTERM) at `ms` or, when they take
 * longer, 5 % of `ms` after the last one ends (at most `ms` + CAP_MS), so
 * every window holds all its replacements.
 */
async function loadWindow(r: Running, ms: number, events: number): Promise<Window> {
  const t0 = performance.now();
  const churning = r.event !== undefined && events > 0;
  const p = Bun.spawn(
    [BUN, LOAD, "--port", String(r.port), "--duration-ms", String(churning ? ms + CAP_MS : ms), "--keep-alive", String(KEEP_ALIVE), "--fresh", String(FRESH)],
    { cwd: ROOT, env: childEnv, stdin: "ignore", stdout: "pipe", stderr: "pipe" },
  );
  tracked.add(p.pid);
  let over = false;
  const result = Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]).then(([out, err, code]) => {
    over = true;
    tracked.delete(p.pid);
    if (code !== 0) throw new Error(`test/load.ts exited ${code}: ${err}`);
    return JSON.parse(out.trim().split("\n").at(-1) ?? "") as LoadResult;
  });
  const w: Omit<Window, "load"> = { done: 0, eventMs: [], errors: [] };
  if (churning) {
    const lead = Math.max(300, ms * 0.05);
    for (let i = 0; i < events; i++) {
      const wait = t0 + lead + (i * ms * 0.85) / events - performance.now();
      if (wait > 0) await Bun.sleep(wait);
      if (over) break;
      const e0 = performance.now();
      try {
        await r.event!(i);
        w.eventMs.push(performance.now() - e0);
        if (!over) w.done++;
      } catch (err) {
        w.errors.push((err as Error).message);
      }
    }
    const rest = Math.max(t0 + ms, performance.now() + ms * 0.05) - performance.now();
    if (!over && rest > 0) await Bun.sleep(rest);
    if (!over) p.kill("SIGTERM");
  }
  return { ...w, load: await result };
}

// ---------------------------------------------------------------- variants

interface Variant {
  key: string;
  label: string;
  /** What replaces it: "15 × `upgrade`"; undefined: left alone. */
  churn?: string;
  /** Replacements per 10 s window. */
  events: number;
  /** The same setup without churn: the ratio's reference. */
  steady?: string;
  /** The label of its per-replacement time. */
  eventLabel?: string;
  start(): Promise<Running>;
}

interface Tally {
  failures: Record<string, number>;
  errors: string[];
  skipped?: string;
  windows: Array<Omit<Window, "load"> & { rps: number; ok: number; failed: number; retried: number; failures: Record<string, number>; p99: number; pids: number }>;
}

/** Section 12: rps and failed requests during replacements, beside the same setups left alone. Rounds: --runs, default 1. */
export async function churn(o: Options): Promise<Section> {
  const runs = runsOf(o, 1);
  const notes: string[] = [];
  const pm2 = ONLY && !ONLY.some((k) => k.startsWith("pm2")) ? "not in BENCH_CHURN_ONLY" : await installPm2();
  let pm2Skip = typeof pm2 === "string" ? pm2 : undefined;
  const pm2Ok = typeof pm2 === "string" ? undefined : pm2;

  const variants: Variant[] = [
    { key: "plain", label: "bare Bun.serve (scripts/bench/churn-bare.ts)", events: 0, start: () => setups.plain() },
    { key: "daemon", label: "serve-app daemon, no workers", events: 0, start: () => setups.daemon() },
    { key: "w1", label: "serve-app daemon, `--workers 1`", events: 0, start: () => setups.daemon(1) },
    { key: "w2", label: `serve-app daemon, \`--workers ${WORKERS}\``, events: 0, start: () => setups.daemon(WORKERS) },
    { key: "cluster", label: `node:cluster under Bun, ${WORKERS} workers`, events: 0, start: () => setups.cluster("none") },
    { key: "pm2", label: `pm2 ${pm2Ok?.version ?? "7"} cluster mode, ${WORKERS} instances`, events: 0, start: () => pm2App(pm2Ok!, false) },
    { key: "upgrade", label: "bun-daemon `upgrade` (ctx.serve)", churn: "`upgrade`", events: COUNTS.upgrade, steady: "daemon", eventLabel: "`upgrade`, spawn to exit (old pid gone)", start: () => setups.upgrade() },
    { key: "restart", label: "bun-daemon `restart` (stop, then start)", churn: "`restart`", events: COUNTS.restart, steady: "daemon", eventLabel: "`restart`, spawn to exit", start: () => setups.restart() },
    { key: "cl-roll", label: "node:cluster rolling restart", churn: "SIGHUP: each worker, new one listening, then old SIGTERM", events: COUNTS.clusterRoll, steady: "cluster", eventLabel: "node:cluster rolling restart, SIGHUP to `rolled`", start: () => setups.cluster("roll") },
    { key: "cl-crash", label: "node:cluster worker crash", churn: "kill -9 of a worker", events: COUNTS.clusterCrash, steady: "cluster", eventLabel: "node:cluster crash: kill -9 → the replacement answers", start: () => setups.cluster("crash") },
    { key: "pm2-reload", label: "pm2 cluster `pm2 reload`", churn: "`pm2 reload`", events: COUNTS.pm2Reload, steady: "pm2", eventLabel: "`pm2 reload`, spawn to exit", start: () => pm2App(pm2Ok!, true) },
    { key: "w-reload", label: `bun-daemon workers: rolling \`reload\``, churn: "`reload`", events: COUNTS.workersReload, steady: "w2", eventLabel: "workers `reload`, spawn to exit (+ until every worker is new)", start: () => setups.workersReload() },
    { key: "upgrade-5", label: "bun-daemon `upgrade`, at node:cluster's pace", churn: "`upgrade`", events: COUNTS.atClusterPace, steady: "daemon", eventLabel: "`upgrade` ×5, spawn to exit", start: () => setups.upgrade() },
    { key: "w-reload-5", label: "bun-daemon workers: rolling `reload`, at node:cluster's pace", churn: "`reload`", events: COUNTS.atClusterPace, steady: "w2", eventLabel: "workers `reload` ×5, spawn to exit", start: () => setups.workersReload() },
    { key: "w-crash", label: "bun-daemon workers: worker crash", churn: "kill -9 of a worker", events: COUNTS.workersCrash, steady: "w2", eventLabel: "workers crash: kill -9 → the replacement answers", start: () => setups.workersCrash() },
  ];
  const tallies = new Map<string, Tally>(variants.map((v) => [v.key, { failures: {}, errors: [], windows: [] }]));
  const tally = (k: string) => tallies.get(k)!;
  const skip = (keys: string[], why: string) => {
    for (const k of keys) tally(k).skipped ??= why;
  };
  if (pm2Skip) skip(["pm2", "pm2-reload"], pm2Skip);
  if (ONLY) skip(variants.map((v) => v.key).filter((k) => !ONLY.includes(k)), "not in BENCH_CHURN_ONLY");

  // Whether bun-daemon workers run here at all: one `start --workers 2`, untimed.
  try {
    const probe = await setups.daemon(WORKERS);
    await probe.stop();
  } catch (err) {
    if (!(err instanceof Unavailable)) throw err;
    skip(["w1", "w2", "w-reload", "w-crash"], `bun-daemon workers do not run here: ${err.message}`);
  }
  // pm2: does it run the app in cluster mode (untimed)?
  if (pm2Ok) {
    try {
      const probe = await pm2App(pm2Ok, false);
      await probe.stop();
    } catch (err) {
      if (!(err instanceof Unavailable)) throw err;
      pm2Skip = err.message;
      skip(["pm2", "pm2-reload"], err.message);
    }
  }

  let calls = 0;
  const active = variants.filter((v) => !tally(v.key).skipped);
  const steps: Step[] = active.map((v) => async (s: Samples) => {
    const warm = calls++ < active.length + 1;
    const ms = warm ? WARM_MS : WINDOW_MS;
    const t = tally(v.key);
    if (t.skipped) return;
    process.stderr.write(`[churn] ${v.key}${warm ? " (warm-up)" : ""} …\n`);
    let r: Running;
    try {
      r = await v.start();
    } catch (err) {
      if (!(err instanceof Unavailable)) throw err;
      // Skipped only if it never ran; a setup that ran before and fails now is an error of this round.
      if (s.get(`${v.key}:rps`).length === 0 && t.windows.length === 0) t.skipped = err.message;
      else t.errors.push(`start failed: ${err.message}`);
      return;
    }
    let w: Window;
    try {
      w = await loadWindow(r, ms, v.events ? scaled(v.events, ms) : 0);
    } finally {
      await r.stop();
    }
    if (warm) {
      if (w.errors.length) t.errors.push(...w.errors.map((e) => `(warm-up) ${e}`));
      return;
    }
    const pids = new Set(Object.keys(w.load.bodies).map((b) => /pid (\d+)/.exec(b)?.[1]).filter(Boolean)).size;
    s.add(`${v.key}:rps`, w.load.rps);
    s.add(`${v.key}:failed`, w.load.failed);
    s.add(`${v.key}:retried`, w.load.retried);
    s.add(`${v.key}:p99`, w.load.latencyMs.p99);
    s.add(`${v.key}:pids`, pids);
    s.add(`${v.key}:window`, w.load.durationMs / 1000);
    if (v.events) {
      s.add(`${v.key}:done`, w.done);
      if (w.eventMs.length) s.add(`${v.key}:ev`, summarize(w.eventMs).median);
    }
    for (const [k, n] of Object.entries(w.load.failures)) t.failures[k] = (t.failures[k] ?? 0) + n;
    t.errors.push(...w.errors);
    t.windows.push({ done: w.done, eventMs: w.eventMs.map((x) => Math.round(x * 10) / 10), errors: w.errors, rps: w.load.rps, ok: w.load.ok, failed: w.load.failed, retried: w.load.retried, failures: w.load.failures, p99: w.load.latencyMs.p99, pids });
  });
  // The machine reference of the same run: five bare starts a round.
  steps.push(async (s) => {
    calls++;
    for (let i = 0; i < 5; i++) s.add("bare", timed(BARE).ms);
  });

  let s: Samples;
  try {
    s = await interleave("churn", runs, steps);
  } finally {
    if (pm2Ok) await killPm2(pm2Ok);
  }

  // ---------------------------------------------------------------- report
  const med = (k: string) => s.median(k);
  const has = (k: string) => s.get(`${k}:rps`).length > 0;
  const kinds = (k: string) => {
    const f = Object.entries(tally(k).failures).sort((a, b) => b[1] - a[1]);
    return f.length ? f.map(([kind, n]) => `${kind} ${fmt(n)}`).join(", ") : "none";
  };
  const range = (k: string) => {
    const st = summarize(s.get(`${k}:rps`));
    return `${fmt(Math.round(st.min))}–${fmt(Math.round(st.max))}`;
  };
  const pct = (a: number, b: number) => (Number.isFinite(a / b) ? `${((a / b) * 100).toFixed(0)} %` : "n/a");
  const n = (k: string) => s.get(`${k}:rps`).length;
  const count = (x: number) => (Number.isInteger(x) ? String(x) : x.toFixed(1));
  const steadyOf = new Map(variants.filter((v) => !v.churn).map((v) => [v.key, v]));

  const churnRows = variants.filter((v) => v.churn).map((v) => {
    if (!has(v.key)) return `| ${v.label} | ${v.churn} | skipped${tally(v.key).skipped ? " (below)" : ": no samples"} |${"|".repeat(9)}`;
    const want = scaled(v.events, WINDOW_MS);
    const ref = v.steady && has(v.steady) ? pct(med(`${v.key}:rps`), med(`${v.steady}:rps`)) : "n/a";
    return `| ${v.label} | ${want} × ${v.churn} | ${count(med(`${v.key}:done`))}/${want} | ${num(med(`${v.key}:window`), "s")} | ${fmt(Math.round(med(`${v.key}:rps`)))} | ${range(v.key)} | **${ref}** | ${fmt(Math.round(med(`${v.key}:failed`)))} | ${kinds(v.key)} | ${fmt(Math.round(med(`${v.key}:retried`)))} | ${num(med(`${v.key}:p99`), "ms")} | ${Math.round(med(`${v.key}:pids`))} |`;
  });
  const steadyRows = [...steadyOf.values()].map((v) => {
    if (!has(v.key)) return `| ${v.label} | skipped${tally(v.key).skipped ? " (below)" : ": no samples"} |${"|".repeat(6)}`;
    return `| ${v.label} | ${fmt(Math.round(med(`${v.key}:rps`)))} | ${range(v.key)} | ${has("plain") ? pct(med(`${v.key}:rps`), med("plain:rps")) : "n/a"} | ${fmt(Math.round(med(`${v.key}:failed`)))} | ${kinds(v.key)} | ${num(med(`${v.key}:p99`), "ms")} | ${Math.round(med(`${v.key}:pids`))} |`;
  });
  const skipped = new Map<string, string[]>();
  for (const v of variants) {
    const why = tally(v.key).skipped;
    if (why) skipped.set(why, [...(skipped.get(why) ?? []), v.label]);
  }
  const skipLines = [...skipped].map(([why, labels]) => `- **Skipped** ${labels.join("; ")}: ${why}.`);
  const counts = [...new Set(variants.filter((v) => has(v.key)).map((v) => n(v.key)))].join("/") || "0";
  const bareMs = med("bare");
  const summary = [
    `**During churn** (${fmt(WINDOW_MS)} ms of load per run or, when the replacements take longer, until 5 % after the last; "window s": the load's own duration; ${counts} runs each; medians; "÷ no churn" = req/s ÷ req/s of the same setup left alone, target ≥ 90 %; failed by kind summed over the runs)`,
    "",
    "| setup | replaced by | done | window s | req/s | min–max | ÷ no churn | failed | failed by kind | retried | p99 ms | pids answering |",
    "|---|---|--:|--:|--:|--:|--:|--:|---|--:|--:|--:|",
    ...churnRows,
    "",
    `**Without churn** (the same load and window; "÷ bare" = req/s ÷ req/s of the bare Bun.serve)`,
    "",
    "| setup | req/s | min–max | ÷ bare | failed | failed by kind | p99 ms | pids answering |",
    "|---|--:|--:|--:|--:|---|--:|--:|",
    ...steadyRows,
    "",
    ...(skipLines.length ? [...skipLines, ""] : []),
    `Bare runtime start of the same run (\`bun -e 0\`, ${s.get("bare").length} starts): **${num(bareMs, "ms")} ms** median.`,
  ].join("\n");

  const derived: Derived[] = variants
    .filter((v) => v.churn && v.steady && has(v.key) && has(v.steady))
    .map((v) => {
      const value = med(`${v.key}:rps`) / med(`${v.steady!}:rps`);
      return { label: `${v.label}: req/s during churn ÷ ${steadyOf.get(v.steady!)!.label}`, value, unit: "×" as const, target: "≥ 0.90×", met: value >= 0.9 };
    });

  for (const v of variants) {
    const t = tally(v.key);
    if (t.errors.length) notes.push(`${v.label}: ${t.errors.length} replacement(s) failed or did not finish; first: ${t.errors[0]}`);
  }
  notes.push(
    `Load: test/load.ts as its own process (\`bun test/load.ts --port P --duration-ms ${WINDOW_MS} --keep-alive ${KEEP_ALIVE} --fresh ${FRESH}\`): ${KEEP_ALIVE} clients that reuse one connection and ${FRESH} that open a new one per request, each sending the next GET as soon as the last is answered. req/s = answered 2xx / the window. A failed request is one that got no answer: refused, reset, closed with no response, or no answer within 5 s. "retried": a reused keep-alive connection closed by the server before any byte of the answer, the request re-sent once on a new connection (as browsers and HTTP clients do); not a failure. "pids answering": distinct server pids in the response bodies. On ${navigator.hardwareConcurrency} cores the client and the servers share the CPU, so the bare Bun.serve figure is the client's and the machine's ceiling as much as the server's.`,
    `Each window: start the setup (untimed), start the load, then the replacements paced evenly over 85 % of the window from max(300 ms, 5 %) on, one after another (the next waits for the last). Without churn the load runs ${fmt(WINDOW_MS)} ms; with churn it is stopped (SIGTERM) at ${fmt(WINDOW_MS)} ms or, if the replacements are not all done by then, 5 % of the window after the last one ends (at most ${CAP_MS / 1000} s more): every churn window holds all its replacements, and req/s is over the whole window. "done": replacements that succeeded while the load ran. Counts per ${fmt(WINDOW_MS)} ms: ${variants.filter((v) => v.churn).map((v) => `${v.key} ${scaled(v.events, WINDOW_MS)}`).join(", ")}. One uncounted warm-up round (${fmt(WARM_MS)} ms windows, counts scaled) first; then ${runs} round(s), every setup once each, the first rotating.`,
    "bun-daemon: test/fixtures/serve-app.ts (`ctx.serve`, answers `vN pid P`) with `start --pid-file F --log-file L`; `upgrade` writes the next version file, runs `upgrade --pid-file F` (exits once the old pid has gone) and checks the PID file names a new pid; `restart --pid-file F --log-file L` likewise. Workers: `start --workers 2`; `reload --pid-file F`, then until every worker pid is new (children of the primary in /proc); a crash is kill -9 of the oldest worker, done once a new worker is running and has answered a request (new connections) on the port.",
    `node:cluster: scripts/bench/churn-cluster.ts, a primary that loads no app and ${WORKERS} workers, each \`Bun.serve({ reusePort: true })\` on the port (Bun's node:cluster hands workers no listening socket: SO_REUSEPORT, one accept queue per worker). Rolling restart on SIGHUP: for each worker, fork a new one, wait for its "listening" IPC message (Bun emits no cluster 'listening' event for Bun.serve), SIGTERM the old one (it stops accepting and finishes what it has) and wait for its exit. A worker that exits unasked is forked again at once; a crash is timed as for bun-daemon's workers.`,
    pm2Ok
      ? `pm2 ${pm2Ok.version}, \`npm install pm2@7\` into the run's temp dir, its CLI run by Bun (\`bun node_modules/pm2/bin/pm2\`, PM2_HOME in the temp dir), so its daemon runs under Bun and cluster mode is Bun's node:cluster (pm2's IS_BUN path, ProcessContainerBun.js). The app: scripts/bench/churn-bare.ts ×${WORKERS} from an ecosystem file with \`exec_mode: "cluster"\` (given explicitly: pm2's default for \`-i N\` under Bun is fork mode here, as process.execPath's basename is \`bun.exe\`, which its /bun$/ test misses), \`wait_ready\` (the app sends "ready" once Bun.serve listens), kill_timeout 5000. \`pm2 reload NAME\` replaces the instances one at a time; each is a new pm2 CLI process (${pm2Skip ? `skipped: ${pm2Skip}` : "its own start-up is part of the replacement's cost, as with bun-daemon's CLI"}).`
      : `pm2: skipped (${pm2Skip}).`,
    `Every replacement starts processes (bun-daemon's CLI and the new daemon; a new worker per worker replaced; pm2's CLI), and on ${navigator.hardwareConcurrency} cores their start-up takes CPU from the server and the load client: a ratio under 100 % with no failed request is that CPU time, not dropped requests. The machine's other load moves every figure: compare rows within one run.`,
    `Every process is stopped by pid at the end of its window (\`stop\`, \`pm2 delete\`, SIGTERM to the cluster primary; then SIGTERM/SIGKILL for what is left); pm2's daemon with \`pm2 kill\` at the end of the section.`,
  );

  const evRows = variants.filter((v) => v.churn && v.eventLabel).map((v): [string, string] => [`${v.key}:ev`, v.eventLabel!]);
  const sec: Section & { results: Record<string, unknown> } = {
    id: "churn",
    title: "12. Churn: requests/s and failed requests while the server is replaced",
    summary,
    tables: [table("One replacement (median per window), and the machine reference", "ms", s, [["bare", "bare runtime start (`bun -e 0`)"], ...evRows], "bare")],
    derived,
    notes,
    results: Object.fromEntries(
      variants.map((v) => {
        const t = tally(v.key);
        return [v.key, { label: v.label, churn: v.churn ? `${scaled(v.events, WINDOW_MS)} × ${v.churn}` : null, steady: v.steady ?? null, windowMs: WINDOW_MS, skipped: t.skipped ?? null, failuresByKind: t.failures, errors: t.errors, windows: t.windows }];
      }),
    ),
  };
  return sec;
}
