/** defineDaemon(): the framework object an app builds its daemon from. */
import type { ArgsDef } from "citty";
import { DaemonError } from "./errors.ts";
import { adopt, enlist, type HookOwner, type Registration } from "./hooks.ts";
import { checkAppArgs, workerCount } from "./argv.ts";
import { checkName } from "./paths.ts";
import type { PidFileLock } from "./pidfile.ts";
import type { DaemonHandle } from "./stage.ts";
import type { ConfigOptions } from "./config.ts";
import type { HealthOptions } from "./health.ts";
import type { LoggingOptions } from "./log.ts";
import type { ReadyFd } from "./ready-fd.ts";
import type { PrivilegeOptions } from "./privileges.ts";
import type { DaemonConfig, Hook, HookContext, HookName, Mode, ReloadContext, ShutdownContext, ShutdownHook } from "./types.ts";

export interface Daemon<A extends ArgsDef = {}, C = Record<string, unknown>> {
  readonly name: string;
  readonly config: Readonly<DaemonConfig<A, C>>;
  /**
   * Register a hook. Returns a function that unregisters it (a hook
   * unregistered before its turn does not run). An init hook registered while
   * init runs runs in that same init, after those already registered.
   */
  on(event: "shutdown", fn: ShutdownHook<ShutdownContext<A, C>>): () => void;
  on(event: "reload", fn: Hook<ReloadContext<A, C>>): () => void;
  on(event: "init" | "ready", fn: Hook<HookContext<A, C>>): () => void;
  /**
   * Parse `argv` (default `process.argv.slice(2)`) and run the command:
   * `run` (default), `start`/`--daemon`, `stop`, `status`, `reload`, `restart`.
   * Exits the process with the command's status; a running daemon resolves never.
   * Once per process: a second call (of any daemon's main()) rejects with
   * ALREADY_CALLED and does nothing else.
   */
  main(argv?: string[]): Promise<void>;
  /** Begin shutdown from inside the daemon (runs shutdown hooks, then exits 0). */
  stop(reason?: string): void;
}

/** Internal: what a lifecycle gets besides its hooks. */
export interface RunExtras {
  privileges?: PrivilegeOptions;
  logging: LoggingOptions;
  /** DaemonConfig.config, the --config path, and whether --log-level pins the level (a reload's log_level then does not). */
  config?: { options: ConfigOptions<unknown>; explicit?: string; levelFromCli: boolean };
  /** Shutdown delay, health listener, readiness fd: what orchestrators and supervisors need. */
  supervision?: { shutdownDelay: number; health?: HealthOptions; readyFd?: ReadyFd };
  /** Lines the lifecycle logs once it has a logger (why it runs in the foreground, a PID file fallback). */
  notices?: Array<{ level: "info" | "warn"; text: string }>;
  /** ms an upgrade's new process has to be ready. */
  readyTimeout?: number;
  /** This process was started by `upgrade` to take over from that pid. */
  successor?: { pid: number };
  /** This process is the primary of that many workers: it loads none of the app. */
  workers?: number;
  /** This process is a worker. */
  worker?: { id: number; count: number };
}

/** Internal: what the CLI needs to run a lifecycle. */
export interface DaemonInternals {
  run(mode: Mode, args: Record<string, unknown>, lock: PidFileLock, stage: DaemonHandle | undefined, extras: RunExtras): Promise<never>;
  /** Hooks of `event` registered so far, without loading the app (for `unit`'s TimeoutStopSec). */
  count(event: HookName): number;
}

/** The daemon whose main() this process runs: one per process, and main() once. */
let mainOf: string | undefined;

/**
 * Define a daemon. Hooks given in `config` register first (init, ready,
 * reload, shutdown), after any registered earlier with onInit() & co.
 */
export function defineDaemon<const A extends ArgsDef = {}, C = Record<string, unknown>>(config: DaemonConfig<A, C>): Daemon<A, C> {
  checkName(config.name);
  checkAppArgs(config.args);
  if (config.workers !== undefined) workerCount(config.workers, "defineDaemon: workers");
  const hooks: Registration[] = [];
  let phase: "starting" | "other" = "other";
  let lifecycle: import("./lifecycle.ts").Lifecycle | undefined;

  const owner: HookOwner = {
    add(event: HookName, fn: Hook<any>) {
      if (typeof fn !== "function") throw new TypeError(`daemon.on("${event}") needs a function`);
      return enlist(hooks, event, fn, phase === "starting");
    },
  };
  adopt(owner, hooks);
  for (const event of ["init", "ready", "reload", "shutdown"] as const) {
    const fn = config[event];
    // `init: false` is the opt-out of PID 1's duties, not a hook.
    if (fn) owner.add(event, fn as Hook<any>);
  }

  const internals: DaemonInternals = {
    // Loaded here, not at the top: a launcher or a control command never
    // runs hooks, and every module costs each process its load time.
    async run(mode, args, lock, stage, extras) {
      const [{ Lifecycle }, { createLogger }] = await Promise.all([import("./lifecycle.ts"), import("./log.ts")]);
      adopt(owner, hooks);
      const logger = createLogger(config.name, mode, extras.logging);
      lifecycle = new Lifecycle({
        name: config.name,
        mode,
        log: logger.log,
        logger,
        args: args as never,
        hooks,
        shutdownTimeout: config.shutdownTimeout ?? 10_000,
        lock,
        ...(stage ? { stage } : {}),
        ...(extras.privileges ? { privileges: extras.privileges } : {}),
        ...(extras.config && extras.workers === undefined ? { config: extras.config } : {}),
        ...(extras.notices ? { notices: extras.notices } : {}),
        ...(extras.readyTimeout === undefined ? {} : { readyTimeout: extras.readyTimeout }),
        ...(extras.successor ? { successor: extras.successor } : {}),
        ...(extras.workers === undefined ? {} : { workers: extras.workers }),
        ...(extras.worker ? { worker: extras.worker } : {}),
        ...(extras.supervision ?? {}),
        // PID 1 of a namespace (a container without an init in front): its duties, unless `init: false`.
        ...(process.pid === 1 && config.init !== false ? { pid1: { killGrace: config.killGrace ?? 2000 } } : {}),
        // A primary loads none of the app (nor its config): its workers do.
        ...(config.app && extras.workers === undefined ? { load: config.app } : {}),
        ...(config.watchdog ? { watchdog: config.watchdog as (ctx: HookContext<any>) => unknown } : {}),
        setPhase: (p) => {
          phase = p;
        },
      });
      return lifecycle.run();
    },
    count(event) {
      adopt(owner, hooks);
      return hooks.filter((h) => h.event === event).length;
    },
  };

  const daemon: Daemon<A, C> = {
    name: config.name,
    config,
    on: ((event: HookName, fn: Hook<any>) => owner.add(event, fn)) as Daemon<A, C>["on"],
    main(argv = process.argv.slice(2)) {
      // A second run would install a second set of signal handlers, run init
      // again, and (in the foreground) take the PID file a second time.
      if (mainOf !== undefined) {
        const which = mainOf === config.name ? "" : ` (by daemon "${mainOf}")`;
        return Promise.reject(new DaemonError("ALREADY_CALLED", `main() already called${which}; a process runs one daemon, and its main() once`));
      }
      mainOf = config.name;
      // The CLI loads on first use: importing bun-daemon costs what defining a daemon needs.
      return import("./cli.ts").then(({ runCli }) => runCli(config as unknown as DaemonConfig, internals, argv));
    },
    stop(reason) {
      lifecycle?.stop(reason);
    },
  };
  return daemon;
}
