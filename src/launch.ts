/**
 * The launcher side of `start`: fork, setsid, fork, execve the same program
 * as the daemon stage, then wait for its readiness on a pipe and leave with
 * _exit(2). The forked children run only the libc calls they need, with
 * every argument built before the fork and no allocation after it (see
 * shared BUN-RUNTIME-NOTES §1); every wait is bounded.
 */
import { ptr, read } from "bun:ffi";
import { readdirSync, readFileSync, writeSync } from "node:fs";
import { constants as osConstants } from "node:os";
import { DaemonError, errorText, exitStatus, syscallError } from "./errors.ts";
import {
  becomeSubreaper, childEnd, CLOSE_RANGE_CLOEXEC, closeFd, cloexecFrom, cstr, dupAbove, errno, errnoAddress, libc, MADV_DOFORK,
  O_NOCTTY, O_RDWR, openFile, pipe, pollIn, POLLERR, POLLHUP, POLLIN, readInto, reapChild, sendSignal, setNonblock,
  setSignalMask, SIG_BLOCK, SIG_SETMASK, sigset, writeAll,
} from "./ffi.ts";
import { acquirePidFile, openLogFile, releasePidFile, type PidFileLock } from "./pidfile.ts";
import { dontForkRanges, isAlive, listFds, processState, signalMask } from "./proc.ts";
import {
  FRAME_EXEC_FAILED, FRAME_FAILED, FRAME_FORK_FAILED, FRAME_OUTPUT, FRAME_PID, FRAME_READY, FRAME_STOPPING, FrameReader, payloadInt,
  payloadJson, STAGE_PIDFILE_FD, STAGE_STATUS_FD, type Frame, type FailureMessage, type StoppingMessage,
} from "./protocol.ts";
import { STAGE_MARKER } from "./marker.ts";
import { runtimeFlags } from "./runtime-flags.ts";
import { accountOf, daemonEnvironment, type EnvOption } from "./environment.ts";

/**
 * The uid the daemon will run as when a `user` option is set (its log file
 * is that user's: trusted as the launcher's own), else undefined.
 */
function daemonUid(opts: object): number | undefined {
  const user = (opts as { user?: string | number }).user;
  return user === undefined ? undefined : accountOf(user).uid;
}

/** Options of the launcher; all paths absolute. */
export interface LaunchOptions {
  name: string;
  pidFile: string;
  logFile?: string;
  /** ms to wait for readiness before stopping the daemon; 0 waits for ever. */
  readyTimeout: number;
  umask: number;
  /** What the daemon inherits of the launcher's environment (src/environment.ts). Default "inherit". */
  env?: EnvOption;
}

// Signals whose disposition glibc or the kernel will not let us change.
const UNTOUCHABLE = new Set([9, 19, 32, 33]);
const SIGHUP = 1;
const SIGINT = 2;
const SIGKILL = 9;
const SIGTERM = 15;
/** What interrupts a `start`: Ctrl-C, a supervisor's stop, a closed terminal. */
const INTERRUPTS = [SIGINT, SIGTERM, SIGHUP] as const;
/** How long a daemon that reported failure, or was told to stop, gets to exit. */
const EXIT_GRACE_MS = 5000;
/**
 * How long the forked children may take from fork() to execve(): 2 s, plus
 * 1 ms per MiB the launcher has resident. They make a dozen syscalls; only
 * copying a big heap's page tables takes measurable time (about 140 ms per
 * GiB), so anything near this bound is a hang (a child that returned into
 * JavaScript and waits on a lock of a thread the fork did not copy: seen in
 * 2 of 3000 starts from a GC-busy launcher, scripts/bench/fork-hang/).
 */
function childHangMs(): number {
  let rssMiB = 0;
  try {
    rssMiB = (Number(readFileSync("/proc/self/statm", "utf8").split(" ")[1]) * 4096) / 2 ** 20;
  } catch {}
  return 2000 + Math.ceil(rssMiB);
}
/** Forks tried when the children hang (a hung child is killed first). */
const FORK_ATTEMPTS = 2;
/** The longest one poll(2) blocks, so that signal handlers get to run. */
const TICK_MS = 25;

/**
 * `--no-orphans` also lives on in the environment Bun hands its children
 * (it sets this in process.env, and every Bun started with it calls
 * PR_SET_PDEATHSIG(SIGKILL)): a daemon must not die with its launcher.
 */
const DROPPED_ENV = new Set(["BUN_FEATURE_FLAG_NO_ORPHANS"]);

/** The argv that re-executes this very program (runtime flags filtered by runtimeFlags(), arguments kept). */
export function reexecArgv(): { file: string; argv: string[] } {
  const args = process.argv.slice(2);
  const compiled = Bun.main.startsWith("/$bunfs/");
  return {
    file: process.execPath,
    argv: compiled ? [STAGE_MARKER, ...args] : [STAGE_MARKER, ...runtimeFlags(process.execArgv), Bun.main, ...args],
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

const signalName = (n: number) => Object.entries(osConstants.signals).find(([, v]) => v === n)?.[0] ?? `signal ${n}`;

/**
 * Buffers the forked children read through raw pointers. A module-level
 * reference keeps them alive across the fork whatever the optimiser
 * decides about the locals that point into them.
 */
let pinned: unknown[] = [];

/**
 * Detach and exit with the daemon's outcome. Never resolves: exits 0 once
 * the daemon is ready, non-zero with the daemon's error otherwise.
 */
export async function launch(opts: LaunchOptions): Promise<never> {
  let lock: PidFileLock | undefined;
  let launcher: Launcher;
  try {
    libc();
    lock = acquirePidFile(opts.pidFile);
    const logFd =
      opts.logFile === undefined
        ? -1
        : openLogFile(opts.logFile, daemonUid(opts)); // no symlink, no other user's file (a --log-file in /tmp)
    launcher = new Launcher(opts, lock, logFd);
  } catch (err) {
    if (lock) releasePidFile(lock);
    const e = err instanceof DaemonError ? err : new DaemonError("FORK", errorText(err));
    // Before the fork (every throw above is) the runtime's own exit is safe,
    // and needed when libc itself is what failed to load.
    writeSync(2, `${opts.name}: ${e.message}\n`);
    process.exit(e.exitCode || 1);
  }
  return launcher.run();
}

/** The launcher's wait: waiting -> ready | failed | timed out | interrupted. */
type WaitState = "waiting" | "ready" | "failed" | "timed out" | "interrupted";

interface Children {
  pid1: number;
  statusR: number;
  outR: number;
  /** EOF once every copy of its write end is gone: the intermediate exited and the grandchild exec'd (or died). */
  execR: number;
}

class Launcher {
  private state: WaitState = "waiting";
  private failure: DaemonError | undefined;
  private daemonPid: number | undefined;
  private readonly frames = new FrameReader();
  private readonly buf = new Uint8Array(65536);
  private statusR = -1;
  private outR = -1;
  private statusOpen = true;
  private outOpen = true;
  /** Set once the daemon said it is shutting down before ready, with the time its hooks may take. */
  private stoppingGraceMs: number | undefined;
  private signals: number[] = [];
  private forked = false;
  /** The daemon said it will not become ready (FAILED or STOPPING): it ends by itself. */
  private daemonEnding = false;

  constructor(
    private readonly opts: LaunchOptions,
    private readonly lock: PidFileLock,
    private readonly logFd: number,
  ) {}

  async run(): Promise<never> {
    const l = libc();
    try {
      // Ctrl-C, a supervisor's SIGTERM or a closed terminal must stop the
      // starting daemon, not leave it to finish unattended. Installed before
      // the fork; the children keep these signals blocked until exec.
      for (const sig of INTERRUPTS) process.on(signalName(sig) as NodeJS.Signals, () => this.signals.push(sig));
      await this.detach();
      await this.waitForReady();
      if (this.state === "ready") {
        say(1, `started ${this.opts.name} (pid ${this.daemonPid})`);
        l._exit(0);
      }
    } catch (err) {
      if (!this.forked) {
        // The first fork failed: no child exists, the runtime's own exit is safe.
        releasePidFile(this.lock);
        writeSync(2, `${this.opts.name}: ${errorText(err)}\n`);
        process.exit(err instanceof DaemonError ? err.exitCode || 1 : 1);
      }
      // After the fork nothing may be left half done: say what broke and
      // stop the daemon below before the PID file can go.
      this.state = "failed";
      this.failure = err instanceof DaemonError ? err : new DaemonError("STAGE", `launcher: ${errorText(err)}`);
    }
    const gone = await this.stopDaemon();
    // Only a daemon that is gone has let go of the lock: then the PID file can go.
    if (gone) releasePidFile(this.lock);
    const f = this.failure ?? new DaemonError("DAEMON_EXITED", "the daemon exited before it was ready");
    say(2, `${this.opts.name}: failed to start: ${f.message}${gone ? "" : `; pid ${this.daemonPid} is still alive (stuck in the kernel?), PID file left in place`}`);
    l._exit(exitStatus(f.exitCode));
    throw f; // unreachable
  }

  /** fork, setsid, fork, execve; retried once when the children hang before exec. */
  private async detach(): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const c = this.fork();
      this.forked = true;
      this.statusR = c.statusR;
      this.outR = c.outR;
      const hung = await this.awaitExec(c);
      closeFd(c.execR);
      if (!hung) return;
      this.killHung(c);
      closeFd(c.statusR);
      closeFd(c.outR);
      this.daemonPid = undefined;
      this.statusOpen = this.outOpen = true;
      if (attempt >= FORK_ATTEMPTS) {
        throw new DaemonError("FORK", `detach: the forked child hung before exec (${hung}) ${attempt} times; killed it. Try again, and report it with the Bun version if it recurs`);
      }
      say(2, `${this.opts.name}: the forked child hung before exec (${hung}); killed it, forking again`);
    }
  }

  private fork(): Children {
    const l = libc();
    // --- everything the children use is built here, before the fork ---
    const { file, argv } = reexecArgv();
    const strings: Uint8Array[] = [];
    const cArray = (items: string[]): BigUint64Array => {
      const arr = new BigUint64Array(items.length + 1);
      items.forEach((s, i) => {
        const b = cstr(s);
        strings.push(b);
        arr[i] = BigInt(ptr(b));
      });
      return arr;
    };
    const fileC = cstr(file);
    const argvC = cArray(argv);
    // The envp of the exec is the daemon's whole start-up environment: what
    // `env` removes here no API of the daemon (Bun.spawn passes the start-up
    // copy, not process.env) can hand on. HOME/USER are the target user's
    // when another option sets one (`user`), else the current user's.
    const user = (this.opts as { user?: string | number }).user;
    const env = daemonEnvironment(process.env, this.opts.env ?? "inherit", () => accountOf(user), DROPPED_ENV);
    const envC = cArray(Object.entries(env).map(([k, v]) => `${k}=${v}`));
    const [statusR, statusW0] = pipe("create readiness pipe");
    const [outR, outW0] = pipe("create startup output pipe");
    const [execR, execW0] = pipe("create exec pipe");
    const statusW = high(statusW0);
    const outW = high(outW0);
    const execW = high(execW0);
    const devNull = high(openFile("/dev/null", O_RDWR | O_NOCTTY, 0, "STAGE", "open /dev/null"));
    if (this.lock.fd < 10) this.lock.fd = high(this.lock.fd);
    const pidFd = this.lock.fd;
    // Dispositions that survive exec are SIG_IGN only; reset every inherited
    // one, and the launcher's own interrupt handlers (until exec they are
    // Bun's handler, which must not run in a child). Bun re-ignores
    // SIGPIPE/SIGXFSZ itself at start.
    const resetSigs = new Int32Array([...new Set([...signalMask("SigIgn"), ...INTERRUPTS])].filter((s) => !UNTOUCHABLE.has(s)));
    const emptySet = new Uint8Array(128);
    const frame = new Int32Array(3);
    const framePtr = ptr(frame);
    const errnoPtr = errnoAddress();
    const pFile = ptr(fileC);
    const pArgv = ptr(argvC);
    const pEnv = ptr(envC);
    const pEmpty = ptr(emptySet);
    const mask = this.opts.umask;
    pinned = [strings, fileC, argvC, envC, emptySet, frame, resetSigs];
    // Inherited fds >= 5 must not reach the daemon: marked close-on-exec here
    // (inherited by the children), and again in the grandchild, where
    // close_range's CLOEXEC form keeps the exec pipe open until the exec itself.
    cloexecFrom(5, listFds);
    for (const [start, end] of dontForkRanges()) l.madvise(start, end - start, MADV_DOFORK);
    becomeSubreaper();
    // A collection running at the fork is what the children most often hang
    // on once they return into JavaScript: a full one now makes that rarer
    // (24 -> 1 hung in 3000 forks from a GC-busy process; about 1 ms here).
    Bun.gc(true);
    const blocked = setSignalMask(SIG_BLOCK, sigset([...INTERRUPTS]));
    const { fork, setsid, _exit, write, umask, sigprocmask, signal, dup2, close_range, execve } = l;

    // --- fork: from here until execve/_exit the children make libc calls only,
    // with number arguments and results: nothing allocates ---
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
      for (let i = 0; i < resetSigs.length; i++) signal(resetSigs[i]!, null);
      sigprocmask(SIG_SETMASK, pEmpty, null);
      dup2(devNull, 0);
      dup2(outW, 1);
      dup2(outW, 2);
      dup2(statusW, STAGE_STATUS_FD);
      dup2(pidFd, STAGE_PIDFILE_FD);
      close_range(5, 0xffffffff, CLOSE_RANGE_CLOEXEC);
      execve(pFile, pArgv, pEnv);
      frame[0] = FRAME_EXEC_FAILED;
      frame[1] = 4;
      frame[2] = read.i32(errnoPtr, 0);
      write(STAGE_STATUS_FD, framePtr, 12);
      _exit(127);
    }
    // --- launcher ---
    const forkErrno = pid1 < 0 ? errno() : 0;
    setSignalMask(SIG_SETMASK, blocked);
    closeFd(statusW);
    closeFd(outW);
    closeFd(execW);
    closeFd(devNull);
    if (pid1 < 0) {
      closeFd(statusR);
      closeFd(outR);
      closeFd(execR);
      throw syscallError("FORK", "detach", "fork", forkErrno);
    }
    return { pid1, statusR, outR, execR };
  }

  /**
   * Wait until the intermediate has exited and the grandchild has exec'd,
   * relaying frames and output meanwhile. Returns undefined when done, or
   * what hung.
   */
  private async awaitExec(c: Children): Promise<string | undefined> {
    const bound = childHangMs();
    const until = performance.now() + bound;
    let intermediateGone = false;
    let execDone = false;
    while (!(intermediateGone && execDone)) {
      if (!intermediateGone) intermediateGone = reapChild(c.pid1);
      const left = until - performance.now();
      if (left <= 0) {
        const who = !intermediateGone ? { pid: c.pid1, what: "intermediate child" } : { pid: this.daemonPid, what: "grandchild" };
        return `${who.what}${who.pid ? ` pid ${who.pid}` : ""} still ${describe(who.pid)} after ${bound} ms`;
      }
      const rev = pollIn([c.execR, this.statusR, this.outR], Math.min(intermediateGone ? TICK_MS : 1, left));
      if ((rev[0] ?? 0) & (POLLIN | POLLHUP | POLLERR)) execDone = readInto(c.execR, this.buf) <= 0;
      this.pump(rev[1] ?? 0, rev[2] ?? 0);
      if (this.failure) return undefined; // fork or exec failed: reported, nothing hung
    }
    return undefined;
  }

  private killHung(c: Children): void {
    const victims = new Set([c.pid1, ...(this.daemonPid ? [this.daemonPid] : []), ...childrenOf(process.pid)]);
    for (const pid of victims) sendSignal(pid, SIGKILL);
    const until = performance.now() + 5000;
    // They are our children (the grandchild through the subreaper): reap them.
    for (const pid of victims) while (!reapChild(pid) && performance.now() < until) Bun.sleepSync(1);
  }

  /** Read what is there on the status and output pipes (poll revents given). */
  private pump(statusRev: number, outRev: number): void {
    if (this.outOpen && outRev & (POLLIN | POLLHUP | POLLERR)) this.outOpen = this.relay();
    if (!this.statusOpen || !(statusRev & (POLLIN | POLLHUP | POLLERR))) return;
    const n = readInto(this.statusR, this.buf);
    if (n <= 0) {
      this.statusOpen = false;
      return;
    }
    for (const f of this.frames.push(this.buf.subarray(0, n))) this.onFrame(f);
  }

  private relay(): boolean {
    const n = readInto(this.outR, this.buf);
    if (n <= 0) return false;
    const chunk = this.buf.subarray(0, n);
    writeAll(2, chunk);
    if (this.logFd >= 0) writeAll(this.logFd, chunk);
    return true;
  }

  private onFrame(f: Frame): void {
    switch (f.type) {
      case FRAME_PID:
        // The daemon writes it into the PID file itself, once it handles signals.
        this.daemonPid = payloadInt(f);
        break;
      case FRAME_FORK_FAILED:
        this.fail(syscallError("FORK", "detach (second fork)", "fork", payloadInt(f)));
        break;
      case FRAME_EXEC_FAILED:
        this.fail(syscallError("EXEC", "re-execute the program", "execve", payloadInt(f), process.execPath));
        break;
      case FRAME_STOPPING:
        // Shutting down before ready (told to, or init failed): its hooks are
        // bounded and it said how long they may take.
        this.stoppingGraceMs = payloadJson<StoppingMessage>(f).graceMs;
        this.daemonEnding = true;
        break;
      case FRAME_OUTPUT:
        // Startup output the daemon took from the pipe at ready, before we had read it: as relay() does.
        writeAll(2, f.payload);
        if (this.logFd >= 0) writeAll(this.logFd, f.payload);
        break;
      case FRAME_READY:
        // Only while waiting: a READY after a timeout or an interrupt is too late.
        if (this.state === "waiting") this.state = "ready";
        break;
      case FRAME_FAILED: {
        const m = payloadJson<FailureMessage>(f);
        this.daemonEnding = true;
        this.fail(new DaemonError(m.code as DaemonError["code"], m.message, { exitCode: exitStatus(m.exitCode) }));
        break;
      }
    }
  }

  /** The first failure is the one reported. */
  private fail(e: DaemonError, state: WaitState = "failed"): void {
    if (this.state !== "waiting") return;
    this.state = state;
    this.failure = e;
  }

  private async waitForReady(): Promise<void> {
    const deadline = this.opts.readyTimeout > 0 ? performance.now() + this.opts.readyTimeout : Infinity;
    while (this.state === "waiting") {
      const sig = this.signals.shift();
      if (sig !== undefined) {
        this.fail(new DaemonError("SIGNAL", `interrupted by ${signalName(sig)} before the daemon was ready; stopped it${this.pidText()}`, { exitCode: 128 + sig }), "interrupted");
        break;
      }
      const now = performance.now();
      if (now >= deadline) {
        this.fail(
          new DaemonError("READY_TIMEOUT", `not ready within ${this.opts.readyTimeout} ms; stopped the daemon${this.pidText()}. Raise --ready-timeout if its init is slow`),
          "timed out",
        );
        break;
      }
      if (!this.statusOpen) {
        this.fail(this.exitedEarly());
        break;
      }
      const rev = pollIn(this.outOpen ? [this.statusR, this.outR] : [this.statusR], Math.min(TICK_MS, Math.ceil(deadline - now)));
      this.pump(rev[0] ?? 0, rev[1] ?? 0);
      // Signal handlers run only when the event loop turns.
      await Bun.sleep(0);
    }
    // Whatever the daemon wrote before it went quiet is still in the pipe.
    if (this.state === "ready") this.drainOutput();
  }

  private pidText(): string {
    return this.daemonPid === undefined ? "" : ` (pid ${this.daemonPid})`;
  }

  private drainOutput(): void {
    if (!this.outOpen) return;
    setNonblock(this.outR);
    while (this.relay());
  }

  /** The daemon ended without a word: how, as its subreaper sees it. */
  private exitedEarly(): DaemonError {
    let end: { text: string; status: number } | undefined;
    for (let i = 0; this.daemonPid !== undefined && i < 100 && !(end = childEnd(this.daemonPid)); i++) Bun.sleepSync(10);
    return new DaemonError(
      "DAEMON_EXITED",
      `the daemon${this.pidText()} exited before it was ready${end ? ` (${end.text})` : ""}${this.daemonPid === undefined ? "" : "; its output, if any, is above"}`,
      { ...(this.daemonPid === undefined ? {} : { pid: this.daemonPid }), exitCode: exitStatus(end?.status ?? 1) },
    );
  }

  /**
   * Not ready: make sure the daemon is gone. A daemon told to stop (timeout,
   * interrupt) or that said it is stopping gets the time its shutdown hooks
   * may take, then SIGKILL. Output is relayed until then. True once it is gone.
   */
  private async stopDaemon(): Promise<boolean> {
    const pid = this.daemonPid;
    if (pid === undefined) return true;
    // Unless the daemon itself said it is failing or stopping (then it exits
    // on its own), it is told to stop: timeout, interrupt, a broken channel.
    if (!this.daemonEnding && isAlive(pid)) sendSignal(pid, SIGTERM);
    let killAt = performance.now() + EXIT_GRACE_MS + (this.stoppingGraceMs ?? 0);
    let grace = this.stoppingGraceMs;
    let killed = false;
    const giveUp = () => performance.now() + 5000;
    let until = Infinity;
    while (isAlive(pid)) {
      const now = performance.now();
      if (this.stoppingGraceMs !== grace) {
        grace = this.stoppingGraceMs;
        killAt = now + EXIT_GRACE_MS + (grace ?? 0);
      }
      // A second Ctrl-C does not wait for the shutdown hooks.
      const again = this.signals.length > 0 && this.state === "interrupted";
      if (!killed && (now >= killAt || again)) {
        sendSignal(pid, SIGKILL);
        killed = true;
        until = giveUp();
      }
      if (now >= until) return false;
      const fds = [this.statusOpen ? this.statusR : -1, this.outOpen ? this.outR : -1];
      const rev = pollIn(fds, TICK_MS);
      this.pump(rev[0] ?? 0, rev[1] ?? 0);
      this.signals.length = 0;
      await Bun.sleep(0);
    }
    this.drainOutput();
    this.failure ??= this.exitedEarly();
    return true;
  }
}

/** What a hung child is doing, for the message: its state and kernel wait channel. */
function describe(pid: number | undefined): string {
  if (pid === undefined) return "running";
  let wchan = "";
  try {
    wchan = readFileSync(`/proc/${pid}/wchan`, "utf8");
  } catch {}
  return `in state ${processState(pid) ?? "?"}${wchan && wchan !== "0" ? ` (${wchan})` : ""}`;
}

/** Pids whose parent is `ppid` (a hung grandchild is ours once its parent is killed). */
function childrenOf(ppid: number): number[] {
  const out: number[] = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const s = readFileSync(`/proc/${d}/stat`, "utf8");
      if (Number(s.slice(s.lastIndexOf(")") + 2).split(" ")[1]) === ppid) out.push(Number(d));
    } catch {}
  }
  return out;
}
