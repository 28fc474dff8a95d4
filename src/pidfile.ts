/**
 * The PID file: created 0644, locked with flock(2) by the daemon for its
 * whole life, and only then written. A file that exists but is not locked
 * is stale, whatever PID it names; a file that is locked names a live daemon.
 */
import { fchmodSync, fstatSync, ftruncateSync, readFileSync, readSync, readdirSync, statSync, unlinkSync, writeSync, type Stats } from "node:fs";
import { DaemonError, fromNodeError } from "./errors.ts";
import { closeFd, LOCK_EX, LOCK_SH, O_CREAT, O_NOCTTY, O_NOFOLLOW, O_RDONLY, O_RDWR, openFile, tryLock } from "./ffi.ts";

/** A PID file this process holds the lock on. */
export interface PidFileLock {
  path: string;
  fd: number;
}

/** What a reader finds at a PID file path. */
export type PidFileState =
  | { state: "absent"; path: string }
  /** Locked by a live process. `pid` is undefined while the launcher has not written it yet. */
  | { state: "running"; path: string; pid: number | undefined }
  /** Present and unlocked: nobody holds it, whatever pid it names. */
  | { state: "stale"; path: string; pid: number | undefined };

const PID_RE = /^\s*(\d{1,10})\s*$/;

/** The pid in a PID file's text, or undefined for empty/garbage. */
export function parsePid(text: string): number | undefined {
  const m = PID_RE.exec(text);
  const n = m ? Number(m[1]) : NaN;
  return n > 0 && n <= 0x3fffffff ? n : undefined;
}

function readText(fd: number): string {
  const buf = Buffer.alloc(64);
  let n = 0;
  try {
    // pread from 0: the fd's offset may be anywhere.
    n = readSync(fd, buf, 0, buf.length, 0);
  } catch {
    return "";
  }
  return buf.toString("utf8", 0, n);
}

/** True when `fd` and `path` still name the same file (not unlinked or replaced). */
function samePath(fd: number, path: string): boolean {
  try {
    const a = fstatSync(fd);
    const b = statSync(path);
    return a.ino === b.ino && a.dev === b.dev;
  } catch {
    return false;
  }
}

/**
 * Create (or take over) the PID file and lock it exclusively. Fails with
 * ALREADY_RUNNING when a live process holds it, PIDFILE_INVALID when the
 * path holds something that is not a PID file (it is left untouched).
 */
export function acquirePidFile(path: string): PidFileLock {
  for (let attempt = 0; ; attempt++) {
    // O_NOFOLLOW: a symlink planted at a /tmp path must not redirect our write.
    const fd = openFile(path, O_RDWR | O_CREAT | O_NOCTTY | O_NOFOLLOW, 0o644, "PIDFILE_OPEN", "open PID file");
    let ok = false;
    try {
      const st = fstatSync(fd);
      if (!st.isFile()) {
        throw new DaemonError("PIDFILE_INVALID", `PID file ${path} is not a regular file: choose another --pid-file`, { path });
      }
      if (!tryLock(fd, LOCK_EX, path)) {
        const pid = parsePid(readText(fd));
        throw new DaemonError(
          "ALREADY_RUNNING",
          pid === undefined ? `already running (PID file ${path} is locked by a starting daemon)` : `already running (pid ${pid})`,
          pid === undefined ? { path } : { path, pid },
        );
      }
      // The previous holder may have unlinked the path between our open and
      // our lock; a lock on an unlinked inode protects nothing.
      if (!samePath(fd, path)) {
        if (attempt < 20) continue;
        throw new DaemonError("PIDFILE_OPEN", `PID file ${path} keeps being replaced while we lock it`, { path });
      }
      const text = readText(fd);
      // A PID file is at most a dozen bytes; judge the whole file, not its start.
      if (st.size > 64 || (text.trim() !== "" && parsePid(text) === undefined)) {
        const shown = st.size > 64 ? `${st.size} bytes` : JSON.stringify(text.length > 40 ? `${text.slice(0, 40)}…` : text);
        throw new DaemonError(
          "PIDFILE_INVALID",
          `PID file ${path} holds ${shown}, which is not a PID; refusing to overwrite it. Remove it if it is a stale PID file, or choose another --pid-file`,
          { path },
        );
      }
      try {
        fchmodSync(fd, 0o644);
      } catch {
        // Not ours to chmod (another owner): the lock is what matters.
      }
      ok = true;
      return { path, fd };
    } finally {
      if (!ok) closeFd(fd);
    }
  }
}

/** Replace the locked file's content with `pid\n`. */
export function writePid(lock: PidFileLock, pid: number): void {
  try {
    ftruncateSync(lock.fd, 0);
    writeSync(lock.fd, `${pid}\n`, 0);
  } catch (err) {
    throw fromNodeError("PIDFILE_WRITE", "write PID file", err, lock.path);
  }
}

/**
 * Unlink the PID file while still holding its lock, then close it. Only
 * unlinks when the path still names our locked inode.
 */
export function releasePidFile(lock: PidFileLock): void {
  // Idempotent: a second close of the number could hit an fd opened since.
  if (lock.fd < 0) return;
  if (samePath(lock.fd, lock.path)) {
    try {
      unlinkSync(lock.path);
    } catch {
      // Already gone or not ours to remove: the lock is released below anyway.
    }
  }
  closeFd(lock.fd);
  lock.fd = -1;
}

/** "MAJ:MIN:INO" as /proc/locks prints a file's identity. */
function lockKey(st: Stats): string {
  const dev = st.dev;
  const major = ((dev >>> 8) & 0xfff) | (Math.floor(dev / 2 ** 32) & ~0xfff);
  const minor = (dev & 0xff) | ((dev >>> 12) & ~0xff);
  const hex = (n: number) => n.toString(16).padStart(2, "0");
  return `${hex(major)}:${hex(minor)}:${st.ino}`;
}

/**
 * Whether some process holds a flock on the file open at `fd`. Reads
 * /proc/locks so a reader never takes the lock itself (which would make a
 * concurrent `start` see "already running"); probes with LOCK_SH only when
 * /proc/locks is unavailable.
 */
function isLocked(fd: number, path: string): boolean {
  try {
    const key = lockKey(fstatSync(fd));
    const table = readFileSync("/proc/locks", "utf8");
    for (const line of table.split("\n")) {
      const f = line.trim().split(/\s+/);
      // "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF" (or "-> FLOCK ..." for waiters)
      const i = f.indexOf("FLOCK");
      if (i >= 0 && f[i - 1] !== "->" && f[i + 4] === key) return true;
    }
    return false;
  } catch {
    const free = tryLock(fd, LOCK_SH, path);
    return !free;
  }
}

/** Read a PID file without modifying or (normally) locking it. */
export function inspectPidFile(path: string): PidFileState {
  let fd: number;
  try {
    fd = openFile(path, O_RDONLY | O_NOCTTY, 0, "PIDFILE_OPEN", "read PID file");
  } catch (err) {
    if (err instanceof DaemonError && err.errnoName === "ENOENT") return { state: "absent", path };
    throw err;
  }
  try {
    const pid = parsePid(readText(fd));
    // The pid counts only if that very process holds the lock on this file,
    // so a reused pid is never taken for the daemon. Its own fdinfo says so
    // without reading /proc/locks, which can stall for an RCU grace period.
    const held = pid === undefined ? undefined : holdsLock(pid, fstatSync(fd));
    if (held === true) return { state: "running", path, pid };
    if (held === false) return { state: "stale", path, pid };
    // No pid yet (the daemon is starting), or another user's process.
    if (!isLocked(fd, path)) return { state: "stale", path, pid };
    return { state: "running", path, pid };
  } finally {
    closeFd(fd);
  }
}

/**
 * Whether process `pid` holds a flock on the file `st` through one of its
 * fds (its /proc/PID/fdinfo/N shows a FLOCK line): true, false, or
 * undefined when /proc/PID/fd cannot be read (another user's process).
 */
export function holdsLock(pid: number, st: Stats): boolean | undefined {
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === "ENOENT" || code === "ESRCH" ? false : undefined;
  }
  for (const fd of fds) {
    try {
      const s = statSync(`/proc/${pid}/fd/${fd}`);
      if (s.ino !== st.ino || s.dev !== st.dev) continue;
      if (/^lock:.*\bFLOCK\b/m.test(readFileSync(`/proc/${pid}/fdinfo/${fd}`, "utf8"))) return true;
    } catch {
      // closed meanwhile
    }
  }
  return false;
}

