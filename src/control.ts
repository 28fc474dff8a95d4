/**
 * The control commands that act on a running daemon through its PID file:
 * stop, status, reload. Each returns the LSB exit status it prints about.
 * A daemon is signalled only through a pidfd opened on the pid that was
 * verified to hold the PID file's lock, so a recycled pid is never hit.
 * What the daemon is doing (its state, its reloads' outcomes) comes from the
 * state file beside the PID file (src/state.ts), believed only when the
 * daemon's user or root wrote it and it names that very pid.
 */
import { writeSync } from "node:fs";
import { DaemonError } from "./errors.ts";
import { closeFd, ENOSYS, ESRCH, pidfdOpen, pidfdSendSignal, pollIn, POLLIN, sendSignal } from "./ffi.ts";
import { acquirePidFile, describeHolder, foreignText, inspectPidFile, releasePidFile, type PidFileState } from "./pidfile.ts";
import { isAlive, uptimeSeconds } from "./proc.ts";
import { readState, statePathFor, type DaemonState, type ReloadOutcome, type StateRecord } from "./state.ts";

/** LSB init-script exit statuses (status action / other actions). */
export const STATUS_RUNNING = 0;
export const STATUS_DEAD_PIDFILE = 1;
export const STATUS_NOT_RUNNING = 3;
/** LSB "program or service status is unknown": the path holds no PID file, or the pid cannot be checked. */
export const STATUS_UNKNOWN = 4;
export const ACTION_NOT_RUNNING = 7;
/** LSB "user had insufficient privilege", for stop/reload of a pid this user cannot verify. */
export const ACTION_NO_PRIVILEGE = 4;

const SIGHUP = 1;
const SIGKILL = 9;
const SIGTERM = 15;

// Synchronous: the CLI exits right after, and a pipe write must not be lost.
function out(text: string): void {
  writeSync(1, `${text}\n`);
}

function err(text: string): void {
  writeSync(2, `${text}\n`);
}

export function formatUptime(s: number): string {
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = Math.floor(s % 60);
  return [d && `${d}d`, (d || h) && `${h}h`, (d || h || m) && `${m}m`, `${sec}s`].filter(Boolean).join("");
}

function startingText(st: Extract<PidFileState, { state: "starting" }>): string {
  return `PID file ${st.path} is locked${st.holder ? ` by pid ${st.holder.pid}` : ""} and names no pid yet`;
}

/** "NAME is not running", with what the PID file says when that is more than nothing. */
function notRunning(name: string, st: PidFileState, detailStale: boolean): string {
  if (st.state === "foreign") return `${name} is not running (${foreignText(st)})`;
  if (st.state === "stale" && detailStale) return `${name} is not running (stale PID file ${st.path}${st.pid ? ` names pid ${st.pid}, which does not hold it` : " is not locked"})`;
  return `${name} is not running`;
}

/** The states no command acts on: thrown as one-line errors with the given exit status. */
function refuse(st: PidFileState, exitCode: { invalid: number; unverified: number }): void {
  if (st.state === "invalid") throw new DaemonError("PIDFILE_INVALID", st.reason, { path: st.path, exitCode: exitCode.invalid });
  if (st.state === "unverified") {
    const holder = st.holder ? ` (the lock is held by ${describeHolder(st.holder)})` : "";
    throw new DaemonError("PIDFILE_UNVERIFIED", `${st.reason}${holder}`, { path: st.path, pid: st.pid, exitCode: exitCode.unverified });
  }
}

/** Inspect the PID file, waiting while a launcher holds it empty ("starting"), until `deadline`. */
async function settle(pidFile: string, deadline: number): Promise<PidFileState> {
  for (;;) {
    const st = inspectPidFile(pidFile);
    if (st.state !== "starting" || performance.now() >= deadline) return st;
    await Bun.sleep(20);
  }
}

/** The daemon, pinned: signals reach that process or nobody. */
interface Target {
  pid: number;
  /** 0, ESRCH once it has exited, or another errno. */
  signal(sig: number): number;
  /** Wait up to `ms` for it to exit; true once it has. */
  waitGone(ms: number): Promise<boolean>;
  close(): void;
}

/**
 * Open a pidfd on `pid`, then check again that the PID file is held by that
 * pid: from here on the pidfd names that process whatever happens to the
 * number. Undefined when it is gone or no longer the holder.
 */
function pin(pidFile: string, pid: number): Target | undefined {
  const fd = pidfdOpen(pid);
  if (fd === -ESRCH) return undefined;
  if (fd === -ENOSYS) return pinByNumber(pidFile, pid);
  if (fd < 0) throw new DaemonError("SIGNAL", `cannot open pid ${pid} (pidfd_open): errno ${-fd}`, { pid, errno: -fd, syscall: "pidfd_open" });
  const exited = () => ((pollIn([fd], 0)[0] ?? 0) & POLLIN) !== 0;
  const again = inspectPidFile(pidFile);
  // Still alive after the check: the process checked is the one the pidfd holds.
  if (again.state !== "running" || again.pid !== pid || exited()) {
    closeFd(fd);
    return undefined;
  }
  return {
    pid,
    signal: (sig) => pidfdSendSignal(fd, sig),
    async waitGone(ms) {
      const end = performance.now() + ms;
      for (;;) {
        if (exited()) return true;
        const left = end - performance.now();
        if (left <= 0) return false;
        // poll(2) says POLLIN once every thread has exited; short slices keep the event loop alive.
        pollIn([fd], Math.min(Math.ceil(left), 50));
        await Bun.sleep(0);
      }
    },
    close: () => closeFd(fd),
  };
}

/** Kernels before 5.3 have no pidfd_open: check right before each kill(2), the best there is. */
function pinByNumber(pidFile: string, pid: number): Target {
  const holds = () => {
    const st = inspectPidFile(pidFile);
    return st.state === "running" && st.pid === pid;
  };
  return {
    pid,
    signal: (sig) => (holds() ? sendSignal(pid, sig) : ESRCH),
    async waitGone(ms) {
      const start = performance.now();
      while (isAlive(pid)) {
        const waited = performance.now() - start;
        if (waited >= ms) return false;
        await Bun.sleep(waited < 50 ? 1 : 10);
      }
      return true;
    },
    close() {},
  };
}

function signalError(pid: number, e: number, what: string): DaemonError {
  const text = e === 1 ? "EPERM (run as the daemon's user or root)" : `errno ${e}`;
  return new DaemonError("SIGNAL", `cannot ${what} pid ${pid}: ${text}`, { pid, errno: e, syscall: "pidfd_send_signal", exitCode: e === 1 ? ACTION_NO_PRIVILEGE : 1 });
}

/** What `status --json` prints: one object, whatever the state. */
export interface StatusReport {
  name: string;
  /** The daemon's state from its state file, else what the PID file says ("dead": a stale PID file; "unknown": exit 4). */
  state: DaemonState | "not running" | "dead" | "unknown";
  pid: number | null;
  pidFile: string;
  uptimeSeconds: number | null;
  /** ISO time the process started. */
  startedAt: string | null;
  configFile: string | null;
  lastReload: ReloadOutcome | null;
  /** A primary's workers (DaemonConfig.workers), by id; null without workers. */
  workers: WorkerStatus[] | null;
  /** The exit status `status` returns with it. */
  exitCode: number;
}

/** One worker in `status --json`. */
export interface WorkerStatus {
  id: number;
  pid: number;
  state: "starting" | "running" | "stopping";
  uptimeSeconds: number | null;
  /** Replacements of this id after an exit nobody asked for. */
  restarts: number;
}

export interface StatusOptions {
  /** Print one JSON object (StatusReport) on stdout instead of the line. Default false. */
  json?: boolean;
  /**
   * Readiness probe (a Kubernetes exec probe): exit 0 only while the daemon
   * is running or reloading, 1 while it is starting or stopping, the usual
   * 1/3/4 when it is not running or cannot be checked. Default false.
   */
  ready?: boolean;
}

/** Control characters a daemon's error text could carry to a terminal, shown as "?" (newlines and tabs stay). */
function printable(text: string): string {
  return text.replace(/[\x00-\x08\x0b-\x1f\x7f]/g, "?");
}

/** "last reload 2026-12-01T23:00:00.000Z ok" / "... failed: why", on one line. */
function lastReloadText(r: ReloadOutcome): string {
  return `last reload ${r.finishedAt} ${r.ok ? "ok" : `failed: ${printable(r.error ?? "no reason given").replace(/\s*\n\s*/g, "; ")}`}`;
}

/** The line and report of a PID file naming a running pid, with its state file's record when there is one to trust. */
function runningLine(name: string, pid: number, record: StateRecord | undefined, report: StatusReport): string {
  const up = uptimeSeconds(pid);
  const state = record?.state ?? "running";
  const last = record?.reloads[record.reloads.length - 1];
  report.state = state;
  report.pid = pid;
  report.uptimeSeconds = up === undefined ? null : Math.floor(up);
  report.startedAt = record?.startedAt ?? (up === undefined ? null : new Date(Date.now() - up * 1000).toISOString());
  report.configFile = record?.configFile ?? null;
  report.lastReload = last ?? null;
  const parts = [[`pid ${pid}`, ...(up === undefined ? [] : [`up ${formatUptime(up)}`])].join(", ")];
  if (record?.configFile !== undefined) parts.push(`config ${printable(record.configFile)}`);
  if (last) parts.push(lastReloadText(last));
  const lines = [`${name} is ${state} (${parts.join("; ")})`];
  if (record?.workers) {
    report.workers = record.workers.map((w) => {
      const wup = uptimeSeconds(w.pid);
      return { id: w.id, pid: w.pid, state: w.state, uptimeSeconds: wup === undefined ? null : Math.floor(wup), restarts: w.restarts };
    });
    for (const w of report.workers) {
      lines.push(`  worker ${w.id}: pid ${w.pid}, ${w.state}${w.uptimeSeconds === null ? "" : `, up ${formatUptime(w.uptimeSeconds)}`}, ${w.restarts} restart${w.restarts === 1 ? "" : "s"}`);
    }
  }
  return lines.join("\n");
}

/**
 * `status`: 0 running, 3 not running, 1 PID file present but no daemon holds
 * it, 4 status unknown (the path is not a PID file, or the pid it names
 * cannot be checked by this user). The line says the daemon's state
 * (starting, running, reloading, stopping), uptime, config file and last
 * reload, from its state file when that names the same pid; without one to
 * trust it says what the PID file says (an unsafe or unreadable state file
 * gets one more line on stderr).
 *
 * A daemon that is still starting (locked, no pid yet) reports 0: LSB
 * defines 0 as "program is running or service is OK", and the process does
 * run and holds the lock; answering 3 would invite `status || start` to
 * start a second one (which would fail: already running). Readiness is what
 * `start` waits for before it returns, and what `ready` asks for.
 */
export async function status(name: string, pidFile: string, o: StatusOptions = {}): Promise<number> {
  const st = inspectPidFile(pidFile);
  const report: StatusReport = { name, state: "unknown", pid: null, pidFile, uptimeSeconds: null, startedAt: null, configFile: null, lastReload: null, workers: null, exitCode: STATUS_UNKNOWN };
  let line = "";
  switch (st.state) {
    case "invalid":
    case "unverified":
      if (!o.json) refuse(st, { invalid: STATUS_UNKNOWN, unverified: STATUS_UNKNOWN });
      if (st.state === "unverified") report.pid = st.pid;
      err(st.reason);
      break;
    case "absent":
      line = `${name} is not running`;
      report.state = "not running";
      report.exitCode = STATUS_NOT_RUNNING;
      break;
    case "stale":
    case "foreign":
      line = notRunning(name, st, true);
      report.state = "dead";
      report.pid = st.pid ?? null;
      report.exitCode = STATUS_DEAD_PIDFILE;
      break;
    case "starting":
      line = `${name} is starting (${startingText(st)})`;
      report.state = "starting";
      report.exitCode = o.ready ? 1 : STATUS_RUNNING;
      break;
    case "running": {
      const r = readState(statePathFor(pidFile), st.pid);
      if (!r.ok && !r.absent) err(`${name}: ${r.reason}`);
      line = runningLine(name, st.pid, r.ok ? r.record : undefined, report);
      report.exitCode = o.ready && report.state !== "running" && report.state !== "reloading" ? 1 : STATUS_RUNNING;
      break;
    }
  }
  out(o.json ? JSON.stringify(report) : line);
  return report.exitCode;
}

/**
 * The daemon a signal is for: waits for one still starting (until
 * `deadline`), refuses what cannot be trusted, and pins the pid. Undefined
 * (after saying "not running") when there is none.
 */
async function runningTarget(name: string, pidFile: string, deadline: number, timeout: number): Promise<Target | undefined> {
  const st = await settle(pidFile, deadline);
  refuse(st, { invalid: 1, unverified: ACTION_NO_PRIVILEGE });
  if (st.state === "starting") {
    throw new DaemonError("NOT_RUNNING", `still starting after ${timeout} s (${startingText(st)}); try again`, { path: pidFile });
  }
  const target = st.state === "running" ? pin(pidFile, st.pid) : undefined;
  if (!target) out(notRunning(name, st, false));
  return target;
}

export interface ReloadOptions {
  /**
   * Seconds, from the start of `reload`, to wait for a daemon still
   * starting to write its pid, and then for the outcome of the reload. Default 30.
   */
  timeout?: number;
  /**
   * Wait for the outcome the daemon publishes in its state file and exit by
   * it; false (`--no-wait`) only sends SIGHUP. Default true.
   */
  wait?: boolean;
}

/**
 * `reload`: SIGHUP the daemon (waiting for one still starting) and wait for
 * the outcome of the first reload that starts after the signal: 0 reloaded,
 * 1 failed (with the daemon's error), not answered in time, the daemon
 * exited, or it publishes no outcome; 7 not running. With `wait: false`, 0
 * once the signal is sent.
 *
 * The state file is read before the signal: its `reloadsStarted` (S) marks
 * where this caller's request begins. Requests during a reload coalesce
 * into one more run, which starts after S was read, so the first outcome
 * with seq > S answers every caller; none waits for a run that started
 * before it asked.
 */
export async function reload(name: string, pidFile: string, o: ReloadOptions = {}): Promise<number> {
  const timeout = o.timeout ?? 30;
  const deadline = performance.now() + timeout * 1000;
  const target = await runningTarget(name, pidFile, deadline, timeout);
  if (!target) return ACTION_NOT_RUNNING;
  const statePath = statePathFor(pidFile);
  try {
    let before: StateRecord | undefined;
    if (o.wait !== false) {
      const r = readState(statePath, target.pid);
      // An outcome from a file someone else could write would be theirs to fake: do not ask for one.
      if (!r.ok && !r.absent) {
        err(`${name}: ${r.reason}; SIGHUP not sent (reload --no-wait sends it without waiting for an outcome)`);
        return 1;
      }
      if (r.ok) before = r.record;
    }
    const e = target.signal(SIGHUP);
    if (e === ESRCH) {
      out(`${name} is not running`);
      return ACTION_NOT_RUNNING;
    }
    if (e !== 0) throw signalError(target.pid, e, "send SIGHUP to");
    if (o.wait === false) {
      out(`reloading ${name} (pid ${target.pid})`);
      return 0;
    }
    if (!before) {
      err(`${name}: sent SIGHUP to pid ${target.pid}, but it publishes no reload outcome (no state file at ${statePath}); use --no-wait`);
      return 1;
    }
    return await awaitOutcome(name, statePath, target, before.reloadsStarted, deadline, timeout);
  } finally {
    target.close();
  }
}

/** The first outcome of a reload that started after `seen` (lowest seq > seen). */
function firstAfter(record: StateRecord, seen: number): ReloadOutcome | undefined {
  let first: ReloadOutcome | undefined;
  for (const r of record.reloads) if (r.seq > seen && (first === undefined || r.seq < first.seq)) first = r;
  return first;
}

function answer(name: string, pid: number, r: ReloadOutcome): number {
  if (r.ok) {
    out(`reloaded ${name} (pid ${pid})`);
    return 0;
  }
  err(`${name}: reload failed: ${printable(r.error ?? "no reason given")}`);
  return 1;
}

/**
 * Poll the state file until a reload after `seen` has an outcome, the
 * daemon exits, or `deadline`: after 1 ms first (a quick reload is done by
 * then), doubling up to every 10 ms.
 */
async function awaitOutcome(name: string, path: string, target: Target, seen: number, deadline: number, timeout: number): Promise<number> {
  const { pid } = target;
  let pause = 1;
  for (;;) {
    const r = readState(path, pid);
    if (r.ok) {
      const found = firstAfter(r.record, seen);
      if (found) return answer(name, pid, found);
      // Stopping is final: a reload not begun by then never runs.
      if (r.record.state === "stopping" && r.record.reloadsStarted <= seen) {
        err(`${name}: pid ${pid} is stopping; the reload will not run`);
        return 1;
      }
    }
    const left = deadline - performance.now();
    if (left <= 0) {
      err(`${name}: no reload outcome from pid ${pid} within ${timeout} s`);
      return 1;
    }
    // The wait is the pause between reads, and ends early when the daemon dies.
    const gone = await target.waitGone(Math.min(pause, left));
    pause = Math.min(pause * 2, 10);
    if (gone) {
      // Its last word, if it published and exited at once (its file may already be gone).
      const last = readState(path, pid);
      const found = last.ok ? firstAfter(last.record, seen) : undefined;
      if (found) return answer(name, pid, found);
      err(`${name}: pid ${pid} exited during the reload`);
      return 1;
    }
  }
}

export interface UpgradeOptions {
  /** Seconds to wait for the new process to be ready and (unless `wait` is false) the old one to exit. Default 60. */
  timeout?: number;
  /** Wait for the old process to exit (default true); false (`--no-wait`): exit once the new one is ready. */
  wait?: boolean;
}

const SIGUSR2 = 12;

/**
 * `upgrade`: SIGUSR2 the daemon, which starts the program anew on its
 * listeners, then follow it: 0 once the PID file names the new pid and the
 * old one has exited (with `wait: false`, once the new one is ready); 1
 * when the new one failed (its error is printed; the old one still
 * serves), another upgrade is in progress, or it took longer than
 * `timeout`; 7 not running.
 */
export async function upgrade(name: string, pidFile: string, o: UpgradeOptions = {}): Promise<number> {
  const timeout = o.timeout ?? 60;
  const deadline = performance.now() + timeout * 1000;
  const target = await runningTarget(name, pidFile, deadline, timeout);
  if (!target) return ACTION_NOT_RUNNING;
  const statePath = statePathFor(pidFile);
  try {
    const r = readState(statePath, target.pid);
    if (!r.ok) {
      err(`${name}: ${r.reason}; SIGUSR2 not sent (without its state file the outcome cannot be told)`);
      return 1;
    }
    const u = r.record.upgrade;
    if (u?.state === "running") {
      err(`${name}: upgrade already in progress (pid ${u.pid ?? target.pid})`);
      return 1;
    }
    const seen = r.record.upgradesStarted ?? 0;
    const e = target.signal(SIGUSR2);
    if (e === ESRCH) {
      out(`${name} is not running`);
      return ACTION_NOT_RUNNING;
    }
    if (e !== 0) throw signalError(target.pid, e, "send SIGUSR2 to");
    let pause = 1;
    let newPid: number | undefined;
    for (;;) {
      if (newPid === undefined) {
        const now = inspectPidFile(pidFile);
        if (now.state === "running" && now.pid !== target.pid) {
          newPid = now.pid;
          if (o.wait === false) {
            out(`upgraded ${name}: pid ${newPid} is serving; pid ${target.pid} is draining`);
            return 0;
          }
        } else {
          const s = readState(statePath, target.pid);
          const up = s.ok ? s.record.upgrade : undefined;
          if (up && up.seq > seen && up.state === "failed") {
            err(`${name}: upgrade failed, pid ${target.pid} still serving: ${printable(up.error ?? "no reason given")}`);
            return 1;
          }
          if (s.ok && s.record.state === "stopping" && !(up && up.seq > seen)) {
            err(`${name}: pid ${target.pid} is stopping; no upgrade`);
            return 1;
          }
        }
      }
      const left = deadline - performance.now();
      if (left <= 0) {
        err(newPid === undefined ? `${name}: no new process ready within ${timeout} s (pid ${target.pid} still serving)` : `${name}: pid ${newPid} is serving, but the old pid ${target.pid} has not exited within ${timeout} s`);
        return 1;
      }
      const gone = await target.waitGone(Math.min(pause, left));
      pause = Math.min(pause * 2, 10);
      if (gone) {
        const now = inspectPidFile(pidFile);
        if (now.state === "running" && now.pid !== target.pid) {
          out(`upgraded ${name}: pid ${target.pid} -> ${now.pid}`);
          return 0;
        }
        err(`${name}: pid ${target.pid} exited during the upgrade, and no new process took over`);
        return 1;
      }
    }
  } finally {
    target.close();
  }
}

export interface StopOptions {
  /** Seconds to wait, from the start of `stop`, for the daemon to exit (and, if it is starting, to write its pid first). */
  timeout: number;
  /** SIGKILL it when the timeout runs out. */
  kill: boolean;
}

/** `stop`: SIGTERM and wait. 0 stopped or not running; 1 still alive (or still starting) at the timeout. */
export async function stop(name: string, pidFile: string, o: StopOptions): Promise<number> {
  const begun = performance.now();
  const deadline = begun + o.timeout * 1000;
  const st = await settle(pidFile, deadline);
  refuse(st, { invalid: 1, unverified: ACTION_NO_PRIVILEGE });
  if (st.state === "starting") {
    throw new DaemonError("NOT_RUNNING", `still starting after ${o.timeout} s (${startingText(st)}); try again or raise --timeout`, { path: pidFile });
  }
  const target = st.state === "running" ? pin(pidFile, st.pid) : undefined;
  if (!target) {
    out(notRunning(name, st, false));
    return 0;
  }
  const { pid } = target;
  try {
    const e = target.signal(SIGTERM);
    if (e === ESRCH) {
      out(`${name} is not running`);
      return 0;
    }
    if (e !== 0) throw signalError(pid, e, "send SIGTERM to");
    const sent = performance.now();
    if (await target.waitGone(deadline - sent)) {
      out(`stopped ${name} (pid ${pid})`);
      return 0;
    }
    if (!o.kill) {
      // Time spent waiting for a starting daemon's pid came out of the same timeout.
      const waited = sent - begun < 100 ? o.timeout : Math.round((performance.now() - sent) / 100) / 10;
      err(`${name}: pid ${pid} is still running ${waited} s after SIGTERM; add --kill to SIGKILL it`);
      return 1;
    }
    const k = target.signal(SIGKILL);
    if (k !== 0 && k !== ESRCH) throw signalError(pid, k, "send SIGKILL to");
    if (!(await target.waitGone(5000))) {
      err(`${name}: pid ${pid} survived SIGKILL for 5 s (stuck in the kernel?)`);
      return 1;
    }
  } finally {
    target.close();
  }
  // It could not remove its PID file; take it over and remove it.
  try {
    releasePidFile(acquirePidFile(pidFile));
  } catch {
    // Someone started a new one meanwhile, or it is not ours: leave it.
  }
  out(`killed ${name} (pid ${pid}) after ${o.timeout} s`);
  return 0;
}
