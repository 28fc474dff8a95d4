/** PID 1's duty: reap orphaned children, never a child the Bun runtime itself waits for. */
import { existsSync, readdirSync, readFileSync, readlinkSync } from "node:fs";
import { errorText } from "./errors.ts";
import { reapExited } from "./ffi.ts";

/** A running reaper, from startReaper(). */
export interface Reaper {
  /** Stop reaping: removes the SIGCHLD listener and the timers. Calling it again does nothing. */
  stop(): void;
  /**
   * Look for orphans now (what SIGCHLD and the timer do); returns how many
   * this call reaped. A zombie is reaped by the first look that comes at
   * least 50 ms after the one that first saw it (see `SETTLE_MS`).
   */
  sweep(): number;
  /** Orphans reaped so far. */
  readonly reaped: number;
}

/** Options of startReaper(). */
export interface ReaperOptions {
  /** Where the one start-up warning and the per-sweep counts go. */
  log: { warn(msg: string): void; debug(msg: string): void };
  /** Period of the sweep that catches what a SIGCHLD missed, in ms. Default 1000 (anything but a positive number means the default). */
  sweepMs?: number;
}

/**
 * How long a zombie must stay one, with no pidfd naming it, before it is
 * reaped. Bun opens a child's pidfd right after spawning it, on the thread
 * that spawned it; on the main thread no sweep can run in between, but a
 * Worker spawns on its own thread, and a child that exits at once is a
 * zombie with no pidfd for that instant. Seeing it twice, this far apart,
 * leaves that window out.
 */
const SETTLE_MS = 50;
/** A burst of SIGCHLDs costs at most one sweep per this many ms. */
const MIN_GAP_MS = 10;

/**
 * Start reaping orphans: on SIGCHLD and on a sweep every `sweepMs`. Never
 * waits for a pid the runtime itself waits for: a zombie child named by one
 * of this process's pidfds (`/proc/self/fdinfo/N`, `Pid:`) is Bun's to
 * reap, and every other one is reaped with waitid(P_PID, pid), never
 * waitpid(-1).
 *
 * First spawns one short child (`true`, or this runtime with `-e 0`) and
 * checks that the runtime holds a pidfd for it. Without pidfds (gVisor, a
 * kernel before 5.3, a seccomp filter; Bun then waits on a thread of its
 * own) no child can be told apart, so it reaps nothing, warns once that the
 * program should run under an init such as tini, and returns undefined.
 * The timers never keep the process alive by themselves.
 */
export function startReaper(o: ReaperOptions): Reaper | undefined {
  const { log } = o;
  const every = typeof o.sweepMs === "number" && o.sweepMs > 0 && Number.isFinite(o.sweepMs) ? o.sweepMs : 1000;
  const problem = pidfdProblem();
  if (problem) {
    log.warn(`not reaping orphans: ${problem}; run the program under an init that reaps, such as tini (docker run --init)`);
    return undefined;
  }
  const children = childLister();
  let reaped = 0;
  let stopped = false;
  let failed = false;
  let lastSweep = -Infinity;
  // Zombies seen with no pidfd: pid -> its start time (so a reused pid is a
  // new process) and when it was first seen.
  let seen = new Map<number, { start: string; at: number }>();
  let early: ReturnType<typeof setTimeout> | undefined;
  let earlyAt = Infinity;

  const schedule = (at: number) => {
    if (stopped || at >= earlyAt) return;
    if (early) clearTimeout(early);
    earlyAt = at;
    early = setTimeout(() => {
      early = undefined;
      earlyAt = Infinity;
      sweep();
    }, Math.max(0, at - performance.now()));
    early.unref();
  };

  const sweep = (): number => {
    if (stopped) return 0;
    lastSweep = performance.now();
    let n = 0;
    try {
      const zombies = zombieChildren(children);
      if (zombies.size === 0) {
        seen.clear();
        return 0;
      }
      // Read after the zombies: a child of the runtime that is a zombie now
      // had its pidfd open before it could become one, and keeps it until
      // the runtime has reaped it.
      const owned = pidfdPids();
      const now = performance.now();
      const next = new Map<number, { start: string; at: number }>();
      let due = Infinity;
      for (const [pid, start] of zombies) {
        if (owned.has(pid)) continue;
        const first = seen.get(pid);
        const entry = first && first.start === start ? first : { start, at: now };
        if (now - entry.at >= SETTLE_MS && reapExited(pid)) {
          n++;
          continue;
        }
        // Not reaped: too young, or not waitable yet (a zombie leader whose
        // other threads still run). Young ones get a look of their own.
        next.set(pid, entry);
        if (now - entry.at < SETTLE_MS) due = Math.min(due, entry.at + SETTLE_MS);
      }
      seen = next;
      if (due < Infinity) schedule(due);
    } catch (err) {
      // Nothing is reaped on a look that could not read everything (EMFILE
      // on /proc/self/fd would hide a pidfd).
      const msg = `cannot look for orphans to reap: ${errorText(err)}`;
      if (failed) log.debug(msg);
      else log.warn(`${msg} (trying again every ${every} ms)`);
      failed = true;
    }
    if (n > 0) {
      reaped += n;
      log.debug(`reaped ${n} orphan${n === 1 ? "" : "s"} (${reaped} so far)`);
    }
    return n;
  };

  const onChild = () => schedule(Math.max(performance.now(), lastSweep + MIN_GAP_MS));
  // Bun installs a plain SA_RESTART handler that forwards the signal to the
  // event loop; its own children are watched through pidfds, not SIGCHLD.
  let listening = true;
  try {
    process.on("SIGCHLD", onChild);
  } catch (err) {
    listening = false;
    log.debug(`no SIGCHLD listener (${errorText(err)}): reaping on the ${every} ms sweep only`);
  }
  const timer = setInterval(sweep, every);
  timer.unref();
  log.debug(`reaping orphans${listening ? " on SIGCHLD and" : ""} every ${every} ms`);
  sweep();

  return {
    stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      if (early) clearTimeout(early);
      if (listening) process.off("SIGCHLD", onChild);
    },
    sweep,
    get reaped() {
      return reaped;
    },
  };
}

/**
 * Why the pidfd rule cannot be trusted here, or undefined when it can: a
 * child spawned right now must show up as a pidfd of this process (Bun
 * opens it before Bun.spawn returns).
 */
function pidfdProblem(): string | undefined {
  // A compiled binary started as itself would run the program: BUN_BE_BUN
  // makes it the runtime, and -e 0 a runtime that exits at once.
  const t = Bun.which("true") ?? (existsSync("/bin/true") ? "/bin/true" : undefined);
  const cmd = t ? [t] : [process.execPath, "-e", "0"];
  const env = t ? undefined : { ...process.env, BUN_BE_BUN: "1" };
  let child: ReturnType<typeof Bun.spawn>;
  try {
    child = Bun.spawn(cmd, { stdin: "ignore", stdout: "ignore", stderr: "ignore", env });
  } catch (err) {
    return `could not spawn a probe child (${cmd[0]}) to check for pidfds: ${errorText(err)}`;
  }
  try {
    child.unref();
    if (pidfdPids().has(child.pid)) return undefined;
    return "the runtime keeps no pidfd for its children (no pidfd_open: gVisor, a kernel before 5.3, or a seccomp filter), so they cannot be told apart from orphans";
  } catch (err) {
    return `cannot list this process's pidfds: ${errorText(err)}`;
  } finally {
    if (!t) child.kill("SIGKILL");
  }
}

/** Pids named by this process's pidfds. Throws when a pidfd could not be read (EMFILE…): a missed one could be reaped. */
function pidfdPids(): Set<number> {
  const out = new Set<number>();
  for (const name of readdirSync("/proc/self/fd")) {
    let target: string;
    try {
      target = readlinkSync(`/proc/self/fd/${name}`);
    } catch (err) {
      if (closedMeanwhile(err)) continue;
      throw err;
    }
    // "anon_inode:[pidfd]"; pidfs (Linux 6.9+) may name it "pidfd:[ino]".
    if (target !== "anon_inode:[pidfd]" && !target.startsWith("pidfd:")) continue;
    let info: string;
    try {
      info = readFileSync(`/proc/self/fdinfo/${name}`, "utf8");
    } catch (err) {
      // Closed since the readlink: the runtime closes a pidfd after it reaped the child.
      if (closedMeanwhile(err)) continue;
      throw err;
    }
    const m = /^Pid:\s*(-?\d+)/m.exec(info);
    if (!m) throw new Error(`/proc/self/fdinfo/${name} of a pidfd has no Pid: line`);
    out.add(Number(m[1]));
  }
  return out;
}

function closedMeanwhile(err: unknown): boolean {
  const code = (err as { code?: string }).code;
  return code === "ENOENT" || code === "EBADF";
}

/** How to list this process's children: /proc/self/task/T/children (every thread's), or a walk of /proc where that file is missing. */
function childLister(): () => number[] {
  const self = readlinkSync("/proc/self"); // our pid as this /proc numbers it
  if (existsSync(`/proc/self/task/${self}/children`)) {
    return () => {
      const out: number[] = [];
      for (const tid of readdirSync("/proc/self/task")) {
        let list: string;
        try {
          list = readFileSync(`/proc/self/task/${tid}/children`, "utf8");
        } catch (err) {
          if (closedMeanwhile(err) || (err as { code?: string }).code === "ESRCH") continue; // the thread ended
          throw err;
        }
        for (const p of list.split(/\s+/)) if (p !== "") out.push(Number(p));
      }
      return out;
    };
  }
  // Without CONFIG_PROC_CHILDREN: every process whose parent is us.
  return () => {
    const out: number[] = [];
    for (const d of readdirSync("/proc")) {
      if (!/^\d+$/.test(d)) continue;
      const f = statFields(d);
      if (f?.[1] === self) out.push(Number(d));
    }
    return out;
  };
}

/** Zombie children: pid -> start time (field 22 of /proc/PID/stat). */
function zombieChildren(children: () => number[]): Map<number, string> {
  const out = new Map<number, string>();
  for (const pid of children()) {
    const f = statFields(String(pid));
    if (f?.[0] === "Z" && f[19] !== undefined) out.set(pid, f[19]);
  }
  return out;
}

/** Fields of /proc/PID/stat after the command name ([state, ppid, …]); undefined when it is gone. */
function statFields(pid: string): string[] | undefined {
  let s: string;
  try {
    s = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined;
  }
  return s.slice(s.lastIndexOf(")") + 2).split(" ");
}
