/**
 * `upgrade` (SIGUSR2), as nginx's binary upgrade: the running daemon starts
 * the program as it is on disk now, handing it the listeners and the locked
 * PID file, and waits for its readiness on a status pipe; the new one takes
 * the PID file at ready. Both sides of that handover live here.
 */
import { fstatSync, statSync } from "node:fs";
import { DaemonError, errorText } from "./errors.ts";
import { closeFd, pipe, setCloexec, setProcessName } from "./ffi.ts";
import { handover, HANDOVER_FIRST_FD } from "./listeners.ts";
import { STAGE_MARKER } from "./marker.ts";
import type { PidFileLock } from "./pidfile.ts";
import {
  FRAME_FAILED, FRAME_READY, FRAME_STOPPING, FrameReader, parentPipeHandle, payloadJson, STAGE_PIDFILE_FD, STAGE_STATUS_FD, type FailureMessage,
} from "./protocol.ts";
import type { DaemonHandle } from "./stage.ts";

/** Tells the new process it takes over from pid N, and in which mode N ran: `N:daemon` or `N:foreground`. */
export const UPGRADE_ENV = "BUN_DAEMON_UPGRADE";

/** The environment this process started with, before the lifecycle took the supervisor's variables out: the successor gets the same. */
let startEnv: Record<string, string> | undefined;

/** Keep the start-up environment (called once, first thing in a daemon). */
export function rememberStartEnv(): void {
  if (startEnv) return;
  startEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined) startEnv[k] = v;
}

/** That environment (the live one if none was kept): what a new process of this daemon starts from. */
export function startEnvironment(): Record<string, string> {
  return { ...(startEnv ?? (process.env as Record<string, string>)) };
}

/** The argv that starts this program again (as the launcher's re-exec, src/launch.ts). */
export function programArgv(): string[] {
  const { reexecArgv } = require("./launch.ts") as typeof import("./launch.ts");
  const { file, argv } = reexecArgv();
  return [file, ...argv.slice(1)];
}

export interface SuccessorOptions {
  lock: PidFileLock;
  mode: "daemon" | "foreground";
  /** ms the new process has to be ready (readyTimeout). */
  readyTimeout: number;
  /** Called with the new pid as soon as it exists. */
  started?(pid: number): void;
  /** Aborted when this daemon stops meanwhile: the new process, not ready yet, is stopped with it. */
  signal?: AbortSignal;
}

export type SuccessorOutcome = { ok: true; pid: number } | { ok: false; pid?: number; error: string };

/**
 * Start the successor and wait until it is ready, failed, exited or timed
 * out (then it is stopped: SIGTERM, SIGKILL 5 s later). Never throws.
 */
export async function startSuccessor(o: SuccessorOptions): Promise<SuccessorOutcome> {
  let statusR = -1;
  let statusW = -1;
  let proc: ReturnType<typeof Bun.spawn> | undefined;
  try {
    if (o.lock.fd < 0) return { ok: false, error: "this daemon has no PID file, which the new process must take over" };
    [statusR, statusW] = pipe("upgrade: create the status pipe");
    const h = handover();
    const argv = programArgv();
    const env: Record<string, string> = { ...startEnvironment(), ...h.env, [UPGRADE_ENV]: `${process.pid}:${o.mode}` };
    // Ours, not the new process's: sockets come through the handover, and the watchdog applies to whichever pid is main.
    for (const k of ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "WATCHDOG_PID"]) delete env[k];
    // Positions 3, 4, then the listeners from HANDOVER_FIRST_FD on.
    const extra: Array<number | "ignore"> = [statusW, o.lock.fd];
    while (3 + extra.length < HANDOVER_FIRST_FD) extra.push("ignore");
    proc = Bun.spawn(argv, { argv0: STAGE_MARKER, env, stdio: ["ignore", 1, 2, ...extra, ...h.fds] as never });
    closeFd(statusW);
    statusW = -1;
    o.started?.(proc.pid);
    const p = proc;
    const abandon = () => stopQuietly(p);
    o.signal?.addEventListener("abort", abandon, { once: true });
    try {
      const r = await waitReady(proc, statusR, o.readyTimeout);
      if (r.ok && o.signal?.aborted) {
        stopQuietly(proc);
        return { ok: false, pid: proc.pid, error: "this daemon began stopping meanwhile; stopped the new process" };
      }
      return r;
    } finally {
      o.signal?.removeEventListener("abort", abandon);
    }
  } catch (err) {
    if (proc) stopQuietly(proc);
    return { ok: false, ...(proc ? { pid: proc.pid } : {}), error: `cannot start the new process: ${errorText(err)}` };
  } finally {
    if (statusW >= 0) closeFd(statusW);
  }
}

async function waitReady(proc: ReturnType<typeof Bun.spawn>, statusR: number, timeoutMs: number): Promise<SuccessorOutcome> {
  const frames = new FrameReader();
  let outcome: SuccessorOutcome | undefined;
  let extraMs = 0;
  const read = (async () => {
    for await (const chunk of Bun.file(statusR).stream()) {
      for (const f of frames.push(chunk)) {
        if (f.type === FRAME_READY) outcome ??= { ok: true, pid: proc.pid };
        else if (f.type === FRAME_FAILED) outcome ??= { ok: false, pid: proc.pid, error: payloadJson<FailureMessage>(f).message };
        else if (f.type === FRAME_STOPPING) extraMs = payloadJson<{ graceMs: number }>(f).graceMs;
      }
      if (outcome?.ok) return;
    }
  })().catch(() => {});
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timedOut = new Promise<"timeout">((r) => {
    if (timeoutMs > 0) timer = setTimeout(() => r("timeout"), timeoutMs);
  });
  const first = await Promise.race([read.then(() => "read" as const), proc.exited.then(() => "exited" as const), timedOut]);
  clearTimeout(timer);
  if (outcome?.ok) {
    closeFd(statusR);
    return outcome;
  }
  if (first === "timeout") {
    stopQuietly(proc, extraMs);
    closeFd(statusR);
    return { ok: false, pid: proc.pid, error: `the new process (pid ${proc.pid}) was not ready within ${timeoutMs} ms; stopped it. Raise --ready-timeout if its init is slow` };
  }
  // It failed or exited: it ends by itself; wait for it so nothing is left.
  const code = await Promise.race([proc.exited, Bun.sleep(EXIT_GRACE_MS + extraMs).then(() => undefined)]);
  if (code === undefined) stopQuietly(proc);
  await read;
  closeFd(statusR);
  if (outcome) return outcome;
  return { ok: false, pid: proc.pid, error: `the new process (pid ${proc.pid}) exited before it was ready (${proc.signalCode ? `killed by ${proc.signalCode}` : `status ${proc.exitCode}`})` };
}

const EXIT_GRACE_MS = 5000;

function stopQuietly(proc: ReturnType<typeof Bun.spawn>, graceMs = 0): void {
  try {
    proc.kill("SIGTERM");
  } catch {}
  const t = setTimeout(() => {
    try {
      proc.kill("SIGKILL");
    } catch {}
  }, EXIT_GRACE_MS + graceMs);
  void proc.exited.then(() => clearTimeout(t));
}

/** In the new process: whom it takes over from, read once (and removed from the environment). */
let predecessor: { pid: number; mode: "daemon" | "foreground" } | null | undefined;

export function takeUpgradeEnv(): { pid: number; mode: "daemon" | "foreground" } | undefined {
  if (predecessor === undefined) {
    const v = process.env[UPGRADE_ENV];
    delete process.env[UPGRADE_ENV];
    const m = v === undefined ? null : /^(\d+):(daemon|foreground)$/.exec(v);
    predecessor = m ? { pid: Number(m[1]), mode: m[2] as "daemon" | "foreground" } : null;
  }
  return predecessor ?? undefined;
}

/**
 * The new process's side: a DaemonHandle on the status pipe (fd 3) whose
 * PID file (fd 4, the old one's open file and so its lock) stays passive
 * until ready(). Output is not moved: it already goes where the old
 * daemon's went (its log file, /dev/null, the journal).
 */
export function successorHandle(opts: { name: string; pidFile: string; reopen?: () => boolean }): DaemonHandle {
  try {
    if (!fstatSync(STAGE_STATUS_FD).isFIFO()) throw new Error("fd 3 is not a pipe");
    const a = fstatSync(STAGE_PIDFILE_FD);
    const b = statSync(opts.pidFile);
    if (a.ino !== b.ino || a.dev !== b.dev) throw new Error(`fd 4 is not ${opts.pidFile}`);
  } catch (err) {
    throw new DaemonError("STAGE", `started to take over a daemon, but without its handover (${errorText(err)})`, { cause: err });
  }
  setCloexec(STAGE_STATUS_FD, true);
  setCloexec(STAGE_PIDFILE_FD, true);
  setProcessName(opts.name);
  const pidFile: PidFileLock = { path: opts.pidFile, fd: STAGE_PIDFILE_FD, passive: true };
  return parentPipeHandle({ pidFile, what: "the new process", closeAtReady: true, ...(opts.reopen ? { reopen: opts.reopen } : {}) });
}
