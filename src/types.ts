import type { ArgsDef, ParsedArgs } from "citty";
import type { Logger } from "./log.ts";

export type HookName = "init" | "ready" | "reload" | "shutdown";
/** How the daemon runs: detached by `start`, or attached by `run`. */
export type Mode = "daemon" | "foreground";

/** What every hook receives. */
export interface HookContext<A extends ArgsDef = ArgsDef> {
  /** The daemon's name. */
  readonly name: string;
  /** consola logger tagged with the name; stderr in the foreground, the log file (or nothing) once detached. */
  readonly log: Logger;
  /** Aborted when shutdown begins: pass it to fetch, timers, servers. */
  readonly signal: AbortSignal;
  readonly mode: Mode;
  readonly pid: number;
  /** Parsed command-line arguments, including the app's own `args`. */
  readonly args: ParsedArgs<A>;
  /** Begin shutdown from inside (same as SIGTERM). */
  stop(reason?: string): void;
}

/** Shutdown hooks also learn why. */
export interface ShutdownContext<A extends ArgsDef = ArgsDef> extends HookContext<A> {
  /** "SIGTERM", "SIGINT", "stop() called", "init failed", "uncaught exception", … */
  readonly reason: string;
}

export type Hook<C = HookContext> = (ctx: C) => unknown;
export type ShutdownHook<C = ShutdownContext> = (ctx: C) => unknown;

export interface DaemonConfig<A extends ArgsDef = ArgsDef> {
  /** Required. Default PID file name, process name (/proc/PID/comm), log tag. */
  name: string;
  /** Shown by --help. */
  description?: string;
  /** Shown by --version. */
  version?: string;
  /** The app's own command-line options (citty ArgsDef), given to `run`, `start` and `restart`. */
  args?: A;
  /** PID file. Default: `/run/<name>.pid` for root, else `$XDG_RUNTIME_DIR/<name>.pid`, else `/tmp/<name>-<uid>.pid`. `--pid-file` overrides. */
  pidFile?: string;
  /** Log file for daemon mode (appended, reopened on SIGUSR1). Default: none, logs go to /dev/null. `--log-file` overrides. */
  logFile?: string;
  /** ms `start` waits for readiness before killing the daemon; 0 waits for ever. Default 30000. `--ready-timeout` overrides. */
  readyTimeout?: number;
  /** ms each shutdown hook may take (and an interrupted init hook may still run). Default 10000. */
  shutdownTimeout?: number;
  /** umask of the detached daemon. Default 0o022. */
  umask?: number;
  /** Working directory of the detached daemon. Default "/". */
  cwd?: string;
  init?: Hook<HookContext<A>>;
  ready?: Hook<HookContext<A>>;
  reload?: Hook<HookContext<A>>;
  shutdown?: ShutdownHook<ShutdownContext<A>>;
}
