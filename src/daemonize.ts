/**
 * daemonize(): detachment without the hook framework. In the launcher it
 * never resolves (the process exits with the daemon's outcome); in the
 * daemon it resolves with a handle to report readiness or failure.
 */
import { MAX_MS } from "./argv.ts";
import { DaemonError } from "./errors.ts";
import { isDaemonStage } from "./marker.ts";
import { checkName, defaultPidFile } from "./paths.ts";
import type { EnvOption } from "./environment.ts";
import type { DaemonHandle } from "./stage.ts";
import type { PrivilegeConfig } from "./types.ts";

export type { DaemonHandle } from "./stage.ts";

export interface DaemonizeOptions extends PrivilegeConfig {
  /** Name for the default PID file and the process name (/proc/PID/comm). Required. */
  name: string;
  /** PID file path. Default: `/run/<name>.pid` for root (`/run/<name>/<name>.pid`, owned by the user, with `user`; both inside the root with `chroot`), else `$XDG_RUNTIME_DIR/<name>.pid`, else `/tmp/<name>-<uid>.pid`. */
  pidFile?: string;
  /** Append the daemon's stdout/stderr here once it is ready. Default: /dev/null. */
  logFile?: string;
  /** ms the launcher waits for ready() before it stops the daemon; 0 waits for ever. Default 30000. */
  readyTimeout?: number;
  /** File mode creation mask of the daemon. Default 0o022. */
  umask?: number;
  /** Working directory of the daemon. Default "/". */
  cwd?: string;
  /**
   * What the detached daemon inherits from the launcher's environment
   * (daemon(7) step 4). `"inherit"`: all of it. `{ keep, set }`: everything
   * else is removed before the daemon is exec'd, so neither the daemon nor
   * anything it spawns (Bun.spawn, node:child_process, Bun.$) ever sees it;
   * the daemon gets the `keep` variables the launcher has, then `set`, and
   * defaults for those not given: PATH (systemd's), LANG=C.UTF-8,
   * TZ=:/etc/localtime, HOME/USER/LOGNAME of the user it runs as.
   * NOTIFY_SOCKET, LISTEN_* and WATCHDOG_* always pass.
   * Default "inherit".
   */
  env?: EnvOption;
}

const bad = (what: string) => new DaemonError("USAGE", what);

function path(value: unknown, option: string): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "string" || value === "" || value.includes("\0")) {
    throw bad(`${option} must be a non-empty path without NUL bytes, not ${typeof value === "string" ? JSON.stringify(value) : typeof value}`);
  }
  // node:path loads here, at the first call, not at `import "bun-daemon"`.
  return (require("node:path") as typeof import("node:path")).resolve(value);
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
  const chroot = path(opts.chroot, "chroot");
  const pidFile = path(opts.pidFile, "pidFile");
  const user = principal(opts.user, "user");
  const group = principal(opts.group, "group");
  if (opts.noNewPrivileges !== undefined && typeof opts.noNewPrivileges !== "boolean") throw bad(`noNewPrivileges must be true or false, not ${typeof opts.noNewPrivileges}`);
  if (opts.rlimits !== undefined && (typeof opts.rlimits !== "object" || opts.rlimits === null)) throw bad("rlimits must be an object such as { core: 0, nofile: 4096 }");
  return {
    name,
    pidFile: pidFile ?? defaultPidFile(name, user !== undefined, chroot),
    pidFileIsDefault: pidFile === undefined,
    ...(user === undefined ? {} : { user }),
    ...(group === undefined ? {} : { group }),
    ...(chroot === undefined ? {} : { chroot }),
    ...(opts.noNewPrivileges === undefined ? {} : { noNewPrivileges: opts.noNewPrivileges }),
    ...(opts.rlimits === undefined ? {} : { rlimits: opts.rlimits }),
    ...(logFile === undefined ? {} : { logFile }),
    readyTimeout: integer(opts.readyTimeout, "readyTimeout", MAX_MS, 30_000),
    umask: integer(opts.umask, "umask", 0o777, 0o022),
    cwd: cwd ?? "/",
    // Loaded here, not at import: importing bun-daemon must stay cheap.
    env: (require("./environment.ts") as typeof import("./environment.ts")).checkEnv(opts.env) as EnvOption,
  };
}

/** A user or group: a non-empty name or a whole-number id. */
function principal(value: unknown, option: string): string | number | undefined {
  if (value === undefined) return undefined;
  if (typeof value === "number" && Number.isInteger(value) && value >= 0 && value < 2 ** 32 - 1) return value;
  if (typeof value === "string" && value !== "" && !value.includes("\0") && !value.includes(":")) return value;
  throw bad(`${option} must be a name or a whole-number id, not ${typeof value === "string" ? JSON.stringify(value) : String(value)}`);
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
    const stage = await import("./stage.ts");
    const handle = stage.enterStage(o);
    const { releasePidFile } = await import("./pidfile.ts");
    exitCleanlyOnSignals(() => releasePidFile(handle.pidFile));
    const priv = await import("./privileges.ts");
    const failNow = (err: unknown): never => {
      handle.fail(err);
      process.exit(1);
    };
    try {
      priv.applyRlimits(o.rlimits, "daemon");
    } catch (err) {
      failNow(err);
    }
    // No init hooks here: what runs before ready() is the program's init, so
    // the drop happens at ready(), before the launcher is told.
    const ready = handle.ready;
    handle.ready = () => {
      if (!handle.settled) {
        try {
          const inside = o.chroot === undefined ? undefined : priv.rootPaths(o.chroot, { pidFile: handle.pidFile.path, ...(o.logFile === undefined ? {} : { logFile: o.logFile }) });
          priv.drop(o, () => inside && stage.moveIntoRoot(handle, inside));
        } catch (err) {
          failNow(err);
        }
      }
      ready();
    };
    return handle;
  }
  if (o.user !== undefined || o.chroot !== undefined) (await import("./privileges.ts")).prepareLaunch(o);
  return (await import("./launch.ts")).launch(o);
}
