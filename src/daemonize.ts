/**
 * daemonize(): detachment without the hook framework. In the launcher it
 * never resolves (the process exits with the daemon's outcome); in the
 * daemon it resolves with a handle to report readiness or failure.
 */
import { resolve } from "node:path";
import { defaultPidFile } from "./paths.ts";
import { isDaemonStage, type DaemonHandle } from "./stage.ts";

export type { DaemonHandle } from "./stage.ts";

export interface DaemonizeOptions {
  /** Name for the default PID file and the process name (/proc/PID/comm). Required. */
  name: string;
  /** PID file path. Default: `/run/<name>.pid` for root, else `$XDG_RUNTIME_DIR/<name>.pid`, else `/tmp/<name>-<uid>.pid`. */
  pidFile?: string;
  /** Append the daemon's stdout/stderr here once it is ready. Default: /dev/null. */
  logFile?: string;
  /** ms the launcher waits for ready() before it kills the daemon; 0 waits for ever. Default 30000. */
  readyTimeout?: number;
  /** File mode creation mask of the daemon. Default 0o022. */
  umask?: number;
  /** Working directory of the daemon. Default "/". */
  cwd?: string;
}

/** Fully resolved options; relative paths are taken from the launcher's cwd. */
export function resolveOptions(opts: DaemonizeOptions) {
  return {
    name: opts.name,
    pidFile: resolve(opts.pidFile ?? defaultPidFile(opts.name)),
    ...(opts.logFile === undefined ? {} : { logFile: resolve(opts.logFile) }),
    readyTimeout: opts.readyTimeout ?? 30_000,
    umask: opts.umask ?? 0o022,
    cwd: opts.cwd ?? "/",
  };
}

/**
 * Detach the way daemon(7) describes. The launcher re-executes this program
 * (fork, setsid, fork, execve) and waits: it exits 0 when the daemon calls
 * `ready()`, non-zero with the daemon's error otherwise, so in the launcher
 * this promise never settles. In the re-executed program the same call
 * resolves with the daemon's handle. Rejects with a DaemonError.
 */
export async function daemonize(opts: DaemonizeOptions): Promise<DaemonHandle> {
  const o = resolveOptions(opts);
  if (isDaemonStage()) return (await import("./stage.ts")).enterStage(o);
  return (await import("./launch.ts")).launch(o);
}
