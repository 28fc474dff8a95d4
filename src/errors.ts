
/**
 * One code per step that can fail. Callers and the CLI branch on `code`;
 * the message says which step, what path and what to do.
 */
export type DaemonErrorCode =
  | "UNSUPPORTED_PLATFORM" // not Linux, or no libc found in /proc/self/maps
  | "LIBC" // a libc symbol could not be loaded
  | "PIDFILE_OPEN" // open(2) of the PID file failed (missing dir, permissions)
  | "PIDFILE_INVALID" // the PID file exists but does not look like a PID file
  | "PIDFILE_WRITE" // writing our pid into the locked PID file failed
  | "PIDFILE_UNSAFE" // the PID file is another user's (not this user's or root's) or group/world-writable: not trusted
  | "PIDFILE_UNVERIFIED" // the pid a locked PID file names cannot be checked to hold the lock (another user's or a non-dumpable process)
  | "ALREADY_RUNNING" // another live process holds the PID file lock
  | "NOT_RUNNING" // a control command found no daemon
  | "LOG_OPEN" // the --log-file could not be opened for appending
  | "PIPE" // pipe2(2) for the readiness or output channel failed
  | "FORK" // fork(2) failed (first or second)
  | "EXEC" // execve(2) of the program failed in the grandchild
  | "STAGE" // the re-executed program was not handed a valid daemon stage
  | "READY_TIMEOUT" // the daemon was not ready within --ready-timeout
  | "DAEMON_EXITED" // the daemon exited before it was ready
  | "INIT_FAILED" // an init hook threw
  | "STOP_TIMEOUT" // stop: still alive when --timeout ran out
  | "SIGNAL" // kill(2) of the daemon failed
  | "ALREADY_CALLED" // main() (or daemonize()) called a second time in one process
  | "PRIVILEGES" // user/group/chroot/rlimits: a lookup, a step of the drop, or its verification failed
  | "LISTEN_FDS" // socket activation: LISTEN_FDS/LISTEN_FDNAMES malformed, or a passed fd not open
  | "CONFIG" // a config file could not be read, parsed or validated
  | "STATE" // the state file beside the PID file is unsafe or cannot be opened
  | "LISTEN" // ctx.serve: a listening socket could not be created, bound or taken over
  | "SERVE" // ctx.serve: Bun.serve's listener could not be swapped for the daemon's socket (a Bun that works differently)
  | "USAGE"; // bad command-line input

export interface DaemonErrorOptions {
  errno?: number;
  syscall?: string;
  path?: string;
  pid?: number;
  cause?: unknown;
  /** Exit status the CLI should use; defaults to 1. */
  exitCode?: number;
}

// Built on first use, not at import: importing bun-daemon must cost next to nothing.
let errnoNames: Map<number, string> | undefined;
const errnoNumbers = (): Record<string, number> => (require("node:os") as typeof import("node:os")).constants.errno as Record<string, number>;

/** 2 for `ENOENT`; undefined for a name the platform does not have. */
export function errnoNumber(name: string): number | undefined {
  return errnoNumbers()[name];
}

/** `ENOENT` for 2, `errno 999` for numbers the platform does not name. */
export function errnoName(errno: number): string {
  errnoNames ??= new Map(Object.entries(errnoNumbers()).map(([name, n]) => [n, name]));
  return errnoNames.get(errno) ?? `errno ${errno}`;
}

/** The single error class of bun-daemon; `code` names the failing step. */
export class DaemonError extends Error {
  override name = "DaemonError";
  readonly code: DaemonErrorCode;
  readonly errno?: number;
  /** errno as a name, e.g. `EACCES`, when `errno` is set. */
  readonly errnoName?: string;
  readonly syscall?: string;
  readonly path?: string;
  readonly pid?: number;
  readonly exitCode: number;

  constructor(code: DaemonErrorCode, message: string, opts: DaemonErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.code = code;
    if (opts.errno !== undefined) {
      this.errno = opts.errno;
      this.errnoName = errnoName(opts.errno);
    }
    if (opts.syscall !== undefined) this.syscall = opts.syscall;
    if (opts.path !== undefined) this.path = opts.path;
    if (opts.pid !== undefined) this.pid = opts.pid;
    this.exitCode = opts.exitCode ?? 1;
  }
}

/**
 * A one-line description of anything thrown. Never throws itself: a thrown
 * value may be a Proxy, have a throwing `message` getter or `toString`, or
 * be null or a Symbol, and the failure path must still report something.
 */
export function errorText(err: unknown): string {
  try {
    if (err instanceof Error) {
      const m = err.message;
      if (typeof m === "string" && m !== "") return m;
      return String(err.name ?? "Error");
    }
    if (typeof err === "string") return err;
    return String(err);
  } catch {
    try {
      return `a thrown ${typeof err} that cannot be shown (${Object.prototype.toString.call(err)})`;
    } catch {
      return `a thrown ${typeof err} that cannot be shown`;
    }
  }
}

/** A failure's exit status as a shell can see it: 1-255 (0, 256 or NaN would read as success or garbage). */
export function exitStatus(code: unknown): number {
  const n = typeof code === "number" && Number.isInteger(code) ? code : 1;
  return Math.min(255, Math.max(1, n));
}

/** Hints for the errno values a user can act on. */
const hints: Record<string, string> = {
  ENOENT: "create the directory first, or choose another path",
  EACCES: "check the permissions, or choose a path this user may write",
  EPERM: "check the permissions, or run as a user allowed to do this",
  EROFS: "the file system is read-only: choose a writable path",
  EISDIR: "that path is a directory: name a file",
  ENOTDIR: "a component of the path is not a directory",
  EMFILE: "too many open files: raise RLIMIT_NOFILE",
  EAGAIN: "the system is out of processes or memory: retry later",
  ENOMEM: "the system is out of memory",
};

/** Build a DaemonError from a failed syscall, with errno name and a hint. */
export function syscallError(
  code: DaemonErrorCode,
  step: string,
  syscall: string,
  errno: number,
  path?: string,
): DaemonError {
  const name = errnoName(errno);
  const hint = hints[name];
  const where = path === undefined ? "" : ` ${path}`;
  const msg = `${step}: ${syscall}${where} failed: ${name}${hint ? ` (${hint})` : ""}`;
  const opts: DaemonErrorOptions = { errno, syscall };
  if (path !== undefined) opts.path = path;
  return new DaemonError(code, msg, opts);
}

/** Errors thrown by node:fs carry `errno` negative and `code` as a name. */
export function fromNodeError(code: DaemonErrorCode, step: string, err: unknown, path?: string): DaemonError {
  const e = err as NodeJS.ErrnoException;
  const errno = typeof e?.code === "string" ? errnoNumbers()[e.code] : undefined;
  if (errno !== undefined) return syscallError(code, step, e.syscall ?? "open", errno, path ?? e.path);
  return new DaemonError(code, `${step}: ${e?.message ?? String(err)}`, path === undefined ? { cause: err } : { path, cause: err });
}
