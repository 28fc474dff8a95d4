import { DaemonError } from "./errors.ts";

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** Daemon names end up in file names and /proc/PID/comm: keep them plain. */
export function checkName(name: unknown): string {
  if (typeof name !== "string" || !NAME_RE.test(name)) {
    throw new DaemonError(
      "USAGE",
      `daemon name ${JSON.stringify(name)} is not usable: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit`,
    );
  }
  return name;
}

/**
 * `/run/<name>.pid` for root, else `$XDG_RUNTIME_DIR/<name>.pid`, else
 * `/tmp/<name>-<uid>.pid`. With a `user` to drop to: `/run/<name>/<name>.pid`,
 * in a runtime directory the user owns (as systemd's RuntimeDirectory=), so
 * the daemon can still remove its PID file after the drop. Other users find
 * it there too once the directory exists (`status --user nobody` run as
 * nobody must find the daemon root started, not look in /tmp).
 * With a `chroot` (which only root can enter): root's default inside it,
 * `<chroot>/run/<name>.pid` or `<chroot>/run/<name>/<name>.pid`, so the
 * daemon still reaches its PID file after the chroot.
 */
export function defaultPidFile(name: string, dropsToUser = false, chroot?: string): string {
  if (chroot !== undefined) return `${chroot.replace(/\/+$/, "")}${dropsToUser ? `/run/${name}/${name}.pid` : `/run/${name}.pid`}`;
  // Linux only (the rest of the library says so): process.getuid exists.
  const uid = process.getuid!();
  const runtimeDir = `/run/${name}`;
  if (dropsToUser && (uid === 0 || (require("node:fs") as typeof import("node:fs")).existsSync(runtimeDir))) return `${runtimeDir}/${name}.pid`;
  if (uid === 0) return `/run/${name}.pid`;
  const xdg = process.env.XDG_RUNTIME_DIR;
  if (xdg) return `${xdg.replace(/\/+$/, "")}/${name}.pid`;
  return `/tmp/${name}-${uid}.pid`;
}
