/**
 * The control commands that act on a running daemon through its PID file:
 * stop, status, reload. Each returns the LSB exit status it prints about.
 */
import { writeSync } from "node:fs";
import { DaemonError } from "./errors.ts";
import { ESRCH, sendSignal } from "./ffi.ts";
import { acquirePidFile, inspectPidFile, releasePidFile, type PidFileState } from "./pidfile.ts";
import { isAlive, uptimeSeconds } from "./proc.ts";

/** LSB init-script exit statuses (status action / other actions). */
export const STATUS_RUNNING = 0;
export const STATUS_DEAD_PIDFILE = 1;
export const STATUS_NOT_RUNNING = 3;
export const ACTION_NOT_RUNNING = 7;

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

/** A running daemon's pid, waiting briefly if its launcher has not written it yet. */
async function runningPid(pidFile: string): Promise<{ st: PidFileState; pid?: number }> {
  for (let i = 0; ; i++) {
    const st = inspectPidFile(pidFile);
    if (st.state !== "running" || st.pid !== undefined || i >= 50) return { st, ...(st.state === "running" && st.pid ? { pid: st.pid } : {}) };
    await Bun.sleep(20);
  }
}

function signal(pid: number, sig: number, what: string): boolean {
  const e = sendSignal(pid, sig);
  if (e === 0) return true;
  if (e === ESRCH) return false;
  throw new DaemonError("SIGNAL", `cannot ${what} pid ${pid}: ${e === 1 ? "EPERM (run as the daemon's user or root)" : `errno ${e}`}`, { pid, errno: e, syscall: "kill" });
}

async function waitGone(pid: number, ms: number): Promise<boolean> {
  const start = performance.now();
  while (isAlive(pid)) {
    const waited = performance.now() - start;
    if (waited >= ms) return false;
    // A daemon with quick hooks is gone in a few ms: look often at first.
    await Bun.sleep(waited < 50 ? 1 : 10);
  }
  return true;
}

/** `status`: 0 running, 3 not running, 1 PID file present but no daemon holds it. */
export async function status(name: string, pidFile: string): Promise<number> {
  const st = inspectPidFile(pidFile);
  if (st.state === "absent") {
    out(`${name} is not running`);
    return STATUS_NOT_RUNNING;
  }
  if (st.state === "stale") {
    out(`${name} is not running (stale PID file ${pidFile}${st.pid ? ` names pid ${st.pid}, which does not hold it` : ""})`);
    return STATUS_DEAD_PIDFILE;
  }
  if (st.pid === undefined) {
    out(`${name} is starting (PID file ${pidFile} is locked)`);
    return STATUS_RUNNING;
  }
  const up = uptimeSeconds(st.pid);
  out(`${name} is running (pid ${st.pid}${up === undefined ? "" : `, up ${formatUptime(up)}`})`);
  return STATUS_RUNNING;
}

/** `reload`: SIGHUP the daemon. 0 sent, 7 not running. */
export async function reload(name: string, pidFile: string): Promise<number> {
  const { pid } = await runningPid(pidFile);
  if (pid === undefined || !signal(pid, SIGHUP, "send SIGHUP to")) {
    out(`${name} is not running`);
    return ACTION_NOT_RUNNING;
  }
  out(`reloading ${name} (pid ${pid})`);
  return 0;
}

export interface StopOptions {
  /** Seconds to wait for the daemon to exit after SIGTERM. */
  timeout: number;
  /** SIGKILL it when the timeout runs out. */
  kill: boolean;
}

/** `stop`: SIGTERM and wait. 0 stopped or not running; 1 still alive at the timeout. */
export async function stop(name: string, pidFile: string, o: StopOptions): Promise<number> {
  const { st, pid } = await runningPid(pidFile);
  if (pid === undefined) {
    if (st.state === "running") {
      throw new DaemonError("NOT_RUNNING", `${name} is still starting (PID file ${pidFile} is locked but names no pid yet); try again`);
    }
    out(`${name} is not running`);
    return 0;
  }
  if (!signal(pid, SIGTERM, "send SIGTERM to")) {
    out(`${name} is not running`);
    return 0;
  }
  if (await waitGone(pid, o.timeout * 1000)) {
    out(`stopped ${name} (pid ${pid})`);
    return 0;
  }
  if (!o.kill) {
    err(`${name}: pid ${pid} is still running ${o.timeout} s after SIGTERM; add --kill to SIGKILL it`);
    return 1;
  }
  signal(pid, SIGKILL, "send SIGKILL to");
  if (!(await waitGone(pid, 5000))) {
    err(`${name}: pid ${pid} survived SIGKILL for 5 s (stuck in the kernel?)`);
    return 1;
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
