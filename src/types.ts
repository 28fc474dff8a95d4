import type { ArgDef, ArgsDef } from "citty";
import type { Logger } from "./log.ts";
import type { EnvOption } from "./environment.ts";
import type { LogLevel, LogTarget } from "./argv.ts";
import type { ConfigOptions, ConfigSchema } from "./config.ts";
import type { SyslogFacility } from "./syslog.ts";

export type HookName = "init" | "ready" | "reload" | "shutdown";
/** How the daemon runs: detached by `start`, or attached by `run`. */
export type Mode = "daemon" | "foreground";

type ArgValue<D extends ArgDef> = D extends { type: "boolean" }
  ? boolean
  : D extends { type: "enum"; options: readonly (infer O)[] }
    ? O
    : string;
/** Present whenever the option has a default or is required, as citty parses it. */
type ParsedValue<D extends ArgDef> = D extends { default: string | boolean } | { required: true } ? ArgValue<D> : ArgValue<D> | undefined;

type Camel<S extends string> = S extends `${infer H}-${infer T}` ? `${H}${Capitalize<Camel<T>>}` : S;
type AliasesOf<D> = D extends { alias: infer L } ? (L extends readonly string[] ? L[number] : L & string) : never;

/**
 * `ctx.args`: the app's own options, typed from its ArgsDef, under every
 * key the parser fills (the name, its camelCase form, its aliases), and `_`,
 * the words left over. Unlike citty's ParsedArgs it has no index signature,
 * so a misspelled option does not type-check.
 */
export type DaemonArgs<A extends ArgsDef = {}> = { readonly _: string[] } & {
  readonly [K in keyof A & string as K | Camel<K> | AliasesOf<A[K]>]: ParsedValue<A[K]>;
};

/**
 * The app's ArgsDef of `D`: a daemon's type (`typeof daemon`), or an ArgsDef
 * itself. Used as `onInit<typeof daemon>(...)` by hooks registered outside
 * `daemon.on()`.
 */
export type ArgsOf<D> = D extends { readonly config: { readonly args?: infer A } }
  ? NonNullable<A> extends ArgsDef ? NonNullable<A> : {}
  : D extends ArgsDef
    ? D
    : never;

/**
 * The config type of `D`: a daemon's type (`typeof daemon`), from its
 * `config.schema`'s output. Used as `onReload<typeof daemon>(...)`.
 */
export type ConfigOf<D> = D extends { readonly config: { readonly config?: infer O } }
  ? NonNullable<O> extends { schema?: ConfigSchema<infer C> } ? (unknown extends C ? Record<string, unknown> : C) : Record<string, unknown>
  : Record<string, unknown>;

/** What every hook receives. */
export interface HookContext<A extends ArgsDef = {}, C = Record<string, unknown>> {
  /** The daemon's name. */
  readonly name: string;
  /** consola logger tagged with the name; stderr in the foreground, the log file (or nothing) once detached. */
  readonly log: Logger;
  /** Aborted when shutdown begins: pass it to fetch, timers, servers. */
  readonly signal: AbortSignal;
  readonly mode: Mode;
  readonly pid: number;
  /** Parsed command-line arguments: the app's own `args`, typed by name. */
  readonly args: DaemonArgs<A>;
  /**
   * The config (DaemonConfig.config): the schema's output for the file's
   * keys over `defaults`, the library's own keys (pid_file, log_file,
   * log_level, user, group) taken out. In a reload hook, the config being
   * reloaded to; it becomes the daemon's config only once every reload hook
   * succeeded. `{}` without a config option.
   */
  readonly config: C;
  /** Begin shutdown from inside (same as SIGTERM). */
  stop(reason?: string): void;
  /**
   * Ask the supervisor for `ms` more time for what is running now (systemd's
   * start, reload or stop timeout, from when it receives this): sends
   * `EXTEND_TIMEOUT_USEC=`. The library never extends on its own; a slow
   * init calls this again before each extension runs out. Returns whether a
   * datagram was sent (false when not run by a Type=notify unit).
   */
  extendTimeout(ms: number): boolean;
  /**
   * Drop privileges now, from inside an init hook, instead of after the last
   * init hook: chroot, groups, gid, uid, no_new_privs, as configured, then
   * verified on every thread. Once: later calls (and the drop after init)
   * do nothing. Throws DaemonError PRIVILEGES when a step or the
   * verification fails (the start then fails). Nothing to do without `user`,
   * `chroot` or `noNewPrivileges`.
   */
  dropPrivileges(): void;
  /**
   * Bun.serve on a listening socket the daemon owns: the options and return
   * value are Bun.serve's (TCP only), plus `name` (default `"http"`, the
   * socket's LISTEN_FDNAMES / FDNAME= name), `drain` and `backlog`. The
   * socket comes from socket activation or systemd's fd store when one is
   * passed under that name (or is the only one on that port), survives an
   * `upgrade` (SIGUSR2) and is shared by workers, so replacing the process
   * refuses no connection. At shutdown the server drains first: it stops
   * accepting, answers with `Connection: close` for `drain` ms, then closes.
   * Throws DaemonError USAGE (bad options, `unix`), LISTEN (bind failed:
   * the address and errno), SERVE (this Bun cannot be handed the socket).
   */
  serve<W = undefined, R extends string = string>(options: import("./serve.ts").ServeOptions<W, R>): import("bun").Server<W>;
  /** In a worker (DaemonConfig.workers): its id (1..count, kept by its replacements) and how many there are. Undefined without workers. */
  readonly worker?: { readonly id: number; readonly count: number };
}

/** Resource limits set with setrlimit(2), soft and hard alike; `Infinity` is unlimited. */
export interface RlimitOptions {
  /** RLIMIT_CORE, bytes. Default 0 in daemon mode (a core dump holds the daemon's secrets), unchanged in the foreground. */
  core?: number;
  /** RLIMIT_NOFILE: open file descriptors. Default: unchanged. */
  nofile?: number;
  /** RLIMIT_NPROC: processes of the user. Default: unchanged. */
  nproc?: number;
  /** RLIMIT_AS: address space, bytes. Default: unchanged (Bun reserves a lot of address space: leave room). */
  as?: number;
  /** RLIMIT_FSIZE: largest file written, bytes. Default: unchanged. */
  fsize?: number;
  /** RLIMIT_MEMLOCK, bytes. Default: unchanged. */
  memlock?: number;
  /** RLIMIT_STACK, bytes. Default: unchanged. */
  stack?: number;
  /** RLIMIT_CPU, seconds. Default: unchanged. */
  cpu?: number;
}

/** Least-privilege options shared by defineDaemon() and daemonize(). */
export interface PrivilegeConfig {
  /**
   * Drop to this user (name or uid) once the init hooks resolved, before the
   * daemon is declared ready (daemonize(): at `ready()`): supplementary
   * groups as initgroups(3) sets them, then the gid, then the uid, on every
   * thread, verified in /proc/self/task/\*\/status; setuid(0) must then fail.
   * Init hooks run as the launching user (root: bind port 80, read keys).
   * Skipped when already running as that user. Needs a root launcher
   * otherwise. `--user` overrides. Default: none (no drop).
   */
  user?: string | number;
  /** With `user`: the group (name or gid). Default: the user's primary group. `--group` overrides. */
  group?: string | number;
  /** prctl(PR_SET_NO_NEW_PRIVS) on every thread at the drop: no execve can gain privileges again. Default: true when `user` is set, else false. */
  noNewPrivileges?: boolean;
  /**
   * chroot(2) into this directory at the drop (after init), then chdir("/").
   * The directory must hold what the daemon still needs: /proc (mounted
   * there: readiness and the verification read it), DNS files, every module
   * a later `import()` loads. The PID file and the log file must lie inside
   * it (the launcher refuses others); the default PID file is root's default
   * inside the root (`<chroot>/run/<name>/<name>.pid` with `user`).
   * Needs root (CAP_SYS_CHROOT). Default: none.
   */
  chroot?: string;
  /** Resource limits, set before the app loads. Default: `{ core: 0 }` in daemon mode, nothing in the foreground. */
  rlimits?: RlimitOptions;
}

/** Reload hooks also see the config they replace. */
export interface ReloadContext<A extends ArgsDef = {}, C = Record<string, unknown>> extends HookContext<A, C> {
  /** The config in force before this reload (what `config` is again if a reload hook throws). */
  readonly previousConfig: C;
}

/** Shutdown hooks also learn why. */
export interface ShutdownContext<A extends ArgsDef = {}, C = Record<string, unknown>> extends HookContext<A, C> {
  /** "SIGTERM", "SIGINT", "stop() called", "init failed", "uncaught exception", … */
  readonly reason: string;
}

export type Hook<C = HookContext> = (ctx: C) => unknown;
export type ShutdownHook<C = ShutdownContext> = (ctx: C) => unknown;

export interface DaemonConfig<A extends ArgsDef = ArgsDef, C = Record<string, unknown>> extends PrivilegeConfig {
  /** Required. Default PID file name, process name (/proc/PID/comm), log tag. */
  name: string;
  /** Shown by --help. */
  description?: string;
  /** Shown by --version. */
  version?: string;
  /** The app's own command-line options (citty ArgsDef), given to `run`, `start` and `restart`. */
  args?: A;
  /** PID file. Default: `/run/<name>.pid` for root (`/run/<name>/<name>.pid`, owned by the user, with `user`), else `$XDG_RUNTIME_DIR/<name>.pid`, else `/tmp/<name>-<uid>.pid`. `--pid-file` overrides. */
  pidFile?: string;
  /** Log file for daemon mode (appended, reopened on SIGUSR1). Default: none, logs go to /dev/null. `--log-file` overrides. */
  logFile?: string;
  /**
   * A config file: `file` (default path; `--config` overrides), `schema`
   * (a Standard Schema validator such as zod or valibot, or a function that
   * returns the config and throws; types `ctx.config`) and `defaults`.
   * `.conf`/`.env`/no extension: key=value lines; `.toml`; `.json`. Read
   * and validated before the app loads (a bad file fails the start with
   * every problem as file:line: key: message), again on each reload (a bad
   * file keeps the old config), and by `check`. Its `pid_file`, `log_file`,
   * `log_level`, `user` and `group` apply to every command, below the
   * command-line options and above the values given here. Default: none.
   */
  config?: ConfigOptions<C>;
  /** Lowest severity logged: debug, info, warn or error. Default: info (or CONSOLA_LEVEL). `--log-level` and the config's log_level override. */
  logLevel?: LogLevel;
  /**
   * Where log lines go: `stderr`, `file` (the log file: needs one), `syslog`,
   * `none`. Default: stderr in the foreground; detached, the log file when
   * one is given, else syslog when its socket exists, else nowhere.
   * `--log-target` overrides.
   */
  logTarget?: LogTarget;
  /** The syslog target: `socket` (default "/dev/log") and `facility` (default "daemon"). */
  syslog?: { socket?: string; facility?: SyslogFacility };
  /** `text` (one line per event, newlines escaped) or `json` (one object per line: time, level, name, pid, msg, err). Default "text". `--log-format` overrides. */
  logFormat?: "text" | "json";
  /**
   * ms between a stop signal (SIGTERM, SIGINT, SIGQUIT) and the shutdown
   * hooks: the daemon is not ready any more (`status --ready` 1, /readyz
   * 503, STOPPING=1) but keeps serving with its listeners open, so an
   * orchestrator that removes the endpoint while it sends SIGTERM (as
   * Kubernetes does) loses no request. A second stop signal skips the rest
   * of it, a third exits at once. Default 0; 5000 when KUBERNETES_SERVICE_HOST
   * is set. `--shutdown-delay` overrides.
   */
  shutdownDelay?: number;
  /** As PID 1, the last step of shutdown: SIGTERM to every process left, then wait this many ms for them. Default 2000. */
  killGrace?: number;
  /** Write "\n" to this fd once ready, then close it (s6 notification-fd, dinit pipefd, OpenRC notify=fd). `run` only. Default none. `--ready-fd` overrides. */
  readyFd?: number;
  /** GET /livez and GET /readyz on this port (host default "0.0.0.0"), for HTTP probes. Default none. `--health-port` overrides the port. */
  health?: { port: number; host?: string };
  /** ms `start` waits for readiness before killing the daemon; 0 waits for ever. Default 30000. `--ready-timeout` overrides. */
  readyTimeout?: number;
  /**
   * Run the app in this many worker processes (`"auto"`: one per CPU),
   * under a primary that loads none of it. Workers share the ctx.serve
   * listeners; one that dies is replaced; `reload` replaces them one at a
   * time. Default none: the app runs in the daemon process itself.
   * `--workers` overrides.
   */
  workers?: number | "auto";
  /** ms each shutdown hook may take (and an interrupted init hook may still run). Default 10000. */
  shutdownTimeout?: number;
  /** umask of the detached daemon. Default 0o022. */
  umask?: number;
  /** Working directory of the detached daemon. Default "/". */
  cwd?: string;
  /**
   * What the detached daemon inherits from the launcher's environment
   * (daemon(7) step 4). `"inherit"`: all of it. `{ keep, set }`: everything
   * else is removed before the daemon is exec'd, so neither the daemon nor
   * anything it spawns (Bun.spawn, node:child_process, Bun.$) ever sees it;
   * the daemon gets the `keep` variables the launcher has, then `set`, and
   * defaults for those not given: PATH (systemd's), LANG=C.UTF-8,
   * TZ=:/etc/localtime, HOME/USER/LOGNAME of the user it runs as.
   * NOTIFY_SOCKET, LISTEN_* and WATCHDOG_* always pass. In the foreground
   * (`run`, or `start` held there by systemd) nothing is removed: the shell
   * or systemd that started the process chose its environment.
   * Default "inherit".
   */
  env?: EnvOption;
  /**
   * Loads the app, e.g. `() => import("./app.ts")`, whose modules register
   * their hooks with onInit() & co. Called only in the process that runs the
   * hooks (the daemon, or `run` in the foreground), after its signal
   * handlers are installed and before the init hooks: the launcher, the
   * control commands and --help never load it, so they cost what the entry
   * file costs. A throw or rejection fails the start as a throwing init hook
   * does. Default: none (hooks are registered in the entry file).
   */
  app?: () => unknown;
  /**
   * Health check for the systemd watchdog (only when `WATCHDOG_USEC` is set,
   * e.g. by `WatchdogSec=`): called every WATCHDOG_USEC/2 once the daemon is
   * ready, before each `WATCHDOG=1` ping; sync or async. Returning `false`,
   * throwing or rejecting skips that ping (logged when it starts and stops
   * failing), and so does a check still pending from the previous period;
   * enough skipped pings and systemd restarts the daemon. Without it the
   * pings only vouch for the event loop. Default: none.
   */
  watchdog?: (ctx: HookContext<A, C>) => boolean | void | Promise<boolean | void>;
  /**
   * The init hook; or `false`: no PID 1 duties even as PID 1 (no reaping,
   * no SIGTERM to what is left at exit), for a process with an init of its
   * own in front (tini, `docker run --init`). Default: duties on as PID 1.
   */
  init?: Hook<HookContext<A, C>> | false;
  ready?: Hook<HookContext<A, C>>;
  reload?: Hook<ReloadContext<A, C>>;
  shutdown?: ShutdownHook<ShutdownContext<A, C>>;
}
