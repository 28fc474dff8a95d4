/**
 * `upgrade` (SIGUSR2), as nginx's binary upgrade: the running daemon starts
 * the program as it is on disk now, handing it the listeners and the locked
 * PID file, and waits for its readiness on a status pipe; the new one takes
 * the PID file at ready. Both sides of that handover live here.
 */
import { DaemonError, errorText } from "./errors.ts";
import { closeFd, ESRCH, pidfdOpen, pidfdSendSignal, pipe, pollIn, POLLIN, sendSignal, setCloexec, setProcessName, writeAll } from "./ffi.ts";
import { handover, HANDOVER_FIRST_FD } from "./listeners.ts";
import { RELAY_MARKER, STAGE_MARKER } from "./marker.ts";
import type { PidFileLock } from "./pidfile.ts";
import {
  checkStageFds, encodeInt, failureFrame, FRAME_FAILED, FRAME_PID, FRAME_READY, FRAME_STOPPING, FrameReader, parentPipeHandle, payloadInt, payloadJson, STAGE_PIDFILE_FD, STAGE_STATUS_FD, type FailureMessage,
} from "./protocol.ts";
import type { DaemonHandle } from "./stage.ts";

/** Tells the new process it takes over from pid N, and in which mode N ran: `N:daemon` or `N:foreground`. */
export const UPGRADE_ENV = "BUN_DAEMON_UPGRADE";

/** The environment this process started with, before the lifecycle took the supervisor's variables out: the successor gets the same. */
let startEnv: Record<string, string> | undefined;

/** Keep the start-up environment (called once, first thing in a daemon). */
export function rememberStartEnv(): void {
  if (startEnv) return;
  startExecPath = process.execPath;
  startEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined) startEnv[k] = v;
}

/** That environment (the live one if none was kept): what a new process of this daemon starts from. */
export function startEnvironment(): Record<string, string> {
  return { ...(startEnv ?? (process.env as Record<string, string>)) };
}

/**
 * process.execPath as it was at start. Bun reads /proc/self/exe the first
 * time it is asked: asked only at an upgrade, after the binary was
 * replaced on disk, it names "… (deleted)", the file that is gone.
 */
let startExecPath: string | undefined;

/** The argv that starts this program again (as the launcher's re-exec, src/launch.ts), from the path it started from. */
export function programArgv(): string[] {
  const { reexecArgv } = require("./launch.ts") as typeof import("./launch.ts");
  const { argv } = reexecArgv();
  return [startExecPath ?? process.execPath, ...argv.slice(1)];
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

/** How many fds (from 0 on) the relay passes on, in its environment. */
const RELAY_FDS_ENV = "BUN_DAEMON_RELAY_FDS";

/**
 * The new process, as the old one sees it: its pid (from the relay's
 * FRAME_PID), a pidfd to signal it by (it is not our child: no waitpid,
 * and its pid could be reused), the relay that started it, and what its
 * status pipe says. The pipe ends when every holder of its write end is
 * gone: the relay, and the new process, which keeps it until ready.
 */
class Successor {
  pid: number | undefined;
  outcome: SuccessorOutcome | undefined;
  /** Extra grace it announced while stopping before ready (FRAME_STOPPING). */
  extraMs = 0;
  /** The status pipe's end (after ready: the new process closed it). */
  readonly ended: Promise<void>;
  /** The first of: ready, failed, the pipe's end. */
  readonly settled: Promise<void>;
  private pidfd = -1;

  constructor(readonly relay: ReturnType<typeof Bun.spawn>, statusR: number, started?: (pid: number) => void) {
    let settle!: () => void;
    this.settled = new Promise<void>((r) => (settle = r));
    const frames = new FrameReader();
    this.ended = (async () => {
      try {
        for await (const chunk of Bun.file(statusR).stream()) {
          for (const f of frames.push(chunk)) {
            if (f.type === FRAME_PID) {
              this.known(payloadInt(f));
              started?.(this.pid!);
            } else if (f.type === FRAME_READY) this.outcome ??= { ok: true, pid: payloadJson<{ pid: number }>(f).pid };
            else if (f.type === FRAME_FAILED) this.outcome ??= { ok: false, ...(this.pid === undefined ? {} : { pid: this.pid }), error: payloadJson<FailureMessage>(f).message };
            else if (f.type === FRAME_STOPPING) this.extraMs = payloadJson<{ graceMs: number }>(f).graceMs;
          }
          if (this.outcome) settle();
        }
      } catch {}
      closeFd(statusR);
      settle();
    })();
  }

  private known(pid: number): void {
    this.pid = pid;
    const fd = pidfdOpen(pid);
    if (fd >= 0) this.pidfd = fd;
  }

  kill(sig: number): void {
    if (this.pidfd >= 0) pidfdSendSignal(this.pidfd, sig);
    // Not started yet (the relay is still at it): the relay goes, and with it the start.
    else if (this.pid === undefined) {
      try {
        this.relay.kill(sig);
      } catch {}
    }
  }

  /** SIGTERM, then SIGKILL if it has not exited after the grace; the pidfd is closed once it has. */
  stop(graceMs = 0): void {
    this.kill(15);
    const t = setTimeout(() => this.kill(9), EXIT_GRACE_MS + graceMs);
    void this.ended.then(() => {
      clearTimeout(t);
      this.close();
    });
  }

  close(): void {
    if (this.pidfd >= 0) closeFd(this.pidfd);
    this.pidfd = -1;
  }
}

const EXIT_GRACE_MS = 5000;

/**
 * Start the successor and wait until it is ready, failed, exited or timed
 * out (then it is stopped: SIGTERM, SIGKILL 5 s later). Never throws.
 *
 * The new process is started through a relay (the program again, argv[0]
 * RELAY_MARKER) that starts it and exits at once: the new process is then
 * the child of whatever reaps orphans here (systemd, for a service) before
 * it says MAINPID=. systemd 252 takes a main pid that is not its child for
 * an "alien" it cannot watch, and at the next stop SIGKILLs it at once
 * (test/systemd-upgrade.test.ts); nginx's binary upgrade has that problem.
 */
export async function startSuccessor(o: SuccessorOptions): Promise<SuccessorOutcome> {
  let statusR = -1;
  let statusW = -1;
  let succ: Successor | undefined;
  try {
    if (o.lock.fd < 0) return { ok: false, error: "this daemon has no PID file, which the new process must take over" };
    [statusR, statusW] = pipe("upgrade: create the status pipe");
    const h = handover();
    const env: Record<string, string> = { ...startEnvironment(), ...h.env, [UPGRADE_ENV]: `${process.pid}:${o.mode}` };
    // Ours, not the new process's: sockets come through the handover, and the watchdog applies to whichever pid is main.
    for (const k of ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "WATCHDOG_PID"]) delete env[k];
    // Positions 3, 4, then the listeners from HANDOVER_FIRST_FD on (the relay keeps them there).
    const extra: number[] = [statusW, o.lock.fd];
    if (3 + extra.length !== HANDOVER_FIRST_FD) throw new Error(`the handed-over fds would start at ${3 + extra.length}, not ${HANDOVER_FIRST_FD}`);
    env[RELAY_FDS_ENV] = String(3 + extra.length + h.fds.length);
    const relay = Bun.spawn(programArgv(), { argv0: RELAY_MARKER, env, stdio: ["ignore", 1, 2, ...extra, ...h.fds] as never });
    closeFd(statusW);
    statusW = -1;
    succ = new Successor(relay, statusR, o.started);
    statusR = -1;
    const s = succ;
    const abandon = () => s.stop(s.extraMs);
    o.signal?.addEventListener("abort", abandon, { once: true });
    try {
      const r = await waitReady(s, o.readyTimeout);
      if (r.ok && o.signal?.aborted) {
        s.stop();
        return { ok: false, pid: r.pid, error: "this daemon began stopping meanwhile; stopped the new process" };
      }
      return r;
    } finally {
      o.signal?.removeEventListener("abort", abandon);
    }
  } catch (err) {
    if (succ) succ.stop();
    return { ok: false, ...(succ?.pid === undefined ? {} : { pid: succ.pid }), error: `cannot start the new process: ${errorText(err)}` };
  } finally {
    if (statusW >= 0) closeFd(statusW);
    if (statusR >= 0) closeFd(statusR);
  }
}

/**
 * The relay's whole life (argv[0] RELAY_MARKER): start the program as the
 * daemon stage with every fd it was given in the same place, tell the old
 * daemon the new pid (FRAME_PID on the status pipe), exit. Never returns.
 */
export function relay(): never {
  const count = Number(process.env[RELAY_FDS_ENV]);
  delete process.env[RELAY_FDS_ENV];
  try {
    if (!Number.isInteger(count) || count < 5) throw new Error(`${RELAY_FDS_ENV} is not a count of fds`);
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env)) if (v !== undefined) env[k] = v;
    const fds = Array.from({ length: count }, (_, i) => i);
    const proc = Bun.spawn(programArgv(), { argv0: STAGE_MARKER, env, stdio: fds as never });
    writeAll(STAGE_STATUS_FD, encodeInt(FRAME_PID, proc.pid));
    process.exit(0);
  } catch (err) {
    writeAll(STAGE_STATUS_FD, failureFrame(new DaemonError("FORK", `upgrade: the relay could not start the new process: ${errorText(err)}`), 1));
    process.exit(1);
  }
}

/** Wait for the outcome; a new process not ready in `timeoutMs` is stopped. */
async function waitReady(s: Successor, timeoutMs: number): Promise<SuccessorOutcome> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timedOut = new Promise<"timeout">((r) => {
    if (timeoutMs > 0) timer = setTimeout(() => r("timeout"), timeoutMs);
  });
  const first = await Promise.race([s.settled.then(() => "settled" as const), timedOut]);
  clearTimeout(timer);
  if (s.outcome?.ok) {
    // Its pidfd has no more use: it is ours to signal no longer once it is the daemon.
    s.close();
    return s.outcome;
  }
  const pid = s.pid ?? 0;
  if (first === "timeout") {
    s.stop(s.extraMs);
    return { ok: false, ...(pid ? { pid } : {}), error: `the new process (pid ${pid || "not started"}) was not ready within ${timeoutMs} ms; stopped it. Raise --ready-timeout if its init is slow` };
  }
  // Failed (it exits by itself) or already gone: wait for its end, so nothing is left when we answer.
  const gone = await Promise.race([s.ended.then(() => true), Bun.sleep(EXIT_GRACE_MS + s.extraMs).then(() => false)]);
  if (!gone) s.stop();
  else s.close();
  if (s.outcome) return s.outcome;
  const relayCode = await s.relay.exited;
  if (s.pid === undefined) return { ok: false, error: `the relay starting the new process exited with status ${relayCode} before it started it` };
  return { ok: false, pid, error: `the new process (pid ${pid}) exited before it was ready; its log says why` };
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
 * In the new process until it is ready: call `gone` once if the daemon it
 * takes over from (`pid`) exits first. It is not that daemon's child (the
 * relay started it), so nothing else would stop it: a SIGKILLed old daemon,
 * or one that stopped before it heard our pid, would leave a daemon nobody
 * knows of. Watched through a pidfd (readable once the process has exited),
 * polled every 100 ms; returns the function that ends the watch.
 */
export function watchPredecessor(pid: number, gone: () => void): () => void {
  const fd = pidfdOpen(pid);
  const exited = () => (fd >= 0 ? ((pollIn([fd], 0)[0] ?? 0) & POLLIN) !== 0 : sendSignal(pid, 0) === ESRCH);
  let timer: ReturnType<typeof setInterval> | undefined;
  const end = () => {
    clearInterval(timer);
    timer = undefined;
    if (fd >= 0) closeFd(fd);
  };
  const check = () => {
    if (timer === undefined || !exited()) return;
    end();
    gone();
  };
  timer = setInterval(check, 100);
  // Already gone (it was SIGKILLed before we got here): at once, from the event loop.
  setImmediate(check);
  return () => {
    if (timer !== undefined) end();
  };
}

/**
 * The new process's side: a DaemonHandle on the status pipe (fd 3) whose
 * PID file (fd 4, the old one's open file and so its lock) stays passive
 * until ready(). Output is not moved: it already goes where the old
 * daemon's went (its log file, /dev/null, the journal).
 */
export function successorHandle(opts: { name: string; pidFile: string; reopen?: () => boolean }): DaemonHandle {
  try {
    checkStageFds(opts.pidFile);
  } catch (err) {
    throw new DaemonError("STAGE", `started to take over a daemon, but without its handover (${errorText(err)})`, { cause: err });
  }
  setCloexec(STAGE_STATUS_FD, true);
  setCloexec(STAGE_PIDFILE_FD, true);
  setProcessName(opts.name);
  const pidFile: PidFileLock = { path: opts.pidFile, fd: STAGE_PIDFILE_FD, passive: true };
  return parentPipeHandle({ pidFile, what: "the new process", closeAtReady: true, ...(opts.reopen ? { reopen: opts.reopen } : {}) });
}
