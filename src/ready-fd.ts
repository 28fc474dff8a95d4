/**
 * Readiness on an fd (s6 notification-fd, s6-rc, dinit pipefd/pipevar,
 * OpenRC notify=fd:N): once init is done, exactly "\n" is written to the fd
 * and it is closed; a start that fails closes it unwritten, which dinit
 * reads as failure (EOF before the newline).
 */
import { fstatSync, readlinkSync } from "node:fs";
import { DaemonError } from "./errors.ts";
import { closeFd, setCloexec, writeAll } from "./ffi.ts";

const SETTINGS = "s6: notification-fd; dinit: ready-notification = pipefd:N or pipevar:VAR; OpenRC: notify=fd:N";

/** The fd a supervisor gave for readiness, held until ready or failure. */
export interface ReadyFd {
  readonly fd: number;
  /** Write "\n" and close (once). */
  ready(): void;
  /** Close without writing (once): the start failed. */
  fail(): void;
}

const usage = (message: string) => new DaemonError("USAGE", message, { exitCode: 2 });

/**
 * The fd from `--ready-fd N`, or from the variable `--ready-fd-env VAR`
 * names (which is then removed from the environment, so nothing this
 * process spawns inherits it). It must be open and a pipe or a socket:
 * anything else is a supervisor misconfigured, so USAGE (exit 2) naming the
 * fd and the setting to check. Marked close-on-exec.
 */
export function openReadyFd(o: { fd?: number; env?: string }): ReadyFd | undefined {
  let fd = o.fd;
  let from = `--ready-fd ${fd}`;
  if (o.env !== undefined) {
    const raw = process.env[o.env];
    if (raw === undefined || !/^\d{1,9}$/.test(raw)) {
      throw usage(`--ready-fd-env ${o.env}: the variable ${raw === undefined ? "is not set" : `is ${JSON.stringify(raw)}, not an fd number`}; check the supervisor's setting (${SETTINGS})`);
    }
    delete process.env[o.env];
    fd = Number(raw);
    from = `--ready-fd-env ${o.env} (${o.env}=${raw})`;
  }
  if (fd === undefined) return undefined;
  if (fd <= 2) throw usage(`${from}: fd ${fd} is stdin, stdout or stderr, not a readiness fd; check the supervisor's setting (${SETTINGS})`);
  let kind: string;
  try {
    const st = fstatSync(fd);
    kind = st.isFIFO() ? "pipe" : st.isSocket() ? "socket" : st.isFile() ? "a regular file" : st.isCharacterDevice() ? "a character device" : st.isDirectory() ? "a directory" : "something else";
  } catch {
    throw usage(`${from}: fd ${fd} is not open (EBADF); check the supervisor's setting (${SETTINGS})`);
  }
  if (kind !== "pipe" && kind !== "socket") {
    // Bun takes the lowest free numbers for its own event loop (eventpoll,
    // eventfd): a number the supervisor left free is open by the time we look.
    let target = "";
    try {
      target = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {}
    if (target.startsWith("anon_inode:")) throw usage(`${from}: fd ${fd} was not given by the supervisor (the runtime's own ${target} sits there); check the supervisor's setting (${SETTINGS})`);
    throw usage(`${from}: fd ${fd} is ${kind}, not a pipe or socket; check the supervisor's setting (${SETTINGS})`);
  }
  setCloexec(fd, true);
  let open = true;
  const done = (write: boolean) => {
    if (!open) return;
    open = false;
    if (write) writeAll(fd, new TextEncoder().encode("\n"));
    closeFd(fd);
  };
  return { fd, ready: () => done(true), fail: () => done(false) };
}
