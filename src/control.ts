/**
 * The control commands that act on a running daemon through its PID file:
 * stop, status, reload. Each returns the LSB exit status it prints about.
 * A daemon is signalled only through a pidfd opened on the pid that was
 * verified to hold the PID file's lock, so a recycled pid is never hit.
 */
import { writeSync } from "node:fs";
import { DaemonError } from "./errors.ts";
import { closeFd, ENOSYS, ESRCH, pidfdOpen, pidfdSendSignal, pollIn, POLLIN, sendSignal } from "./ffi.ts";
import { acquirePidFile, describeHolder, foreignText, inspectPidFile, releasePidFile, type PidFileState } from "./pidfile.ts";
import { isAlive, uptimeSeconds } from "./proc.ts";

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

/**
 * `status`: 0 running, 3 not running, 1 PID file present but no daemon holds
 * it, 4 status unknown (the path is not a PID file, or the pid it names
 * cannot be checked by this user).
 *
 * A daemon that is still starting (locked, no pid yet) reports 0: LSB
 * defines 0 as "program is running or service is OK", and the process does
 * run and holds the lock; answering 3 would invite `status || start` to
 * start a second one (which would fail: already running). Readiness is what
 * `start` waits for before it returns; `status` reports the process.
 */
export async function status(name: string, pidFile: string): Promise<number> {
  const st = inspectPidFile(pidFile);
  refuse(st, { invalid: STATUS_UNKNOWN, unverified: STATUS_UNKNOWN });
  switch (st.state) {
    case "absent":
      out(`${name} is not running`);
      return STATUS_NOT_RUNNING;
    case "stale":
    case "foreign":
      out(notRunning(name, st, true));
      return STATUS_DEAD_PIDFILE;
    case "starting":
      out(`${name} is starting (${startingText(st)})`);
      return STATUS_RUNNING;
    case "running": {
      const up = uptimeSeconds(st.pid);
      out(`${name} is running (pid ${st.pid}${up === undefined ? "" : `, up ${formatUptime(up)}`})`);
      return STATUS_RUNNING;
    }
  }
  return STATUS_UNKNOWN;
}

export interface ReloadOptions {
  /** Seconds to wait for a daemon that is still starting to write its pid. Default 30. */
  timeout?: number;
}

/** `reload`: SIGHUP the daemon (waiting for one still starting). 0 sent, 7 not running, 1 still starting. */
export async function reload(name: string, pidFile: string, o: ReloadOptions = {}): Promise<number> {
  const timeout = o.timeout ?? 30;
  const st = await settle(pidFile, performance.now() + timeout * 1000);
  refuse(st, { invalid: 1, unverified: ACTION_NO_PRIVILEGE });
  if (st.state === "starting") {
    throw new DaemonError("NOT_RUNNING", `still starting after ${timeout} s (${startingText(st)}); try again`, { path: pidFile });
  }
  const target = st.state === "running" ? pin(pidFile, st.pid) : undefined;
  if (!target) {
    out(notRunning(name, st, false));
    return ACTION_NOT_RUNNING;
  }
  try {
    const e = target.signal(SIGHUP);
    if (e === ESRCH) {
      out(`${name} is not running`);
      return ACTION_NOT_RUNNING;
    }
    if (e !== 0) throw signalError(target.pid, e, "send SIGHUP to");
    out(`reloading ${name} (pid ${target.pid})`);
    return 0;
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
