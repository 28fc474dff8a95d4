/**
 * The launcher side of `start`: fork, setsid, fork, execve the same program
 * as the daemon stage, then wait for its readiness on a pipe and leave with
 * _exit(2). The forked children run only the libc calls they need, with
 * every argument built before the fork (see shared BUN-RUNTIME-NOTES §1).
 */
import { ptr, read } from "bun:ffi";
import { writeSync } from "node:fs";
import { DaemonError, syscallError } from "./errors.ts";
import {
  becomeSubreaper, childEnd, closeFd, cloexecFrom, cstr, dupAbove, errno, errnoAddress, libc, MADV_DOFORK, O_APPEND, O_CREAT, O_NOCTTY,
  O_RDWR, O_WRONLY, openFile, pipe, pollIn, POLLERR, POLLHUP, POLLIN, readInto, sendSignal, SIG_SETMASK,
  setNonblock, waitChild, writeAll,
} from "./ffi.ts";
import { acquirePidFile, releasePidFile, type PidFileLock } from "./pidfile.ts";
import { dontForkRanges, isAlive, listFds, signalMask } from "./proc.ts";
import {
  FRAME_EXEC_FAILED, FRAME_FAILED, FRAME_FORK_FAILED, FRAME_PID, FRAME_READY, FRAME_STOPPING, FrameReader, payloadInt,
  payloadJson, type FailureMessage, type ReadyMessage, type StoppingMessage,
} from "./protocol.ts";
import { STAGE_MARKER, STAGE_PIDFILE_FD, STAGE_STATUS_FD } from "./stage.ts";

/** Options of the launcher; all paths absolute. */
export interface LaunchOptions {
  name: string;
  pidFile: string;
  logFile?: string;
  /** ms to wait for readiness before killing the daemon; 0 waits for ever. */
  readyTimeout: number;
  umask: number;
}

// Signals whose disposition glibc or the kernel will not let us change.
const UNTOUCHABLE = new Set([9, 19, 32, 33]);
const SIGTERM = 15;
const SIGKILL = 9;
/** How long a daemon that reported failure, or was told to stop, gets to exit. */
const EXIT_GRACE_MS = 5000;

/** The argv that re-executes this very program (runtime flags and arguments kept). */
export function reexecArgv(): { file: string; argv: string[] } {
  const args = process.argv.slice(2);
  const compiled = Bun.main.startsWith("/$bunfs/");
  return {
    file: process.execPath,
    argv: compiled ? [STAGE_MARKER, ...args] : [STAGE_MARKER, ...process.execArgv, Bun.main, ...args],
  };
}

function say(fd: number, text: string): void {
  writeAll(fd, Buffer.from(text.endsWith("\n") ? text : `${text}\n`, "utf8"));
}

/** Move an fd out of 0..4 so the grandchild's dup2 sequence cannot clobber it. */
function high(fd: number): number {
  const moved = dupAbove(fd, 10);
  closeFd(fd);
  return moved;
}

/**
 * Detach and exit with the daemon's outcome. Never returns: exits 0 once the
 * daemon is ready, non-zero with the daemon's error otherwise.
 */
export function launch(opts: LaunchOptions): never {
  let lock: PidFileLock | undefined;
  try {
    libc();
    lock = acquirePidFile(opts.pidFile);
    const logFd =
      opts.logFile === undefined
        ? -1
        : openFile(opts.logFile, O_WRONLY | O_APPEND | O_CREAT | O_NOCTTY, 0o640, "LOG_OPEN", "open log file");
    return spawnAndWait(opts, lock, logFd);
  } catch (err) {
    if (lock) releasePidFile(lock);
    const e = err instanceof DaemonError ? err : new DaemonError("FORK", String((err as Error)?.message ?? err));
    // Before the fork (every throw above is) the runtime's own exit is safe,
    // and needed when libc itself is what failed to load.
    writeSync(2, `${opts.name}: ${e.message}\n`);
    process.exit(e.exitCode || 1);
  }
}

function spawnAndWait(opts: LaunchOptions, lock: PidFileLock, logFd: number): never {
  const l = libc();
  // --- everything the children use is built here, before the fork ---
  const { file, argv } = reexecArgv();
  const keep: Uint8Array[] = [];
  const cArray = (items: string[]): BigUint64Array => {
    const arr = new BigUint64Array(items.length + 1);
    items.forEach((s, i) => {
      const b = cstr(s);
      keep.push(b);
      arr[i] = BigInt(ptr(b));
    });
    return arr;
  };
  const fileC = cstr(file);
  const argvC = cArray(argv);
  const envC = cArray(Object.entries(process.env).map(([k, v]) => `${k}=${v ?? ""}`));
  const [statusR, statusW0] = pipe("create readiness pipe");
  const [outR, outW0] = pipe("create startup output pipe");
  const statusW = high(statusW0);
  const outW = high(outW0);
  const devNull = high(openFile("/dev/null", O_RDWR | O_NOCTTY, 0, "STAGE", "open /dev/null"));
  const pidFd = high(lock.fd);
  lock.fd = pidFd;
  // Dispositions that survive exec are SIG_IGN only; reset every inherited one.
  // Bun re-ignores SIGPIPE/SIGXFSZ itself at start.
  const resetSigs = new Int32Array(signalMask("SigIgn").filter((s) => !UNTOUCHABLE.has(s)));
  const emptySet = new Uint8Array(128);
  const frame = new Int32Array(3);
  const framePtr = ptr(frame);
  const errnoPtr = errnoAddress();
  const pFile = ptr(fileC);
  const pArgv = ptr(argvC);
  const pEnv = ptr(envC);
  const pEmpty = ptr(emptySet);
  const mask = opts.umask;
  // Inherited fds >= 5 must not reach the daemon. close_range in the
  // grandchild does it in one call; marking them close-on-exec here as well
  // covers kernels without close_range.
  cloexecFrom(5, listFds);
  for (const [start, end] of dontForkRanges()) l.madvise(start, end - start, MADV_DOFORK);
  becomeSubreaper();
  const { fork, setsid, _exit, write, umask, sigprocmask, signal, dup2, close_range, execve } = l;

  // --- fork: from here until execve/_exit the children make libc calls only ---
  const pid1 = fork();
  if (pid1 === 0) {
    setsid();
    const pid2 = fork();
    if (pid2 !== 0) {
      frame[0] = pid2 > 0 ? FRAME_PID : FRAME_FORK_FAILED;
      frame[1] = 4;
      frame[2] = pid2 > 0 ? pid2 : read.i32(errnoPtr, 0);
      write(statusW, framePtr, 12);
      _exit(pid2 > 0 ? 0 : 1);
    }
    umask(mask);
    sigprocmask(SIG_SETMASK, pEmpty, null);
    for (let i = 0; i < resetSigs.length; i++) signal(resetSigs[i]!, null);
    dup2(devNull, 0);
    dup2(outW, 1);
    dup2(outW, 2);
    dup2(statusW, STAGE_STATUS_FD);
    dup2(pidFd, STAGE_PIDFILE_FD);
    close_range(5, 0xffffffff, 0);
    execve(pFile, pArgv, pEnv);
    frame[0] = FRAME_EXEC_FAILED;
    frame[1] = 4;
    frame[2] = read.i32(errnoPtr, 0);
    write(STAGE_STATUS_FD, framePtr, 12);
    _exit(127);
  }
  // --- launcher ---
  const forkErrno = pid1 < 0 ? errno() : 0;
  closeFd(statusW);
  closeFd(outW);
  closeFd(devNull);
  if (pid1 < 0) throw syscallError("FORK", "detach", "fork", forkErrno);
  waitChild(pid1); // the intermediate exits right after its fork: no zombie
  // `keep` holds the strings argv/envp point into; passing it on keeps the GC
  // from freeing them before the fork, which must not be left to liveness analysis.
  return waitForReady(opts, lock, logFd, statusR, outR, keep);
}

function waitForReady(
  opts: LaunchOptions, lock: PidFileLock, logFd: number, statusR: number, outR: number, _keepAlive: unknown,
): never {
  const l = libc();
  const frames = new FrameReader();
  const buf = new Uint8Array(65536);
  // 0 waits for ever, as systemd's TimeoutStartSec=0 does.
  const deadline = opts.readyTimeout > 0 ? performance.now() + opts.readyTimeout : Infinity;
  let daemonPid: number | undefined;
  let failure: DaemonError | undefined;
  let ready: ReadyMessage | undefined;
  let statusOpen = true;
  let outOpen = true;
  let exitDeadline = Infinity; // set once the daemon has been told or has said it will end
  let stopping = false;

  const relay = (): boolean => {
    const n = readInto(outR, buf);
    if (n <= 0) return false;
    const chunk = buf.subarray(0, n);
    writeAll(2, chunk);
    if (logFd >= 0) writeAll(logFd, chunk);
    return true;
  };

  const kill = (sig: number) => {
    if (daemonPid !== undefined) sendSignal(daemonPid, sig);
  };

  while (statusOpen && !ready) {
    const now = performance.now();
    if (!failure && !stopping && now >= deadline) {
      failure = new DaemonError(
        "READY_TIMEOUT",
        `not ready within ${opts.readyTimeout} ms; stopped the daemon${daemonPid ? ` (pid ${daemonPid})` : ""}. Raise --ready-timeout if its init is slow`,
        daemonPid === undefined ? {} : { pid: daemonPid },
      );
      kill(SIGTERM);
      exitDeadline = now + EXIT_GRACE_MS;
    }
    if (now >= exitDeadline) {
      kill(SIGKILL);
      exitDeadline = now + EXIT_GRACE_MS;
      if (daemonPid === undefined || !isAlive(daemonPid)) break;
    }
    const wait = Math.min(failure || stopping ? exitDeadline : deadline, exitDeadline) - now;
    const fds = outOpen ? [statusR, outR] : [statusR];
    const rev = pollIn(fds, Number.isFinite(wait) ? Math.ceil(wait) : -1);
    if (outOpen && (rev[1] ?? 0) & (POLLIN | POLLHUP | POLLERR)) outOpen = relay();
    if (!((rev[0] ?? 0) & (POLLIN | POLLHUP | POLLERR))) continue;
    const n = readInto(statusR, buf);
    if (n <= 0) {
      statusOpen = false;
      break;
    }
    for (const f of frames.push(buf.subarray(0, n))) {
      if (f.type === FRAME_PID) {
        // The daemon writes it into the PID file itself, once it handles signals.
        daemonPid = payloadInt(f);
      } else if (f.type === FRAME_STOPPING) {
        // Shutting down before ready (told to, or init failed): its hooks are
        // bounded and it said how long they may take; wait that long.
        stopping = true;
        exitDeadline = performance.now() + payloadJson<StoppingMessage>(f).graceMs + EXIT_GRACE_MS;
      } else if (f.type === FRAME_FORK_FAILED) {
        failure = syscallError("FORK", "detach (second fork)", "fork", payloadInt(f));
      } else if (f.type === FRAME_EXEC_FAILED) {
        failure = syscallError("EXEC", "re-execute the program", "execve", payloadInt(f), process.execPath);
      } else if (f.type === FRAME_READY) {
        ready = payloadJson<ReadyMessage>(f);
      } else if (f.type === FRAME_FAILED && !failure) {
        const m = payloadJson<FailureMessage>(f);
        failure = new DaemonError(m.code as DaemonError["code"], m.message, { exitCode: m.exitCode });
        exitDeadline = performance.now() + EXIT_GRACE_MS;
      }
    }
  }

  // Whatever the daemon wrote before it went quiet is still in the pipe.
  setNonblock(outR);
  while (relay());

  if (ready) {
    say(1, `started ${opts.name} (pid ${ready.pid})`);
    l._exit(0);
  }
  if (!failure) {
    // We are its subreaper: how it ended is ours to read (and left for its next reaper).
    let end: string | undefined;
    for (let i = 0; daemonPid !== undefined && i < 100 && !(end = childEnd(daemonPid)); i++) Bun.sleepSync(10);
    failure = new DaemonError(
      "DAEMON_EXITED",
      `the daemon${daemonPid ? ` (pid ${daemonPid})` : ""} exited before it was ready${end ? ` (${end})` : ""}${daemonPid === undefined ? "" : "; its output, if any, is above"}`,
      daemonPid === undefined ? {} : { pid: daemonPid },
    );
  }
  // The daemon is gone (status pipe closed) or was killed: the lock is ours
  // alone now, so the PID file can go.
  releasePidFile(lock);
  say(2, `${opts.name}: failed to start: ${failure.message}`);
  l._exit(failure.exitCode > 0 ? failure.exitCode : 1);
  throw failure; // unreachable
}

