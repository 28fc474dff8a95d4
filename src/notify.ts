/**
 * sd_notify(3) for the daemon and for apps: the supervisor's variables
 * (NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID) are taken from the
 * environment once, so that programs the daemon spawns cannot speak for it,
 * and every datagram goes to the socket taken then.
 *
 * Imported by src/index.ts: nothing heavy at the top (the FFI module loads
 * on the first datagram), and nothing runs at import.
 */
import { DaemonError, errnoNumber } from "./errors.ts";

/** The variables a supervisor hands its main process only. */
export const SUPERVISOR_ENV = ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "FDSTORE"] as const;

interface Taken {
  socket: string | undefined;
  watchdogUsec: string | undefined;
  watchdogPid: string | undefined;
  fdStore: string | undefined;
}

/** Set once takeSupervisorEnv() has run; until then notify() reads the live environment. */
let taken: Taken | undefined;

const ffi = (): typeof import("./ffi.ts") => require("./ffi.ts") as typeof import("./ffi.ts");

/** The socket datagrams go to: the one taken from the environment, else the live $NOTIFY_SOCKET. */
export function notifyAddress(): string | undefined {
  const s = taken ? taken.socket : process.env.NOTIFY_SOCKET;
  return s === "" ? undefined : s;
}

/**
 * One line per field, as sd_notify(3) reads them. A key is what systemd
 * accepts (upper-case letters, digits, `_`); a value is one line, since a
 * newline would start a field the caller did not mean to send.
 */
export function formatFields(fields: Record<string, string | number | bigint>): string {
  if (typeof fields !== "object" || fields === null) throw new DaemonError("USAGE", "notify() needs an object of fields, e.g. { STATUS: \"busy\" }");
  const lines: string[] = [];
  for (const [key, value] of Object.entries(fields)) {
    if (!/^[A-Z0-9_]+$/.test(key)) throw new DaemonError("USAGE", `notify(): field name ${JSON.stringify(key)} is not upper-case letters, digits and _`);
    if (typeof value !== "string" && typeof value !== "number" && typeof value !== "bigint") {
      throw new DaemonError("USAGE", `notify(): field ${key} must be a string or a number, not ${value === null ? "null" : typeof value}`);
    }
    const text = String(value);
    if (text.includes("\n")) throw new DaemonError("USAGE", `notify(): field ${key} contains a newline (each field is one line)`);
    lines.push(`${key}=${text}`);
  }
  if (lines.length === 0) throw new DaemonError("USAGE", "notify() needs at least one field");
  return lines.join("\n");
}

/**
 * Send `fields` to systemd (or any supervisor speaking sd_notify) as one
 * datagram, e.g. `notify({ STATUS: "replaying the journal: 40%" })`.
 * Returns true when it was sent; false when there is no $NOTIFY_SOCKET (not
 * run by a Type=notify unit) or it could not be reached. Throws DaemonError
 * USAGE for a field name that is not `[A-Z0-9_]+` or a value with a newline.
 */
export function notify(fields: Record<string, string | number | bigint>): boolean {
  const message = formatFields(fields);
  const address = notifyAddress();
  if (address === undefined) return false;
  return ffi().notifySocket(address, message);
}

/** Internal: send a preformatted message (with `fds` as SCM_RIGHTS, for FDSTORE=1); never throws (a notify must not fail the daemon). */
export function send(message: string, fds: number[] = []): boolean {
  const address = notifyAddress();
  if (address === undefined) return false;
  try {
    return ffi().notifySocket(address, message, fds);
  } catch {
    return false;
  }
}

/** A STATUS= value: one line, bounded (systemd shows it in `systemctl status`). */
export function statusText(text: string): string {
  const one = text.replace(/\s*\n\s*/g, " ").trim();
  return one.length > 400 ? `${one.slice(0, 399)}…` : one;
}

/**
 * Watchdog period in ms (WATCHDOG_USEC / 2, as sd_watchdog_enabled(3)
 * advises), or undefined when the watchdog is off: WATCHDOG_USEC unset or
 * not a positive number, or WATCHDOG_PID naming another process.
 */
export function watchdogPeriodMs(): number | undefined {
  const usecText = taken ? taken.watchdogUsec : process.env.WATCHDOG_USEC;
  const pidText = taken ? taken.watchdogPid : process.env.WATCHDOG_PID;
  if (usecText === undefined || !/^\d+$/.test(usecText)) return undefined;
  const usec = Number(usecText);
  if (!(usec > 0)) return undefined;
  if (pidText !== undefined && pidText !== "" && Number(pidText) !== process.pid) return undefined;
  return Math.max(1, usec / 2000);
}

/**
 * Whether to pass listeners to systemd's fd store (FDSTORE=1): under a
 * notify socket, when $FDSTORE (systemd 254 on: FileDescriptorStoreMax=)
 * is above 0, or is not set at all: older systemd cannot say, and a unit
 * without a store only logs that it refused them.
 */
export function fdStoreOffered(): boolean {
  if (notifyAddress() === undefined) return false;
  const n = taken ? taken.fdStore : process.env.FDSTORE;
  return n === undefined || (/^\d+$/.test(n) && Number(n) > 0);
}

/**
 * Take NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID out of the environment
 * children inherit, keeping them for this process (idempotent).
 *
 * - `process.env`: deleted, so node:child_process, Bun.$ and the launcher's
 *   execve (which read the live environment) never pass them on.
 * - `Bun.spawn` / `Bun.spawnSync` without an `env` option pass the
 *   environment the process *started* with (runtime notes §6; neither
 *   deleting from process.env, nor libc unsetenv, nor overwriting the
 *   start-up strings in place reaches the copy Bun made). So both are
 *   wrapped here to pass the live `process.env` when no `env` is given, the
 *   behaviour node:child_process has. Only when one of the variables was
 *   set: an unsupervised daemon's Bun.spawn is left untouched.
 *
 * What still passes the start-up environment: a `spawn`/`spawnSync` bound
 * before this runs (a static `import { spawn } from "bun"` in a module that
 * was loaded before, or `const { spawn } = Bun` at a module's top level),
 * and Bun.spawn inside a Worker (its own Bun object).
 */
export function takeSupervisorEnv(): void {
  if (taken) return;
  const env = process.env;
  taken = { socket: env.NOTIFY_SOCKET, watchdogUsec: env.WATCHDOG_USEC, watchdogPid: env.WATCHDOG_PID, fdStore: env.FDSTORE };
  let removed = false;
  for (const key of SUPERVISOR_ENV) {
    if (key in env) {
      delete env[key];
      removed = true;
    }
  }
  if (removed) wrapBunSpawn();
}

/** Bun.spawn(cmd, opts?) and Bun.spawn({ cmd, ...opts }): pass the live environment when no env is given. */
function wrapBunSpawn(): void {
  const bun = globalThis.Bun as unknown as Record<string, unknown> | undefined;
  if (!bun) return;
  for (const name of ["spawn", "spawnSync"] as const) {
    const original = bun[name];
    if (typeof original !== "function" || (original as { bunDaemonLiveEnv?: boolean }).bunDaemonLiveEnv) continue;
    const wrapped = function (this: unknown, ...args: unknown[]) {
      const [first, second] = args;
      if (Array.isArray(first)) {
        const opts = (second ?? {}) as Record<string, unknown>;
        if (typeof opts === "object" && opts !== null && opts.env === undefined) args[1] = { ...opts, env: { ...process.env } };
      } else if (typeof first === "object" && first !== null && (first as Record<string, unknown>).env === undefined) {
        args[0] = { ...(first as object), env: { ...process.env } };
      }
      return (original as (...a: unknown[]) => unknown).apply(this, args);
    };
    Object.defineProperty(wrapped, "name", { value: name });
    Object.defineProperty(wrapped, "bunDaemonLiveEnv", { value: true });
    try {
      bun[name] = wrapped;
    } catch {
      // A runtime that makes it read-only: documented as leaking.
    }
  }
}


/**
 * errno of a thrown value, where one is known: DaemonError's `errno`, or a
 * Node-style error's `errno` (negative in Node) or `code` (`EADDRINUSE`).
 */
export function errnoOf(err: unknown): number | undefined {
  try {
    let cur: unknown = err;
    for (let depth = 0; depth < 4 && cur && typeof cur === "object"; depth++) {
      const e = cur as { errno?: unknown; code?: unknown; cause?: unknown };
      if (typeof e.errno === "number" && Number.isInteger(e.errno) && e.errno !== 0) return Math.abs(e.errno);
      if (typeof e.code === "string" && /^E[A-Z0-9]+$/.test(e.code)) {
        const n = errnoNumber(e.code);
        if (n !== undefined) return n;
      }
      cur = e.cause;
    }
  } catch {}
  return undefined;
}
