/**
 * Who supervises this process, decided once: PID 1 (a container's init),
 * systemd (NOTIFY_SOCKET), a process supervisor that is our parent, or
 * none. Under anything but none, `start` must not fork: the supervisor
 * watches this very process (and as PID 1, exiting kills the namespace).
 */
import { readFileSync } from "node:fs";

/** Parents whose child must stay in the foreground: they watch it, restart it, or are a container's init. */
export const SUPERVISORS = [
  "s6-supervise", "runsv", "supervise", "supervise-daemon", "supervisord", "tini", "docker-init", "dumb-init", "catatonit", "podman-init",
] as const;

export type Supervisor =
  | { kind: "pid1" }
  | { kind: "systemd" }
  | { kind: "supervised"; by: string; pid: number }
  | { kind: "none" };

/** /proc/PID/comm, or undefined when it cannot be read. */
function commOf(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/comm`, "utf8").trim();
  } catch {
    return undefined;
  }
}

let decided: Supervisor | undefined;

/**
 * In order: getpid() 1 → pid1; NOTIFY_SOCKET set → systemd (also
 * start-stop-daemon --notify-await, OpenRC notify=socket:ready); the
 * parent's /proc/PPID/comm one of SUPERVISORS → supervised; else none.
 * Never guessed from /.dockerenv, cgroups or `container=`: they do not say
 * whether forking would kill us. Decided on the first call.
 */
export function supervisor(): Supervisor {
  if (decided) return decided;
  if (process.pid === 1) decided = { kind: "pid1" };
  else if (process.env.NOTIFY_SOCKET) decided = { kind: "systemd" };
  else {
    const ppid = process.ppid;
    const comm = commOf(ppid);
    // comm holds at most 15 characters: supervise-daemon reads "supervise-daemo".
    const by = comm === undefined ? undefined : SUPERVISORS.find((s) => s.slice(0, 15) === comm);
    decided = by !== undefined ? { kind: "supervised", by, pid: ppid } : { kind: "none" };
  }
  return decided;
}

/**
 * The one line (logged with the daemon's name as its tag) that says why
 * `command` stays in the foreground; undefined when nothing supervises us.
 */
export function notDetaching(s: Supervisor, command: string, logFile?: string): string | undefined {
  switch (s.kind) {
    case "systemd": {
      const log = logFile === undefined ? "" : `; the log file ${logFile} is not used, logs go to stderr (the journal)`;
      return `NOTIFY_SOCKET is set: "${command}" runs in the foreground, as the process systemd started and watches (Type=notify), not as a forked daemon${log}`;
    }
    case "pid1":
      return "PID 1 (a container's init): not detaching (exiting would end every process of the namespace)";
    case "supervised":
      return `supervised by ${s.by} (pid ${s.pid}): not detaching`;
    default:
      return undefined;
  }
}
