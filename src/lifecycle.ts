/**
 * Runs a daemon's hooks in one process, detached or in the foreground:
 * init in order, then ready; reload one at a time, coalesced; shutdown in
 * reverse order, each bounded by the shutdown timeout; then exit.
 */
import type { ParsedArgs } from "citty";
import { DaemonError } from "./errors.ts";
import { notifySocket } from "./ffi.ts";
import type { Registration } from "./hooks.ts";
import type { Logger } from "./log.ts";
import { releasePidFile, writePid, type PidFileLock } from "./pidfile.ts";
import type { DaemonHandle } from "./stage.ts";
import type { HookContext, HookName, Mode, ShutdownContext } from "./types.ts";

export interface LifecycleOptions {
  name: string;
  mode: Mode;
  log: Logger;
  args: ParsedArgs<any>;
  hooks: Registration[];
  shutdownTimeout: number;
  lock: PidFileLock;
  /** Only in daemon mode: the channel to the launcher. */
  stage?: DaemonHandle;
  /** Marks registrations made while init runs. */
  setPhase(phase: "starting" | "other"): void;
}

type State = "starting" | "running" | "stopping";

const label = (reg: Registration, list: Registration[]) =>
  reg.fn.name ? `"${reg.fn.name}"` : `#${list.indexOf(reg) + 1}`;

const message = (err: unknown) => (err instanceof Error ? err.message : String(err));

/** sd_notify(3) when run by systemd with Type=notify (NOTIFY_SOCKET set). */
function sdNotify(state: string): void {
  const sock = process.env.NOTIFY_SOCKET;
  if (sock) notifySocket(sock, state);
}

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

  constructor(private readonly o: LifecycleOptions) {}

  private ctx(): HookContext<any> {
    return {
      name: this.o.name,
      log: this.o.log,
      signal: this.controller.signal,
      mode: this.o.mode,
      pid: process.pid,
      args: this.o.args,
      stop: (reason?: string) => this.stop(reason),
    };
  }

  private list(event: HookName): Registration[] {
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
    let firstNotStarted: Registration | undefined;
    this.o.setPhase("starting");
    for (let i = 0; ; i++) {
      const reg = this.list("init")[i];
      if (!reg) break;
      if (this.stopReason !== undefined) {
        firstNotStarted = reg;
        break;
      }
      try {
        const settled = await this.boundedAfterStop(Promise.resolve().then(() => reg.fn(this.ctx())).then(() => true));
        if (settled !== true) {
          // Cut off by the stop: it never finished, so it did not start.
          this.o.log.warn(`init hook ${label(reg, this.list("init"))} did not finish within ${this.o.shutdownTimeout} ms of ${this.stopReason}`);
          firstNotStarted = reg;
          break;
        }
      } catch (err) {
        firstNotStarted = reg;
        const where = `init hook ${label(reg, this.list("init"))} failed: ${message(err)}`;
        this.o.log.error(where);
        if (err instanceof Error && err.stack) this.o.log.error(err);
        this.startFailure = new DaemonError("INIT_FAILED", where, { cause: err });
        if (this.stopReason === undefined) {
          this.stopReason = "init failed";
          this.announceStopping();
          this.controller.abort(this.stopReason);
        }
        this.exitCode = 1;
        break;
      }
    }
    this.o.setPhase("other");
    if (this.stopReason !== undefined) {
      this.startFailure ??= new DaemonError("INIT_FAILED", `stopped by ${this.stopReason} before it was ready`);
      if (this.exitCode === 0) this.exitCode = 1;
      const limit = firstNotStarted?.seq ?? Infinity;
      await this.shutdown((r) => r.seq < limit || r.duringInit);
    }
    this.state = "running";
    this.o.stage?.ready();
    sdNotify(`READY=1\nMAINPID=${process.pid}`);
    this.o.log.info(`ready (pid ${process.pid}, ${this.o.mode})`);
    for (const reg of this.list("ready")) {
      try {
        await reg.fn(this.ctx());
      } catch (err) {
        this.o.log.error(`ready hook ${label(reg, this.list("ready"))} failed:`, err);
      }
      if (this.stopReason !== undefined) break;
    }
    if (this.reloadPending && this.stopReason === undefined) this.reload();
    return new Promise<never>(() => {});
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
    this.reloading = (async () => {
      do {
        this.reloadPending = false;
        sdNotify("RELOADING=1");
        this.o.log.info("reloading");
        for (const reg of this.list("reload")) {
          if (this.stopReason !== undefined) break;
          try {
            await reg.fn(this.ctx());
          } catch (err) {
            this.o.log.error(`reload hook ${label(reg, this.list("reload"))} failed; keeping the previous state:`, err);
          }
        }
        sdNotify("READY=1");
      } while (this.reloadPending && this.stopReason === undefined);
      this.reloading = undefined;
    })();
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
    sdNotify("STOPPING=1");
    const reason = this.stopReason ?? "stop";
    this.o.log.info(`stopping (${reason})`);
    if (this.reloading) await this.boundedAfterStop(this.reloading).catch(() => {});
    const hooks = this.list("shutdown").filter(eligible).reverse();
    const ctx: ShutdownContext<any> = { ...this.ctx(), reason };
    let failed = false;
    for (const reg of hooks) {
      const name = label(reg, this.list("shutdown"));
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
        this.o.log.error(`shutdown hook ${name} failed:`, err);
      } finally {
        clearTimeout(timer);
      }
    }
    return this.exit(failed && this.exitCode === 0 ? 1 : this.exitCode);
  }

  private releaseLock(): void {
    releasePidFile(this.o.lock);
  }

  private exit(code: number): never {
    // PID file first, so a launcher that sees our failure finds it gone.
    this.releaseLock();
    if (this.startFailure) this.o.stage?.fail(this.startFailure, code || 1);
    if (code === 0) this.o.log.info("stopped");
    else this.o.log.info(`stopped with status ${code}`);
    process.exit(code);
  }

  private install(): void {
    // A daemon lives until told to stop, even with nothing left to wait for.
    setInterval(() => {}, 2 ** 30);
    const onStopSignal = (sig: "SIGTERM" | "SIGINT", num: number) => () => {
      if (this.stopReason !== undefined) {
        this.o.log.warn(`${sig} during shutdown: exiting now`);
        this.releaseLock();
        if (this.o.stage && !this.o.stage.settled) this.o.stage.fail(new DaemonError("INIT_FAILED", `killed by a second ${sig} before it was ready`), 128 + num);
        process.exit(128 + num);
      }
      this.stop(sig);
    };
    process.on("SIGTERM", onStopSignal("SIGTERM", 15));
    process.on("SIGINT", onStopSignal("SIGINT", 2));
    process.on("SIGHUP", () => this.reload());
    if (this.o.mode === "daemon") {
      process.on("SIGUSR1", () => {
        try {
          this.o.stage?.reopenLog();
          this.o.log.info("log file reopened");
        } catch (err) {
          this.o.log.error(`cannot reopen the log file; still writing to the old one: ${message(err)}`);
        }
      });
    }
    const fatal = (kind: string) => (err: unknown) => {
      this.o.log.error(`${kind}:`, err);
      if (this.state === "starting" && !this.startFailure) {
        this.startFailure = new DaemonError("INIT_FAILED", `${kind} during init: ${message(err)}`, { cause: err });
      }
      if (this.stopReason === undefined) this.stop(kind, 1);
      else this.exitCode ||= 1;
    };
    process.on("uncaughtException", fatal("uncaught exception"));
    process.on("unhandledRejection", fatal("unhandled rejection"));
    // process.exit() from anywhere still must not leave a locked-looking PID file behind.
    process.once("exit", () => this.releaseLock());
    // Only now may the PID file name us: a SIGHUP before the handler existed would kill us.
    writePid(this.o.lock, process.pid);
  }
}
