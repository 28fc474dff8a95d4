/**
 * Socket activation: the listening sockets systemd (a .socket unit,
 * systemd-socket-activate, or anything speaking sd_listen_fds(3)) passed to
 * this process, with their names.
 */
import { DaemonError, errnoName } from "./errors.ts";
import type * as Ffi from "./ffi.ts";

/** One inherited listening socket. */
export interface ListenFd {
  /** The descriptor number: 3, 4, ... (SD_LISTEN_FDS_START onwards). */
  fd: number;
  /** Its name from `LISTEN_FDNAMES` (`FileDescriptorName=` of the .socket unit); `"unknown"` when none was given. */
  name: string;
}

/** sd-daemon.h's SD_LISTEN_FDS_START: passed sockets start right after stdio. */
const FIRST_FD = 3;

/** The first call's answer: the environment is consumed then, so later calls repeat it. */
let taken: { pid: number; fds: ListenFd[] } | undefined;

const bad = (message: string) => new DaemonError("LISTEN_FDS", `socket activation: ${message}`);

/**
 * The sockets passed by socket activation (sd_listen_fds_with_names(3)):
 * `[]` unless `LISTEN_PID` names this process and `LISTEN_FDS` is set.
 * Each fd is marked close-on-exec, and `LISTEN_PID`, `LISTEN_FDS` and
 * `LISTEN_FDNAMES` are removed from `process.env`, so programs spawned later
 * neither inherit the sockets nor believe they were passed them (children
 * started through `Bun.spawn` without an `env` still get the start-up
 * environment, runtime notes §6; the LISTEN_PID there is not theirs, so
 * they ignore it). Calling it again returns the same list.
 *
 * Serve HTTP on one through a `node:net` server: `Bun.serve({ fd })` and
 * `http.Server.listen({ fd })` ignore the fd (see examples/hello-app.ts).
 *
 * Throws a `LISTEN_FDS` DaemonError when the variables are malformed
 * (`LISTEN_FDS` not a count, a name count that differs) or a named fd is
 * not open.
 */
export function listenFds(): ListenFd[] {
  if (taken && taken.pid === process.pid) return taken.fds.map((f) => ({ ...f }));
  const env = process.env;
  const pid = env.LISTEN_PID;
  const count = env.LISTEN_FDS;
  const names = env.LISTEN_FDNAMES;
  // Unset whatever happens, as sd_listen_fds(unset_environment=1) does: a
  // spawned program must not think it was activated.
  delete env.LISTEN_PID;
  delete env.LISTEN_FDS;
  delete env.LISTEN_FDNAMES;
  let fds: ListenFd[] = [];
  if (pid !== undefined && count !== undefined) {
    if (!/^\d+$/.test(pid)) throw bad(`LISTEN_PID is not a pid: ${JSON.stringify(pid)}`);
    if (Number(pid) === process.pid) fds = parse(count, names);
  }
  taken = { pid: process.pid, fds };
  return fds.map((f) => ({ ...f }));
}

function parse(count: string, names: string | undefined): ListenFd[] {
  if (!/^\d+$/.test(count)) throw bad(`LISTEN_FDS is not a count: ${JSON.stringify(count)}`);
  const n = Number(count);
  if (n === 0) return [];
  // sd_listen_fds_with_names: LISTEN_FDNAMES unset means every name is "unknown"; a count that differs is invalid.
  const list = names === undefined ? Array<string>(n).fill("unknown") : names.split(":");
  if (list.length !== n) throw bad(`LISTEN_FDNAMES names ${list.length} sockets (${JSON.stringify(names)}) but LISTEN_FDS says ${n}`);
  // Loaded here, not at the top: importing bun-daemon must not load bun:ffi.
  const { markCloexec } = require("./ffi.ts") as typeof Ffi;
  return list.map((name, i) => {
    const fd = FIRST_FD + i;
    const err = markCloexec(fd);
    if (err !== 0) throw bad(`LISTEN_FDS passes fd ${fd} (${JSON.stringify(name || "unknown")}) but fcntl(F_GETFD/F_SETFD) on it failed: ${errnoName(err)}`);
    return { fd, name: name === "" ? "unknown" : name };
  });
}
