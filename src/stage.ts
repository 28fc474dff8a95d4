/**
 * The daemon stage: the re-executed program, recognised by its argv[0]
 * (never inherited by children, never in the environment). The launcher
 * hands it the status pipe on fd 3 and the locked PID file on fd 4.
 */
import { DaemonError, errorText } from "./errors.ts";
import {
  clearNonblock, closeFd, O_NOCTTY, O_RDONLY, O_RDWR, openFile, readInto, redirectFd, setCloexec, setNonblock, setProcessName, writeAll,
} from "./ffi.ts";
import { accountOf } from "./environment.ts";
import { openLogFile, releasePidFile, writePid, type PidFileLock } from "./pidfile.ts";
import { fdTarget, listFds } from "./proc.ts";
import {
  checkStageFds, encodeBytes, encodeJson, failureFrame, FRAME_OUTPUT, FRAME_READY, FRAME_STOPPING, OUTPUT_CHUNK, STAGE_PIDFILE_FD, STAGE_STATUS_FD,
} from "./protocol.ts";

export { isDaemonStage, STAGE_MARKER } from "./marker.ts";


export interface StageOptions {
  name: string;
  pidFile: string;
  logFile?: string;
  /** Directory to change to; daemon(7) says "/" so no mount is kept busy. */
  cwd: string;
}

/** The daemon side of daemonize(): tell the launcher how startup went. */
export interface DaemonHandle {
  /** This daemon's pid. */
  readonly pid: number;
  /** The PID file this daemon holds locked; removed when the process exits. */
  readonly pidFile: PidFileLock;
  /**
   * Declare readiness: stdout/stderr move to the log file (or /dev/null) and
   * the launcher exits 0. Later calls do nothing. `stopMs`, the longest
   * this daemon's stop takes, is for a worker's primary (which waits that
   * long before SIGKILL); a launcher has no use for it.
   */
  ready(stopMs?: number): void;
  /**
   * Report that startup failed: the launcher prints `error`, waits for this
   * process to exit (SIGKILL after 5 s) and exits with `exitCode` (default 1).
   * The caller still has to exit. Later calls do nothing.
   */
  fail(error: unknown, exitCode?: number): void;
  /**
   * Tell the launcher that shutdown began before readiness and may take up
   * to `graceMs`, so it waits that long before it resorts to SIGKILL.
   */
  stopping(graceMs: number): void;
  /**
   * Reopen the log file (after logrotate moved it). True when it was
   * reopened; false when there was none to reopen: no --log-file, or not
   * ready yet (until then output goes to the launcher, not the file).
   */
  reopenLog(): boolean;
  /** True once ready() or fail() has been called. */
  readonly settled: boolean;
}

/** Each handle's log path setter, for moveIntoRoot(): not a method, so the public DaemonHandle stays as it is. */
const logPaths = new WeakMap<DaemonHandle, (path: string) => void>();

/**
 * After a chroot: the PID file and the log file by their paths inside the
 * root (privileges.ts rootPaths()), so the removal at exit and the reopen
 * on SIGUSR1 still reach them.
 */
export function moveIntoRoot(handle: DaemonHandle, paths: { pidFile: string; logFile?: string }): void {
  handle.pidFile.path = paths.pidFile;
  if (paths.logFile !== undefined) logPaths.get(handle)?.(paths.logFile);
}

function openLog(path: string, trustedUid: number | undefined): number {
  // The same checks as the launcher's, again on every reopen: after logrotate the path is a new file.
  return openLogFile(path, trustedUid);
}

/**
 * Point every fd that refers to `target` (as /proc/self/fd shows it) at
 * `fd`, each keeping its close-on-exec flag (the log fd and Bun's private
 * dups of 1/2 are close-on-exec; 1 and 2 are not).
 */
export function redirectAll(target: string | undefined, fd: number, keep = -1): void {
  if (target === undefined) return;
  for (const n of listFds()) {
    if (n !== fd && n !== keep && fdTarget(n) === target) redirectFd(fd, n, "redirect output");
  }
}

/**
 * After ready, programs spawned during init still write to the startup
 * pipe (their stdout/stderr are copies of ours). Once the launcher has gone
 * nobody would read it: their next write would fail with EPIPE or kill them
 * with SIGPIPE. So the daemon itself becomes the reader, copying what they
 * write to the log file (or dropping it) until the last of them closes it.
 */
function adoptStartupPipe(readFd: number, logFd: number): void {
  const pump = async () => {
    for await (const chunk of Bun.file(readFd).stream()) {
      if (logFd >= 0) writeAll(logFd, chunk);
    }
  };
  pump()
    .catch(() => {})
    .finally(() => closeFd(readFd));
}

/**
 * Read what is in the startup pipe now, without waiting (on our own open
 * file description: the launcher's read end stays blocking), and send it
 * to the launcher as FRAME_OUTPUT frames, in order. Under load the launcher
 * may not have drained the pipe when ready() comes; without this the
 * daemon's pump (adoptStartupPipe) would read the last startup lines and
 * the terminal would never see them. True when it read to the end: no
 * write end is left, so there is nothing to pump.
 */
function handOverUnread(readFd: number, send: (frame: Uint8Array) => void): boolean {
  setNonblock(readFd);
  const buf = new Uint8Array(OUTPUT_CHUNK);
  let n: number;
  for (;;) {
    n = readInto(readFd, buf);
    if (n <= 0) break;
    send(encodeBytes(FRAME_OUTPUT, buf.subarray(0, n)));
  }
  clearNonblock(readFd);
  // 0 is end of file: no write end is left (nothing spawned during init still holds one).
  return n === 0;
}

/**
 * Take over from the launcher. Throws STAGE if this process was not started
 * by a launcher (fd 3 is not a pipe, fd 4 is not the PID file).
 *
 * The PID file stays empty (locked: "starting") until the pid is written,
 * because until this process handles SIGHUP a `reload` would kill it. With
 * `deferPid` the caller writes it once its handlers exist; otherwise it is
 * written here, when the program's imports are done.
 */
export function enterStage(opts: StageOptions, deferPid = false): DaemonHandle {
  try {
    checkStageFds(opts.pidFile);
  } catch (err) {
    throw new DaemonError(
      "STAGE",
      `started as a daemon stage without a launcher (${errorText(err)}); run the program without a bun-daemon argv[0]`,
      { cause: err },
    );
  }
  // Programs the daemon spawns must not hold our status pipe or lock.
  setCloexec(STAGE_STATUS_FD, true);
  setCloexec(STAGE_PIDFILE_FD, true);
  // The startup output pipe: every fd still pointing at it at ready() is
  // moved, including the private dups Bun makes of fds 1 and 2 when
  // process.stdout/stderr are first used.
  const outPipe = fdTarget(1);
  // The user the daemon drops to (a `user` option) owns its log file; looked up as the launcher does.
  const user = (opts as { user?: string | number }).user;
  const logUid = user === undefined ? undefined : accountOf(user).uid;
  const logFd = opts.logFile === undefined ? -1 : openLog(opts.logFile, logUid);
  let logPath = opts.logFile;
  process.chdir(opts.cwd);
  setProcessName(opts.name);

  let settled = false;
  // Output moves to the log file at ready() only: fail() settles without it.
  let isReady = false;
  // After READY the pipe is closed at once; otherwise it stays open until
  // this process exits, so its closing tells the launcher we are gone.
  const send = (frame: Uint8Array, close = false) => {
    writeAll(STAGE_STATUS_FD, frame);
    if (close) closeFd(STAGE_STATUS_FD);
  };
  const failWith = (error: unknown, exitCode = 1) => {
    if (settled) return;
    settled = true;
    send(failureFrame(error, exitCode));
  };
  const pidFile: PidFileLock = { path: opts.pidFile, fd: STAGE_PIDFILE_FD };
  if (!deferPid) writePid(pidFile, process.pid);
  process.once("exit", (code) => {
    // However the daemon ends (process.exit included), its PID file goes first.
    releasePidFile(pidFile);
    if (!settled) failWith(new DaemonError("DAEMON_EXITED", `the daemon exited with status ${code} before it was ready`), code || 1);
  });

  const handle: DaemonHandle = {
    pid: process.pid,
    pidFile,
    get settled() {
      return settled;
    },
    ready() {
      if (settled) return;
      settled = true;
      isReady = true;
      const target = logFd >= 0 ? logFd : openFile("/dev/null", O_RDWR | O_NOCTTY, 0, "STAGE", "open /dev/null");
      // A read end of the startup pipe, opened before our own write ends move away.
      let pipeRead = -1;
      try {
        if (outPipe?.startsWith("pipe:") && fdTarget(1) === outPipe) pipeRead = openFile("/proc/self/fd/1", O_RDONLY, 0, "STAGE", "read startup pipe");
      } catch {
        // No /proc: spawned programs keep today's pipe; nothing else changes.
      }
      redirectAll(outPipe, target, pipeRead);
      if (logFd < 0) closeFd(target);
      // What we wrote before ready and the launcher has not read yet: ours to
      // hand over now, or the pump below would take it for the log file.
      const nobodyWrites = pipeRead >= 0 && handOverUnread(pipeRead, (frame) => send(frame));
      send(encodeJson(FRAME_READY, { pid: process.pid }), true);
      // Closed at once when no program still writes to it, so the daemon holds no
      // startup pipe from its ready on (not a moment later, when the pump would see the end).
      if (nobodyWrites) closeFd(pipeRead);
      else if (pipeRead >= 0) adoptStartupPipe(pipeRead, logFd);
    },
    fail: failWith,
    stopping(graceMs: number) {
      if (!settled) send(encodeJson(FRAME_STOPPING, { graceMs: Math.ceil(graceMs) }));
    },
    reopenLog() {
      if (logPath === undefined || !isReady) return false;
      const fresh = openLog(logPath, logUid);
      // Every fd on the old file, logFd included, now points at the new one.
      redirectAll(fdTarget(1), fresh);
      closeFd(fresh);
      return true;
    },
  };
  logPaths.set(handle, (path) => {
    logPath = path;
  });
  return handle;
}
