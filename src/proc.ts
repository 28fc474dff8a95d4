/** Reading this process's state from /proc (Linux only). */
import { readFileSync, readdirSync, readlinkSync } from "node:fs";

/** Open fd numbers of this process. */
export function listFds(): number[] {
  return readdirSync("/proc/self/fd").map(Number).filter((n) => Number.isInteger(n));
}

/** What /proc/self/fd/N points at ("pipe:[123]", "/dev/null"…), or undefined if closed. */
export function fdTarget(fd: number): string | undefined {
  try {
    return readlinkSync(`/proc/self/fd/${fd}`);
  } catch {
    return undefined;
  }
}

/** Signal numbers set in a /proc/PID/status mask line such as SigIgn. */
export function signalMask(field: "SigIgn" | "SigBlk" | "SigCgt", pid: number | "self" = "self"): number[] {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const m = new RegExp(`^${field}:\\s*([0-9a-f]+)`, "m").exec(status);
  const mask = BigInt(`0x${m?.[1] ?? "0"}`);
  const out: number[] = [];
  for (let sig = 1; sig <= 64; sig++) if ((mask >> BigInt(sig - 1)) & 1n) out.push(sig);
  return out;
}

/**
 * Address ranges the runtime marked MADV_DONTFORK (VmFlags "dc"): JSC's JIT
 * region. A fork child loses them and crashes on return into JIT code.
 * Found in /proc/self/maps as the anonymous rwx mapping, which on Bun 1.4.5
 * is exactly the "dc" set (test/proc.test.ts holds the two against each
 * other); reading smaps instead walks every page table (about 1 ms), so it
 * is only the fallback for when no such mapping shows.
 */
export function dontForkRanges(): Array<[bigint, bigint]> {
  const out: Array<[bigint, bigint]> = [];
  for (const line of readFileSync("/proc/self/maps", "utf8").split("\n")) {
    // "7fe1...-7fe1... rwxp 00000000 00:00 0" with no path: anonymous.
    const m = /^([0-9a-f]+)-([0-9a-f]+) rwxp \S+ 00:00 0\s*$/.exec(line);
    if (m) out.push([BigInt(`0x${m[1]}`), BigInt(`0x${m[2]}`)]);
  }
  return out.length > 0 ? out : dontForkRangesFromSmaps();
}

/** The same from /proc/self/smaps' VmFlags: authoritative, and slow. */
export function dontForkRangesFromSmaps(): Array<[bigint, bigint]> {
  const out: Array<[bigint, bigint]> = [];
  let cur: [bigint, bigint] | undefined;
  for (const line of readFileSync("/proc/self/smaps", "utf8").split("\n")) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) /.exec(line);
    if (m) {
      cur = [BigInt(`0x${m[1]}`), BigInt(`0x${m[2]}`)];
    } else if (cur && line.startsWith("VmFlags:") && / dc( |$)/.test(line)) {
      out.push(cur);
    }
  }
  return out;
}

/** Start time of a process in clock ticks since boot (field 22 of /proc/PID/stat). */
export function startTicks(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(fields[19]);
  } catch {
    return undefined;
  }
}

/** Seconds a process has been running, from /proc (USER_HZ is 100 on Linux). */
export function uptimeSeconds(pid: number): number | undefined {
  const ticks = startTicks(pid);
  if (ticks === undefined) return undefined;
  const boot = Number(readFileSync("/proc/uptime", "utf8").split(" ")[0]);
  return Math.max(0, boot - ticks / 100);
}

/** Process state letter (R, S, Z…) or undefined when it is gone. */
export function processState(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
  } catch {
    return undefined;
  }
}

/**
 * True until every thread of the process has exited. A killed process's
 * leader shows "Z" while its other threads are still exiting, and its fds
 * (the PID file lock, listening sockets) close only with the last thread;
 * an orphan's zombie may also linger where PID 1 does not reap.
 */
export function isAlive(pid: number): boolean {
  const s = processState(pid);
  if (s === undefined || s === "X") return false;
  if (s !== "Z") return true;
  try {
    return readdirSync(`/proc/${pid}/task`).length > 1;
  } catch {
    return false;
  }
}

/** Who a process is, from /proc/PID/status and /proc/PID/comm, which every user may read. */
export interface ProcessIdentity {
  pid: number;
  /** Effective uid: the one that owns what it creates and is checked when it signals. */
  uid: number;
  /** Its user name from /etc/passwd, or "uid N". */
  user: string;
  /** /proc/PID/comm (at most 15 bytes). */
  comm: string;
}

/** The identity of a live process, or undefined when it is gone. */
export function processIdentity(pid: number): ProcessIdentity | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const uid = Number(/^Uid:\s+\d+\s+(\d+)/m.exec(status)?.[1]);
    const comm = readFileSync(`/proc/${pid}/comm`, "utf8").trim();
    if (!Number.isInteger(uid) || !isAlive(pid)) return undefined;
    return { pid, uid, user: userName(uid), comm };
  } catch {
    return undefined;
  }
}

/** A user's name from /etc/passwd (no NSS: this only labels messages), else "uid N". */
export function userName(uid: number): string {
  try {
    for (const line of readFileSync("/etc/passwd", "utf8").split("\n")) {
      const f = line.split(":");
      if (f.length > 2 && Number(f[2]) === uid && f[2] !== "") return f[0]!;
    }
  } catch {
    // no /etc/passwd (a minimal container)
  }
  return `uid ${uid}`;
}

/** Every other live process /proc shows (as PID 1 of a namespace: the namespace's), zombies left out. */
export function livingOthers(): number[] {
  const out: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    if (pid === process.pid) continue;
    const st = processState(pid);
    if (st !== undefined && st !== "Z" && st !== "X") out.push(pid);
  }
  return out;
}
