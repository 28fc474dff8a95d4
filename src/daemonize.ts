/**
 * daemonize(): detachment without the hook framework. In the launcher it
 * never resolves (the process exits with the daemon's outcome); in the
 * daemon it resolves with a handle to report readiness or failure.
 */
import { resolve } from "node:path";
import { MAX_MS } from "./argv.ts";
import { DaemonError } from "./errors.ts";
import { isDaemonStage } from "./marker.ts";
import { checkName, defaultPidFile } from "./paths.ts";
import type { DaemonHandle } from "./stage.ts";

export type { DaemonHandle } from "./stage.ts";

export interface DaemonizeOptions {
  /** Name for the default PID file and the process name (/proc/PID/comm). Required. */
  name: string;
  /** PID file path. Default: `/run/<name>.pid` for root, else `$XDG_RUNTIME_DIR/<name>.pid`, else `/tmp/<name>-<uid>.pid`. */
  pidFile?: string;
  /** Append the daemon's stdout/stderr here once it is ready. Default: /dev/null. */
  logFile?: string;
  /** ms the launcher waits for ready() before it stops the daemon; 0 waits for ever. Default 30000. */
  readyTimeout?: number;
  /** File mode creation mask of the daemon. Default 0o022. */
  umask?: number;
  /** Working directory of the daemon. Default "/". */
  cwd?: string;
}

const bad = (what: string) => new DaemonError("USAGE", what);

function path(value: unknown, option: string): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "string" || value === "" || value.includes("\0")) {
    throw bad(`${option} must be a non-empty path without NUL bytes, not ${typeof value === "string" ? JSON.stringify(value) : typeof value}`);
  }
  return resolve(value);
}

function integer(value: unknown, option: string, max: number, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value > max) {
    throw bad(`${option} must be a whole number from 0 to ${max}, not ${typeof value === "number" ? value : typeof value}`);
  }
  return value;
}

/**
 * Check and resolve the options, for daemonize() and defineDaemon() alike;
 * relative paths are taken from the launcher's cwd. Throws DaemonError USAGE.
 */
export function resolveOptions(opts: DaemonizeOptions) {
  if (typeof opts !== "object" || opts === null) throw bad("daemonize() needs an options object with at least a name");
  const name = checkName(opts.name);
  const logFile = path(opts.logFile, "logFile");
  const cwd = path(opts.cwd, "cwd");
  return {
    name,
    pidFile: path(opts.pidFile, "pidFile") ?? defaultPidFile(name),
    ...(logFile === undefined ? {} : { logFile }),
    readyTimeout: integer(opts.readyTimeout, "readyTimeout", MAX_MS, 30_000),
    umask: integer(opts.umask, "umask", 0o777, 0o022),
    cwd: cwd ?? "/",
  };
}

let called = false;

/**
 * A daemon made with daemonize() has no lifecycle to clean up after it, and
 * a Bun process killed by a signal it does not handle runs no exit
 * handlers: so SIGTERM, SIGINT and SIGHUP end it the default way, exit
 * status 128+N, but remove the PID file first. Once the program handles
 * such a signal itself, its own handler decides and this one stands aside.
 */
function exitCleanlyOnSignals(release: () => void): void {
  for (const [sig, num] of [["SIGTERM", 15], ["SIGINT", 2], ["SIGHUP", 1]] as const) {
    process.on(sig, () => {
      if (process.listenerCount(sig) > 1) return;
      release();
      process.exit(128 + num);
    });
  }
}

/**
 * Detach the way daemon(7) describes. The launcher re-executes this program
 * (fork, setsid, fork, execve) and waits: it exits 0 when the daemon calls
 * `ready()`, non-zero with the daemon's error otherwise, so in the launcher
 * this promise never settles. In the re-executed program the same call
 * resolves with the daemon's handle. Rejects with a DaemonError: USAGE for
 * bad options or a second call, or the code of the step that failed.
 */
export async function daemonize(opts: DaemonizeOptions): Promise<DaemonHandle> {
  if (called) throw new DaemonError("USAGE", "daemonize() already called: a process detaches once; keep the handle the first call resolved with");
  const o = resolveOptions(opts);
  called = true;
  if (isDaemonStage()) {
    const handle = (await import("./stage.ts")).enterStage(o);
    const { releasePidFile } = await import("./pidfile.ts");
    exitCleanlyOnSignals(() => releasePidFile(handle.pidFile));
    return handle;
  }
  return (await import("./launch.ts")).launch(o);
}
