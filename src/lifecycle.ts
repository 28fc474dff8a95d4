/**
 * Runs a daemon's hooks in one process, detached or in the foreground:
 * init in order, then ready; reload one at a time, coalesced; shutdown in
 * reverse order, each bounded by the shutdown timeout; then exit.
 */
import { DaemonError, errorText } from "./errors.ts";
import { monotonicUsec, sendSignal } from "./ffi.ts";
import type { Registration } from "./hooks.ts";
import { keepOutputErrorsHarmless, type DaemonLogger, type Logger } from "./log.ts";
import { errnoOf, notifyAddress, send, statusText, takeSupervisorEnv, watchdogPeriodMs } from "./notify.ts";
import { releasePidFile, writePid, type PidFileLock } from "./pidfile.ts";
import { applyRlimits, drop, rootPaths, type PrivilegeOptions } from "./privileges.ts";
import type { DaemonHandle } from "./stage.ts";
import type { LogLevel } from "./argv.ts";
import type { ConfigOptions } from "./config.ts";
import { lookupUserSpec } from "./environment.ts";
import { openStateFile, statePathFor, type StateWriter } from "./state.ts";
import type { HookContext, HookName, Mode, ReloadContext, ShutdownContext } from "./types.ts";
import { startWatchdog } from "./watchdog.ts";
import { startHealth, type HealthOptions } from "./health.ts";
import type { ReadyFd } from "./ready-fd.ts";
import { livingOthers } from "./proc.ts";
import { rememberStartEnv, watchPredecessor } from "./upgrade.ts";

export interface LifecycleOptions {
  name: string;
  mode: Mode;
  log: Logger;
  args: Record<string, unknown>;
  hooks: Registration[];
  shutdownTimeout: number;
  lock: PidFileLock;
  /** Only in daemon mode: the channel to the launcher. */
  stage?: DaemonHandle;
  /** Marks registrations made while init runs. */
  setPhase(phase: "starting" | "other"): void;
  /** DaemonConfig.app: loads the app's modules before init. */
  load?: () => unknown;
  /** DaemonConfig.watchdog: the health check before each watchdog ping. */
  watchdog?: (ctx: HookContext<any>) => unknown;
  /** user, group, chroot, noNewPrivileges, rlimits: the drop after init. */
  privileges?: PrivilegeOptions;
  /** The logger's switches (reporters at ready, the level on reload). */
  logger?: DaemonLogger;
  /** ms between the first stop signal and the shutdown hooks (not ready, still serving); 0: none. */
  shutdownDelay?: number;
  /** The supervisor's readiness fd (--ready-fd). */
  readyFd?: ReadyFd;
  /** GET /livez, /readyz. */
  health?: HealthOptions;
  /** PID 1 duties: reap orphans, SIGTERM what is left at exit. */
  pid1?: { killGrace: number };
  /** Lines to log once at start (why the process runs in the foreground, a PID file fallback, a default shutdown delay). */
  notices?: Array<{ level: "info" | "warn"; text: string }>;
  /** DaemonConfig.config and the --config path: loaded before the app, again on each reload. */
  config?: { options: ConfigOptions<unknown>; explicit?: string; levelFromCli: boolean };
  /** ms an upgrade's new process has to be ready (readyTimeout). Default 30 000. */
  readyTimeout?: number;
  /** Started by `upgrade` to take over from this pid: the PID file and the state file become ours at ready. */
  successor?: { pid: number };
  /** DaemonConfig.workers, resolved: this process is the primary of that many workers, and runs none of the app. */
  workers?: number;
  /** This process is a worker of a primary (src/worker.ts). */
  worker?: { id: number; count: number };
}

/** Whether `err` is a failed drop or a bad config, which keep their own code and line; never throws, whatever was thrown (instanceof on a Proxy can). */
function keepsItsCode(err: unknown): boolean {
  try {
    return err instanceof DaemonError && (err.code === "PRIVILEGES" || err.code === "CONFIG" || err.code === "STATE");
  } catch {
    return false;
  }
}

type State = "starting" | "running" | "stopping";

/**
 * For the log, where a trace helps: the stack when the thrown value has a
 * readable one, else its one-line text. Never throws, whatever was thrown.
 */
function detail(err: unknown): string {
  try {
    if (err instanceof Error && typeof err.stack === "string" && err.stack !== "") return err.stack;
  } catch {}
  return errorText(err);
}

/**
 * A thrown value as log arguments: an Error as itself (so a JSON log line
 * gets its `err` field, a text one its stack, on one line), anything else
 * as detail()'s text. Never throws.
 */
function errArgs(err: unknown): unknown[] {
  try {
    if (err instanceof Error && typeof err.stack === "string") return [err];
  } catch {}
  return [detail(err)];
}

/**
 * sd_notify(3) when run by systemd with Type=notify (NOTIFY_SOCKET set):
 * one datagram, the fields in order, `status` (if any) as `STATUS=` last.
 */
function sdNotify(fields: string, status?: string): void {
  // Once a new process took over, it is the main pid: a word from the old one (STOPPING=1) would stop the unit.
  // And an upgrade's new process is not the service until it is ready: its
  // STOPPING=1 at a failed init would stop the unit the old one still serves.
  if (handedOver || notYetMain) return;
  const lines = status === undefined ? fields : `${fields === "" ? "" : `${fields}\n`}STATUS=${statusText(status)}`;
  send(lines);
}

/** Set when an upgrade's new process is ready: this process then speaks no more for the service. */
let handedOver = false;
/** An upgrade's new process, until it is ready: it does not speak for the service yet. */
let notYetMain = false;

export class Lifecycle {
  private state: State = "starting";
  private readonly controller = new AbortController();
  private stopReason: string | undefined;
  private exitCode = 0;
  private reloading: Promise<void> | undefined;
  private reloadPending = false;
  private startFailure: DaemonError | undefined;
  private announced = false;
  private stopped: (() => void) | undefined;
  /** The first SIGTERM/SIGINT received; a stop signal after it ends the process at once. */
  private stopSignal: string | undefined;
  /** The reload hook running now, for the log when a stop cuts it off. */
  private reloadHook: string | undefined;
  /** The drop ran (after init, or from ctx.dropPrivileges()): it runs once. */
  private dropped = false;
  /** ctx.config: the config in force. */
  private config: unknown = {};
  /** The file it came from, for status. */
  private configFile: string | undefined;
  /** The state file beside the PID file (status, reload outcomes). */
  private stateFile: StateWriter | undefined;
  private stateError: unknown;
  /** The shutdown delay's timer, while it runs. */
  private delayTimer: ReturnType<typeof setTimeout> | undefined;
  /** From the first stop signal on: not ready, whatever else is still running. */
  private leaving = false;
  private health: { stop(): void } | undefined;
  /** ctx.serve was called: shutdown drains its servers first. */
  private served = false;
  /** The upgrade running now, and its new process's pid once it exists. */
  private upgradeRun: Promise<void> | undefined;
  private upgradePid: number | undefined;
  /** The primary's workers. */
  private pool: import("./workers.ts").WorkerPool | undefined;
  /** An upgrade's new process: ends the watch on the old one (at ready). */
  private unwatchPredecessor: (() => void) | undefined;

  constructor(private readonly o: LifecycleOptions) {}

  /** `"fnName"`, or `#n` by position among the hooks of its event; taken before the hook runs, as it may unregister itself. */
  private label(reg: Registration): string {
    let name: unknown;
    try {
      name = reg.fn.name;
    } catch {}
    return typeof name === "string" && name !== "" ? `"${name}"` : `#${this.list(reg.event).indexOf(reg) + 1}`;
  }

  /** Still registered: a hook unregistered before its turn does not run. */
  private registered(reg: Registration): boolean {
    return this.o.hooks.includes(reg);
  }

  private ctx(): HookContext<any> {
    return {
      name: this.o.name,
      log: this.o.log,
      signal: this.controller.signal,
      mode: this.o.mode,
      pid: process.pid,
      args: this.o.args as HookContext<any>["args"],
      config: this.config as Record<string, unknown>,
      stop: (reason?: string) => this.stop(reason),
      extendTimeout: (ms: number) => {
        if (typeof ms !== "number" || !Number.isFinite(ms) || ms < 0) {
          throw new DaemonError("USAGE", `extendTimeout(ms) needs a non-negative number of ms, not ${typeof ms === "number" ? ms : typeof ms}`);
        }
        return send(`EXTEND_TIMEOUT_USEC=${Math.round(ms * 1000)}`);
      },
      dropPrivileges: () => this.dropPrivileges(),
      serve: (options) => {
        const s = (require("./serve.ts") as typeof import("./serve.ts")).serve(options);
        this.served = true;
        return s as never;
      },
      ...(this.o.worker ? { worker: { id: this.o.worker.id, count: this.o.worker.count } } : {}),
    };
  }

  /** Once: a second call, or the drop after init once a hook dropped, does nothing. Throws PRIVILEGES. */
  private dropPrivileges(): void {
    if (this.dropped) return;
    this.dropped = true;
    const o = this.o.privileges;
    if (!o) return;
    // With a chroot: the files' paths inside it, resolved while they are still reachable.
    const inside = o.chroot === undefined ? undefined : rootPaths(o.chroot, { pidFile: this.o.lock.path, ...(o.logFile === undefined ? {} : { logFile: o.logFile }) });
    const t = drop(o, (target) => {
      // Still root: the state file becomes the user's, so the daemon keeps writing it.
      if (target) this.stateFile?.handOver(target.uid, target.gid);
      if (!inside) return;
      this.stateFile?.moveTo(statePathFor(inside.pidFile));
      // Loaded only with a chroot: the foreground never loads the stage otherwise.
      if (this.o.stage) (require("./stage.ts") as typeof import("./stage.ts")).moveIntoRoot(this.o.stage, inside);
      else this.o.lock.path = inside.pidFile;
    });
    if (t) this.o.log.info(`dropped privileges to ${t.name} (uid ${t.uid}, gid ${t.gid}, groups ${t.groups.join(",")})${o.chroot ? `, chroot ${o.chroot}` : ""}; verified on every thread`);
  }

  private list(event: HookName): Registration[] {
    // A primary runs none of the app's hooks: its workers do.
    if (this.o.workers !== undefined) return [];
    return this.o.hooks.filter((r) => r.event === event);
  }

  /** Begin shutdown (idempotent). */
  stop(reason = "stop() called", exitCode = 0): void {
    if (this.stopReason !== undefined) return;
    this.stopReason = reason;
    this.exitCode = exitCode;
    this.announceStopping();
    this.controller.abort(reason);
    this.stopped?.();
    // During init the init loop notices and shuts down what already started.
    if (this.state === "running") void this.shutdown();
  }

  /** Runs until the process exits; never resolves. */
  async run(): Promise<never> {
    this.install();
    for (const n of this.o.notices ?? []) this.o.log[n.level](n.text);
    if (this.o.logger?.note) this.o.log.debug(this.o.logger.note);
    // PID 1 of a namespace: orphans are reparented to us, and nobody else reaps them.
    if (this.o.pid1) (require("./reaper.ts") as typeof import("./reaper.ts")).startReaper({ log: this.o.log });
    if (this.o.health) {
      try {
        this.health = startHealth(this.o.health, () => this.state === "running" && !this.leaving);
      } catch (err) {
        this.failStart(`the health listener on port ${this.o.health.port} failed`, err);
        await this.shutdown(() => false);
      }
    }
    let firstNotStarted: Registration | undefined;
    if (this.stateError !== undefined) {
      this.failStart("opening the state file failed", this.stateError);
      await this.shutdown(() => false);
    }
    try {
      // Before the app loads: a core dump of anything read from here on would hold it.
      applyRlimits(this.o.privileges?.rlimits, this.o.mode);
    } catch (err) {
      this.failStart("setting rlimits failed", err);
      await this.shutdown(() => false);
    }
    if (this.o.workers !== undefined && this.stopReason === undefined) await this.startWorkers(this.o.workers);
    if (this.o.config && this.o.workers === undefined) {
      // Before the app: a bad file fails the start with every problem, before anything opened.
      sdNotify("", "starting: reading the config");
      try {
        const c = await (await import("./config.ts")).loadConfig(this.o.config.options, this.o.config.explicit);
        this.config = c.config;
        this.configFile = c.file;
        this.stateFile?.setConfigFile(c.file);
      } catch (err) {
        this.failStart("reading the config failed", err);
        await this.shutdown(() => false);
      }
    }
    if (this.o.load && this.stopReason === undefined) sdNotify("", "starting: loading the app");
    if (this.o.load && this.stopReason === undefined && !(await this.loadApp())) {
      // Nothing had started: no shutdown hook belongs to what ran.
      await this.shutdown(() => false);
    }
    this.o.setPhase("starting");
    const ran = new Set<Registration>();
    for (;;) {
      // Looked up afresh each time, not indexed: a hook may unregister itself
      // or a later one, or register more (those run after the ones already there).
      const reg = this.list("init").find((r) => !ran.has(r));
      if (!reg) break;
      ran.add(reg);
      const name = this.label(reg);
      if (this.stopReason !== undefined) {
        firstNotStarted = reg;
        break;
      }
      // Named while it runs, so `systemctl status` shows the hook a slow start waits for.
      sdNotify("", `starting: init hook ${name}`);
      try {
        const settled = await this.boundedAfterStop(Promise.resolve().then(() => reg.fn(this.ctx())).then(() => true));
        if (settled !== true) {
          // Cut off by the stop: it never finished, so it did not start.
          this.o.log.warn(`init hook ${name} did not finish within ${this.o.shutdownTimeout} ms of ${this.stopReason}`);
          firstNotStarted = reg;
          break;
        }
      } catch (err) {
        firstNotStarted = reg;
        this.failStart(`init hook ${name} failed`, err);
        break;
      }
    }
    this.o.setPhase("other");
    const p = this.o.privileges;
    if (this.stopReason === undefined && this.o.workers === undefined && !this.dropped && p && (p.user !== undefined || p.chroot !== undefined || p.noNewPrivileges)) {
      // After init (it ran as the launching user: ports < 1024, root-only
      // keys), before ready: a daemon never serves with the privileges.
      sdNotify("", "starting: dropping privileges");
      try {
        this.dropPrivileges();
      } catch (err) {
        this.failStart("dropping privileges failed", err);
      }
    }
    if (this.stopReason !== undefined) {
      this.startFailure ??= new DaemonError("INIT_FAILED", `stopped by ${this.stopReason} before it was ready`);
      if (this.exitCode === 0) this.exitCode = 1;
      const limit = firstNotStarted?.seq ?? Infinity;
      await this.shutdown((r) => r.seq < limit || r.duringInit);
    }
    this.state = "running";
    this.o.logger?.ready();
    this.stateFile?.set("running");
    if (this.o.successor) {
      // Taking over: the state file, then the PID file, then systemd's main
      // pid, and only then the old process hears it may go. A reader that
      // finds our pid finds our state; systemd never sees the old pid exit as main.
      this.stateFile?.promote(statePathFor(this.o.lock.path));
      this.unwatchPredecessor?.();
      this.o.lock.passive = false;
      writePid(this.o.lock, process.pid);
      notYetMain = false;
      sdNotify(`MAINPID=${process.pid}\nREADY=1`, "running");
      this.o.stage?.ready();
    } else {
      this.o.stage?.ready(this.stopBudget().total);
      sdNotify(`READY=1\nMAINPID=${process.pid}`, "running");
    }
    this.o.readyFd?.ready();
    this.o.log.info(`ready (pid ${process.pid}, ${this.o.mode}${this.o.worker ? `, worker ${this.o.worker.id} of ${this.o.worker.count}` : ""}${this.pool ? `, primary of ${this.o.workers} workers` : ""})`);
    this.sayStopBudget();
    // Guarding process.stdout/stderr creates them, which costs about 8 ms:
    // done once ready, off the path to readiness.
    setImmediate(() => keepOutputErrorsHarmless(this.o.log));
    for (const reg of this.list("ready")) {
      if (this.stopReason !== undefined) break;
      if (!this.registered(reg)) continue;
      const name = this.label(reg);
      try {
        await reg.fn(this.ctx());
      } catch (err) {
        this.o.log.error(`ready hook ${name} failed:`, ...errArgs(err));
      }
    }
    if (this.reloadPending && this.stopReason === undefined) this.reload();
    return new Promise<never>(() => {});
  }

  /**
   * Load the app (DaemonConfig.app). Hooks its modules register at import are
   * registered before init, not during it. False when it failed (the start
   * fails, as with a throwing init hook) or a stop cut it off.
   */
  private async loadApp(): Promise<boolean> {
    try {
      const done = await this.boundedAfterStop(Promise.resolve().then(() => this.o.load!()).then(() => true));
      if (done === true && this.stopReason === undefined) return true;
      if (done !== true) this.o.log.warn(`loading the app did not finish within ${this.o.shutdownTimeout} ms of ${this.stopReason}`);
      this.startFailure = new DaemonError("INIT_FAILED", `stopped by ${this.stopReason} before it was ready`);
    } catch (err) {
      this.failStart("loading the app failed", err);
    }
    this.exitCode = 1;
    return false;
  }

  /** Init (or loading the app) threw: the start fails with `what` and the error's text. */
  private failStart(what: string, err: unknown): void {
    const where = `${what}: ${errorText(err)}`;
    this.o.log.error(where);
    const trace = detail(err);
    // A failed `start` shows its user one line (relayed, then the launcher's
    // summary), not a stack: that waits at debug level (CONSOLA_LEVEL=4).
    // In the foreground the developer is the user: the stack is shown.
    if (trace !== errorText(err)) this.o.mode === "daemon" ? this.o.log.debug(trace) : this.o.log.error(trace);
    // A failed drop keeps its own code and line (the step and errno): the launcher prints it as is.
    this.startFailure = keepsItsCode(err) ? (err as DaemonError) : new DaemonError("INIT_FAILED", where, { cause: err });
    if (this.stopReason === undefined) {
      this.stopReason = "init failed";
      this.announceStopping();
      this.controller.abort(this.stopReason);
    }
    this.exitCode = 1;
  }

  /**
   * Stopping before ready: tell the launcher the most shutdown can take (an
   * interrupted init hook, then each shutdown hook, each bounded), so it
   * does not SIGKILL us in the middle of cleaning up.
   */
  private announceStopping(): void {
    if (this.state !== "starting" || this.announced || !this.o.stage) return;
    this.announced = true;
    this.o.stage.stopping(this.o.shutdownTimeout * (this.list("shutdown").length + 1) + 1000);
  }

  /** SIGHUP / `reload`: one at a time; requests during a reload are coalesced into one more run. */
  reload(): void {
    if (this.stopReason !== undefined) return;
    if (this.state !== "running" || this.reloading) {
      this.reloadPending = true;
      return;
    }
    // Cleared in a callback, never inside the run: a run whose hooks all
    // throw synchronously completes before this assignment, and clearing it
    // there would leave `reloading` set for ever (no reload would run again).
    const run = async () => {
      do {
        this.reloadPending = false;
        // One datagram: Type=notify-reload needs MONOTONIC_USEC with RELOADING=1
        // to tell this reload from an earlier one.
        if (notifyAddress() !== undefined) {
          let now = "";
          try {
            now = `\nMONOTONIC_USEC=${monotonicUsec()}`;
          } catch {} // clock_gettime(CLOCK_MONOTONIC) does not fail on Linux; a reload must not fail if it did.
          sdNotify(`RELOADING=1${now}`, "reloading");
        }
        this.o.log.info("reloading");
        const seq = this.stateFile?.reloadStarted();
        const failure = await this.reloadOnce();
        if (seq !== undefined) this.stateFile?.reloadFinished(seq, failure === undefined, failure);
        if (failure === undefined) sdNotify("READY=1", "running");
        else sdNotify("READY=1", `running; reload failed: ${failure}`);
      } while (this.reloadPending && this.stopReason === undefined);
    };
    this.reloading = run().finally(() => {
      this.reloading = undefined;
    });
  }

  /**
   * One reload run: read and validate the config (invalid: no hook runs,
   * the old config stays), then every reload hook with the new config as
   * ctx.config and the old as ctx.previousConfig. A throwing hook is logged
   * and the others still run, but the reload has failed and the old config
   * stays. Returns undefined on success, else the error text for the caller.
   */
  private async reloadOnce(): Promise<string | undefined> {
    if (this.pool) {
      // Rolling: each worker is replaced by a fresh exec, which reads the config (and the code) anew.
      sdNotify("", "reloading: replacing the workers one at a time");
      const failure = await this.pool.reload();
      if (failure === undefined) this.o.log.info("reloaded: every worker replaced");
      return failure;
    }
    const previous = this.config;
    let next = previous;
    let nextFile = this.configFile;
    let level: LogLevel | undefined;
    if (this.o.config) {
      try {
        const c = await (await import("./config.ts")).loadConfig(this.o.config.options, this.o.config.explicit);
        next = c.config;
        nextFile = c.file;
        level = c.library.logLevel;
      } catch (err) {
        const text = errorText(err);
        this.o.log.error(`reload: the config is invalid; keeping the previous one, no reload hook ran:\n${text}`);
        return text;
      }
    }
    let failure: string | undefined;
    const ctx: ReloadContext<any, unknown> = { ...this.ctx(), config: next, previousConfig: previous };
    for (const reg of this.list("reload")) {
      if (this.stopReason !== undefined) break;
      if (!this.registered(reg)) continue;
      this.reloadHook = this.label(reg);
      sdNotify("", `reloading: reload hook ${this.reloadHook}`);
      try {
        await reg.fn(ctx);
      } catch (err) {
        failure ??= `reload hook ${this.reloadHook} failed: ${errorText(err)}`;
        this.o.log.error(`reload hook ${this.reloadHook} failed; keeping the previous ${this.o.config ? "config" : "state"}:`, ...errArgs(err));
      }
      this.reloadHook = undefined;
    }
    if (failure === undefined && this.stopReason !== undefined) failure = `cut off by ${this.stopReason}`;
    if (failure !== undefined) return failure;
    this.config = next;
    this.configFile = nextFile;
    this.stateFile?.setConfigFile(nextFile);
    // --log-level on the command line outranks the file's, at reload as at start.
    if (level !== undefined && !this.o.config?.levelFromCli) this.o.logger?.setLevel(level);
    this.o.log.info("reloaded");
    return undefined;
  }

  /** Wait for `p`; once a stop is requested, wait at most the shutdown timeout more. */
  private boundedAfterStop<T>(p: Promise<T>): Promise<T | undefined> {
    return new Promise<T | undefined>((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const arm = () => {
        timer = setTimeout(() => resolve(undefined), this.o.shutdownTimeout);
      };
      if (this.stopReason !== undefined) arm();
      else this.stopped = arm;
      p.then(
        (v) => {
          clearTimeout(timer);
          this.stopped = undefined;
          resolve(v);
        },
        (e) => {
          clearTimeout(timer);
          this.stopped = undefined;
          reject(e);
        },
      );
    });
  }

  private async shutdown(eligible: (r: Registration) => boolean = () => true): Promise<never> {
    this.state = "stopping";
    this.stateFile?.set("stopping");
    const reason = this.stopReason ?? "stop";
    sdNotify("STOPPING=1", `stopping (${reason})`);
    this.o.log.info(`stopping (${reason})`);
    if (this.reloading) {
      const finished = await this.boundedAfterStop(this.reloading.then(() => true)).catch(() => true);
      if (finished !== true) {
        this.o.log.warn(`reload hook ${this.reloadHook ?? "(unknown)"} did not finish within ${this.o.shutdownTimeout} ms of ${reason}; shutting down without it`);
      }
    }
    if (this.pool) {
      sdNotify("", "stopping: draining the workers");
      await this.pool.stop();
    }
    // After an upgrade the new process answers the probes too: the health
    // listener drains with the rest. On a plain stop it answers until the
    // exit (/livez 200, /readyz 503), so a probe never sees a refused port early.
    if (this.served || (this.health && handedOver)) {
      // Before the hooks (which may close what requests use): stop accepting, answer what is open with Connection: close.
      sdNotify("", "stopping: draining connections");
      const { drainAll } = require("./serve.ts") as typeof import("./serve.ts");
      const { HEALTH_LISTENER } = require("./health.ts") as typeof import("./health.ts");
      await drainAll(this.o.shutdownTimeout, handedOver ? [] : [HEALTH_LISTENER]);
    }
    const hooks = this.list("shutdown").filter(eligible).reverse();
    const ctx: ShutdownContext<any> = { ...this.ctx(), reason };
    let failed = false;
    for (const reg of hooks) {
      if (!this.registered(reg)) continue;
      const name = this.label(reg);
      sdNotify("", `stopping: shutdown hook ${name}`);
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<"timeout">((r) => {
        timer = setTimeout(() => r("timeout"), this.o.shutdownTimeout);
      });
      try {
        const res = await Promise.race([Promise.resolve().then(() => reg.fn(ctx)), timeout]);
        if (res === "timeout") {
          failed = true;
          this.o.log.error(`shutdown hook ${name} did not finish within ${this.o.shutdownTimeout} ms; going on`);
        }
      } catch (err) {
        failed = true;
        this.o.log.error(`shutdown hook ${name} failed:`, ...errArgs(err));
      } finally {
        clearTimeout(timer);
      }
    }
    if (this.o.pid1) await this.endTheRest(this.o.pid1.killGrace);
    this.health?.stop();
    return this.exit(failed && this.exitCode === 0 ? 1 : this.exitCode);
  }

  /**
   * PID 1's last step: SIGTERM to every other process of the namespace
   * (kill(-1), which outside a pid namespace would hit the whole machine:
   * so only as PID 1), then wait up to `graceMs` for them, saying how many
   * were left. Exiting then ends whatever remains (the kernel SIGKILLs it).
   */
  private async endTheRest(graceMs: number): Promise<void> {
    if (process.pid !== 1) return;
    if (livingOthers().length === 0) return;
    sendSignal(-1, 15);
    const end = performance.now() + graceMs;
    while (livingOthers().length > 0 && performance.now() < end) await Bun.sleep(20);
    const left = livingOthers();
    if (left.length > 0) this.o.log.warn(`PID 1: ${left.length} process${left.length === 1 ? "" : "es"} still running ${graceMs} ms after SIGTERM (${left.slice(0, 10).join(", ")}); exiting ends them`);
    else this.o.log.info("PID 1: every other process has exited");
  }

  /** At ready, once: the longest a stop can take, the figure for terminationGracePeriodSeconds, docker stop -t or S6_KILL_GRACETIME. */
  private sayStopBudget(): void {
    const { total, parts } = this.stopBudget();
    this.o.log.info(`a stop takes at most ${total} ms (${parts.join(" + ")}): give the supervisor at least that (terminationGracePeriodSeconds, docker stop -t, S6_KILL_GRACETIME)`);
  }

  /** The longest a stop can take from the signal on, and what it is made of. */
  private stopBudget(): { total: number; parts: string[] } {
    const delay = this.o.shutdownDelay ?? 0;
    const hooks = this.list("shutdown").length;
    const grace = this.o.pid1 && process.pid === 1 ? this.o.pid1.killGrace : 0;
    // drainAll is bounded by the shutdown timeout.
    const drain = this.served ? this.o.shutdownTimeout : 0;
    const workers = this.pool?.stopBudget() ?? 0;
    const total = delay + workers + drain + hooks * this.o.shutdownTimeout + grace;
    const parts = [
      ...(delay ? [`shutdown delay ${delay} ms`] : []),
      ...(this.pool ? [`the workers' stop ${workers} ms`] : []),
      ...(drain ? [`draining ${drain} ms`] : []),
      ...(this.pool ? [] : [`${hooks} shutdown hook${hooks === 1 ? "" : "s"} x ${this.o.shutdownTimeout} ms`]),
      ...(grace ? [`PID 1's kill grace ${grace} ms`] : []),
    ];
    return { total, parts };
  }

  /** The primary's start: every worker ready, or the start fails with the first one's error. A stop meanwhile cuts it short. */
  private async startWorkers(count: number): Promise<void> {
    const { WorkerPool } = await import("./workers.ts");
    const pool = new WorkerPool({
      count,
      mode: this.o.mode === "daemon" ? "daemon" : "foreground",
      log: this.o.log,
      readyTimeout: this.o.readyTimeout ?? 30_000,
      // Until a worker says its own (at ready): a drain and three hooks.
      defaultStopMs: this.o.shutdownTimeout * 4,
      changed: () => this.stateFile?.setWorkers(pool.records()),
      giveUp: (why) => {
        this.o.log.error(`${why}: giving up, stopping`);
        this.stop(why, 1);
      },
    });
    this.pool = pool;
    sdNotify("", `starting: ${count} worker${count === 1 ? "" : "s"}`);
    const stopped = new Promise<void>((r) => this.controller.signal.addEventListener("abort", () => r(), { once: true }));
    try {
      await Promise.race([pool.start(), stopped]);
    } catch (err) {
      this.failStart("starting the workers failed", err);
    }
  }

  /** The state file first: while the PID file still names us, a reader finds either both or the PID file alone. */
  private releaseLock(): void {
    this.stateFile?.close();
    releasePidFile(this.o.lock);
  }

  private exit(code: number): never {
    // PID file first, so a launcher that sees our failure finds it gone.
    this.releaseLock();
    // Closed unwritten: dinit and s6 read EOF before the newline as a failed start.
    this.o.readyFd?.fail();
    if (this.startFailure) {
      this.o.stage?.fail(this.startFailure, code || 1);
      // The last word systemd keeps (systemctl status): why the start failed.
      const errno = errnoOf(this.startFailure);
      sdNotify(errno === undefined ? "" : `ERRNO=${errno}`, this.startFailure.message);
    }
    if (code === 0) this.o.log.info("stopped");
    else this.o.log.info(`stopped with status ${code}`);
    process.exit(code);
  }

  private install(): void {
    // The environment as it came, for an upgrade's new process: before anything is taken out.
    rememberStartEnv();
    if (this.o.successor) {
      notYetMain = true;
      const pid = this.o.successor.pid;
      this.unwatchPredecessor = watchPredecessor(pid, () => {
        if (this.state !== "starting") return;
        this.o.log.warn(`pid ${pid}, which it was to take over, is gone: stopping before ready (start the daemon again)`);
        this.stop(`the end of pid ${pid}`, 1);
      });
    }
    // First: a program spawned from here on (by init, or the app's import) must not speak for us.
    takeSupervisorEnv();
    // A daemon lives until told to stop, even with nothing left to wait for.
    setInterval(() => {}, 2 ** 30);
    const period = watchdogPeriodMs();
    // WATCHDOG_USEC without a socket to ping: nothing to send.
    if (period !== undefined && notifyAddress() !== undefined) {
      // The check is the app's: a primary has not loaded it.
      const check = this.o.workers === undefined ? this.o.watchdog : undefined;
      startWatchdog({
        periodMs: period,
        log: this.o.log,
        ...(check ? { check: () => check(this.ctx()) } : {}),
        checking: () => this.state === "running",
      });
    }
    const onStopSignal = (sig: "SIGTERM" | "SIGINT" | "SIGQUIT", num: number) => () => {
      // Only a second stop *signal* means "now": a shutdown begun by
      // ctx.stop() or a fatal error still gets its hooks on the first one.
      // During a shutdown delay the second one only ends the delay.
      if (this.stopSignal !== undefined) {
        if (this.delayTimer !== undefined) {
          clearTimeout(this.delayTimer);
          this.delayTimer = undefined;
          this.o.log.info(`${sig} during the shutdown delay: shutting down now; another stop signal exits at once`);
          this.stop(this.stopSignal);
          return;
        }
        this.o.log.warn(`${sig} during shutdown: exiting now`);
        this.releaseLock();
        this.o.readyFd?.fail();
        if (this.o.stage && !this.o.stage.settled) this.o.stage.fail(new DaemonError("INIT_FAILED", `killed by a second ${sig} before it was ready`), 128 + num);
        process.exit(128 + num);
      }
      this.stopSignal = sig;
      this.leaving = true;
      const delay = this.o.shutdownDelay ?? 0;
      if (this.stopReason === undefined && this.state === "running" && delay > 0) {
        // Not ready from now on, but still serving: the orchestrator takes
        // the endpoint away while it sends the signal.
        this.stateFile?.set("stopping");
        sdNotify("STOPPING=1", `stopping (${sig}): shutdown delay ${delay} ms, still serving`);
        this.o.log.info(`${sig}: not ready; still serving for the shutdown delay of ${delay} ms, then shutting down (another stop signal skips the delay)`);
        this.delayTimer = setTimeout(() => {
          this.delayTimer = undefined;
          this.stop(sig);
        }, delay);
        return;
      }
      if (this.stopReason !== undefined) this.o.log.info(`${sig} while stopping (${this.stopReason}); another stop signal exits at once`);
      this.stop(sig);
    };
    process.on("SIGTERM", onStopSignal("SIGTERM", 15));
    if (this.o.worker) {
      // Signals go to the primary, which stops (SIGTERM), reloads and
      // upgrades the workers itself. Ctrl-C or Ctrl-\ in a terminal reach the
      // whole process group: a worker leaves them to its primary.
      for (const sig of ["SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR2"] as const) process.on(sig, () => {});
    } else {
      process.on("SIGINT", onStopSignal("SIGINT", 2));
      // nginx-style images stop with STOPSIGNAL SIGQUIT; unhandled it would dump core.
      process.on("SIGQUIT", onStopSignal("SIGQUIT", 3));
      process.on("SIGHUP", () => this.reload());
    }
    // In every mode: logrotate's postrotate sends SIGUSR1 to whatever the PID
    // file names, and unhandled it would kill the process.
    process.on("SIGUSR1", () => this.reopenLog());
    // nginx's signal for a binary upgrade.
    // Unless the app listens for it itself: then it is the app's signal, as before upgrades existed.
    const onUpgradeSignal = () => {
      if (process.listenerCount("SIGUSR2") > 1) {
        this.o.log.warn("SIGUSR2: the app listens for it itself (process.on(\"SIGUSR2\")), so it starts no upgrade; use restart");
        const seq = this.stateFile?.upgradeStarted();
        if (seq !== undefined) this.stateFile?.upgradeFinished(seq, false, "the app handles SIGUSR2 itself, so upgrade is off; use restart");
        return;
      }
      this.upgrade();
    };
    if (!this.o.worker) process.on("SIGUSR2", onUpgradeSignal);
    const fatal = (kind: string) => (err: unknown) => {
      this.o.log.error(`${kind}:`, ...errArgs(err));
      if (this.state === "starting" && !this.startFailure) {
        this.startFailure = new DaemonError("INIT_FAILED", `${kind} during init: ${errorText(err)}`, { cause: err });
      }
      if (this.stopReason === undefined) this.stop(kind, 1);
      else this.exitCode ||= 1;
    };
    process.on("uncaughtException", fatal("uncaught exception"));
    process.on("unhandledRejection", fatal("unhandled rejection"));
    // process.exit() from anywhere still must not leave a locked-looking PID file behind.
    process.once("exit", () => this.releaseLock());
    // Before the PID file names us: a `reload` that finds our pid finds the state file too.
    try {
      const user = this.o.privileges?.user;
      const trustedUid = user === undefined ? undefined : lookupUserSpec(user).entry?.uid;
      // A new process writes its record aside, and renames it over the old one's at ready.
      const path = statePathFor(this.o.lock.path) + (this.o.successor ? `.${process.pid}` : "");
      if (this.o.lock.fd >= 0) this.stateFile = openStateFile(path, { name: this.o.name, pid: process.pid, ...(trustedUid === undefined ? {} : { trustedUid }) });
    } catch (err) {
      // Failed in run(), once the handlers below exist.
      this.stateError = err;
    }
    // Only now may the PID file name us: a SIGHUP before the handler existed would kill us.
    writePid(this.o.lock, process.pid);
  }

  /**
   * SIGUSR2 / `upgrade`: start the program anew with our listeners and PID
   * file; once it is ready, drain and exit. If it fails, keep serving as if
   * nothing happened. One at a time.
   */
  upgrade(): void {
    if (this.upgradeRun) {
      this.o.log.warn(`upgrade already in progress (pid ${this.upgradePid ?? "starting"})`);
      return;
    }
    if (this.state !== "running" || this.stopReason !== undefined || this.leaving) {
      this.o.log.warn(`SIGUSR2: not upgrading while ${this.state === "starting" ? "starting" : "stopping"}`);
      return;
    }
    const seq = this.stateFile?.upgradeStarted();
    const refuse = (why: string) => {
      this.o.log.error(`upgrade refused: ${why}`);
      if (seq !== undefined) this.stateFile?.upgradeFinished(seq, false, why);
    };
    if (this.o.privileges?.chroot !== undefined) return refuse("the daemon runs in a chroot, where the program is out of reach; use restart");
    if (process.pid === 1) return refuse("PID 1's exit ends the container; let the orchestrator roll out the new version");
    this.o.log.info("upgrade: starting the program as it is on disk now");
    sdNotify("", "upgrading: starting the new process");
    this.upgradeRun = (async () => {
      const { startSuccessor } = await import("./upgrade.ts");
      const r = await startSuccessor({
        lock: this.o.lock,
        mode: this.o.mode === "daemon" ? "daemon" : "foreground",
        readyTimeout: this.o.readyTimeout ?? 30_000,
        // A stop before the new process is ready takes it along: nothing may outlive the daemon unasked.
        signal: this.controller.signal,
        started: (pid) => {
          this.upgradePid = pid;
          this.stateFile?.upgradePid(pid);
        },
      });
      if (!r.ok) {
        this.o.log.error(`upgrade failed, still serving: ${r.error}`);
        if (seq !== undefined) this.stateFile?.upgradeFinished(seq, false, r.error);
        sdNotify("", `running; upgrade failed: ${r.error}`);
        return;
      }
      if (seq !== undefined) this.stateFile?.upgradeFinished(seq, true);
      this.o.log.info(`upgrade: pid ${r.pid} is ready and serving; draining and exiting`);
      // The PID file and the state file are the new process's now.
      handedOver = true;
      this.o.lock.passive = true;
      this.stateFile?.abandon();
      this.stateFile = undefined;
      this.stop(`upgraded to pid ${r.pid}`);
    })()
      .catch((err) => this.o.log.error(`upgrade failed, still serving: ${errorText(err)}`))
      .finally(() => {
        this.upgradeRun = undefined;
        this.upgradePid = undefined;
      });
  }

  /** SIGUSR1: reopen the log file after logrotate moved it; say so only if there was one to reopen. */
  private reopenLog(): void {
    // Each worker writes to the file through its own fds: it reopens it too.
    this.pool?.signal("SIGUSR1");
    try {
      // Only when a log file was reopened (none given, or SIGUSR1 before ready: false).
      if (this.o.stage?.reopenLog()) this.o.log.info("log file reopened");
      else this.o.log.debug(`SIGUSR1: no log file to reopen (${this.o.mode === "daemon" ? "none given, or not ready yet" : "the foreground logs to stderr"})`);
    } catch (err) {
      this.o.log.error(`cannot reopen the log file; still writing to the old one: ${errorText(err)}`);
    }
  }
}
