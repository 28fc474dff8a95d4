/**
 * The PID file: a regular file, created 0644 and locked with flock(2) by
 * the launcher, inherited locked by the daemon, which writes its pid once
 * it handles signals. What a reader finds there is one of the states of
 * PidFileState; only a pid that provably holds the lock counts as running.
 */
import { fchmodSync, fstatSync, ftruncateSync, lstatSync, readFileSync, readlinkSync, readSync, readdirSync, renameSync, statSync, unlinkSync, writeSync, type Stats } from "node:fs";
import { basename, dirname, join } from "node:path";
import { DaemonError, fromNodeError } from "./errors.ts";
import {
  clearNonblock, closeFd, LOCK_EX, LOCK_SH, O_APPEND, O_CREAT, O_DIRECTORY, O_EXCL, O_NOCTTY, O_NOFOLLOW, O_NONBLOCK, O_RDONLY, O_RDWR, O_WRONLY, openFile, posixReadLock, tryLock,
} from "./ffi.ts";
import { processIdentity, userName, type ProcessIdentity } from "./proc.ts";

/**
 * Why a file at a path another user may write to (a PID file or log file
 * in /tmp) must not be trusted, or undefined when it may: it must be owned
 * by this user, by root, or by `trustedUid` (the user a daemon runs as),
 * and writable by its owner only. Otherwise its owner, or anyone, chose its
 * content, and a root start would write into a file that user owns.
 */
export function untrustedOwner(what: string, path: string, st: Stats, trustedUid?: number): string | undefined {
  const me = process.geteuid!();
  const owned = st.uid === me || st.uid === 0 || st.uid === trustedUid;
  const writable = (st.mode & 0o022) !== 0;
  // A second name for the file: where protected_hardlinks is off, anyone may link a root file (/etc/shadow) here.
  if (owned && !writable && st.nlink > 1) return `${what} ${path} has ${st.nlink} hard links, so it may be another file under a planted name; refusing to use it. Remove it, or choose another path`;
  if (owned && !writable) return undefined;
  const mode = (st.mode & 0o7777).toString(8).padStart(4, "0");
  const whose = `owned by ${userName(st.uid)} (uid ${st.uid}), mode ${mode}`;
  const why = !owned
    ? `not by ${me === 0 ? "root" : `this user (${userName(me)}) or root`}`
    : `writable by ${st.mode & 0o002 ? "every user" : "its group"}`;
  return `${what} ${path} is ${whose}: ${why}, so another user may have planted or rewritten it; refusing to use it. Remove it (or ${owned ? `chmod go-w` : "chown it"}) if it is yours, or choose another path`;
}

/**
 * Open a log file for appending, safely in a directory others may write to:
 * never through a symlink (O_NOFOLLOW), never a FIFO or socket (it could
 * block or redirect), never a regular file another user owns or may write
 * (untrustedOwner). Returns the fd; throws LOG_OPEN with one line.
 */
export function openLogFile(path: string, trustedUid?: number): number {
  let fd: number;
  try {
    fd = openFile(path, O_WRONLY | O_APPEND | O_CREAT | O_NOCTTY | O_NOFOLLOW | O_NONBLOCK, 0o640, "LOG_OPEN", "open log file");
  } catch (err) {
    // ELOOP, or EACCES from some kernels when O_CREAT meets a link in a sticky directory.
    let link = false;
    try {
      link = lstatSync(path).isSymbolicLink();
    } catch {}
    if (link) {
      let to = "?";
      try {
        to = readlinkSync(path);
      } catch {}
      throw new DaemonError("LOG_OPEN", `log file ${path} is a symlink to ${to}; log files are never followed (a planted link would redirect the writes): give --log-file the real path`, { path });
    }
    throw err;
  }
  const st = fstatSync(fd);
  const bad = st.isFile() ? untrustedOwner("log file", path, st, trustedUid) : st.isCharacterDevice() ? undefined : `log file ${path} is ${kindOf(st)}; choose a regular file`;
  if (bad !== undefined) {
    closeFd(fd);
    throw new DaemonError("LOG_OPEN", bad, { path });
  }
  // O_NONBLOCK only guarded the open against a FIFO; a terminal must block.
  if (st.isCharacterDevice()) clearNonblock(fd);
  return fd;
}

/** A PID file this process holds the lock on. */
export interface PidFileLock {
  path: string;
  fd: number;
  /**
   * Held (the lock is shared with another process through one open file)
   * but naming another process: during an upgrade, the new daemon's until
   * it is ready, and the old one's from then on. Never written or removed.
   */
  passive?: boolean;
}

/** A process /proc/locks names as holding a flock on the PID file. */
export interface LockHolder extends ProcessIdentity {
  /**
   * Whether one of its fds on this very file carries the flock (its
   * /proc/PID/fdinfo says so): undefined when its fds cannot be read (another
   * user's, or a non-dumpable process). /proc/locks alone is not proof: it
   * shows the pid that took the lock, which may have exited (the launcher
   * does, after ready) and had its number reused.
   */
  holds: boolean | undefined;
}

/** What a reader finds at a PID file path. */
export type PidFileState =
  | { state: "absent"; path: string }
  /** Not a PID file: not a regular file (FIFO, directory, device, socket, symlink), or garbage. */
  | { state: "invalid"; path: string; reason: string }
  /** Present and unlocked: nobody holds it, whatever pid it names. */
  | { state: "stale"; path: string; pid: number | undefined }
  /** Locked and still empty: a launcher holds it and its daemon has not written its pid yet. */
  | { state: "starting"; path: string; holder: LockHolder | undefined }
  /** Locked, and the pid it names is verified to hold the lock. */
  | { state: "running"; path: string; pid: number }
  /**
   * Locked, but not by the pid it names (dead, or verifiably not a holder) nor
   * by a launcher that could be starting. `replaceable` when the holder is
   * verified and is another user's (neither the file's owner nor root): no
   * daemon of this file runs as that user, so `start` may put a fresh file in its place.
   */
  | { state: "foreign"; path: string; pid: number | undefined; holder: LockHolder | undefined; replaceable: boolean }
  /** Locked, and it names a live pid whose hold on the lock this user cannot check. */
  | { state: "unverified"; path: string; pid: number; holder: LockHolder | undefined; reason: string };

const PID_RE = /^\s*(\d{1,10})\s*$/;

/** The pid in a PID file's text, or undefined for empty/garbage. */
export function parsePid(text: string): number | undefined {
  const m = PID_RE.exec(text);
  const n = m ? Number(m[1]) : NaN;
  return n > 0 && n <= 0x3fffffff ? n : undefined;
}

/** "pid 12 (user nobody, sleep)" */
export function describeHolder(h: ProcessIdentity): string {
  return `pid ${h.pid} (user ${h.user}, ${h.comm})`;
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
export function samePath(fd: number, path: string): boolean {
  try {
    const a = fstatSync(fd);
    const b = lstatSync(path);
    return a.ino === b.ino && a.dev === b.dev;
  } catch {
    return false;
  }
}

/** What a non-regular file is, for messages ("a FIFO", "a symlink"…). */
export function kindOf(st: Stats): string {
  if (st.isDirectory()) return "a directory";
  if (st.isFIFO()) return "a FIFO";
  if (st.isSocket()) return "a socket";
  if (st.isCharacterDevice()) return "a character device";
  if (st.isBlockDevice()) return "a block device";
  if (st.isSymbolicLink()) return "a symlink";
  return "not a regular file";
}

/** Why `st` (from lstat) at `path` is not a PID file. */
function notAPidFile(path: string, st: Stats): string {
  if (st.isSymbolicLink()) {
    let to = "?";
    try {
      to = readlinkSync(path);
    } catch {}
    return `PID file ${path} is a symlink to ${to}; PID files are never followed (a planted link would redirect the write): give --pid-file the real path`;
  }
  return `PID file ${path} is ${kindOf(st)}, not a PID file; choose another --pid-file`;
}

function invalid(reason: string, path: string): DaemonError {
  return new DaemonError("PIDFILE_INVALID", reason, { path });
}

/** lstat, or undefined when nothing is there. */
function lstatOrNone(path: string, step: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw fromNodeError("PIDFILE_OPEN", step, err, path);
  }
}

/**
 * Open the PID file path, refusing anything but a regular file before and
 * after the open: lstat first so a FIFO or device is never opened at all,
 * O_NOFOLLOW against a symlink swapped in meanwhile, O_NONBLOCK so a FIFO
 * swapped in too cannot hang us, fstat to judge what was really opened.
 */
function openRegular(path: string, flags: number, step: string): { fd: number; st: Stats } | undefined {
  const pre = lstatOrNone(path, step);
  if (pre && !pre.isFile()) throw invalid(notAPidFile(path, pre), path);
  let fd: number;
  try {
    fd = openFile(path, flags | O_NOFOLLOW | O_NOCTTY, 0o644, "PIDFILE_OPEN", step);
  } catch (err) {
    const e = err as DaemonError;
    if (e.errnoName === "ENOENT" && !(flags & O_CREAT)) return undefined;
    // Replaced between lstat and open (ELOOP: now a symlink, ENXIO: a socket, EISDIR…).
    const now = e.errnoName === "ENOENT" ? undefined : lstatOrNone(path, step);
    if (now && !now.isFile()) throw invalid(notAPidFile(path, now), path);
    throw err;
  }
  const st = fstatSync(fd);
  if (!st.isFile()) {
    closeFd(fd);
    throw invalid(`PID file ${path} is ${kindOf(st)}, not a PID file; choose another --pid-file`, path);
  }
  return { fd, st };
}

/** Why the text of a PID file is not a PID file's, or undefined when it is (a pid, or empty). */
function garbage(path: string, st: Stats, text: string): string | undefined {
  // A PID file is at most a dozen bytes; judge the whole file, not its start.
  if (st.size <= 64 && (text.trim() === "" || parsePid(text) !== undefined)) return undefined;
  const shown = st.size > 64 ? `${st.size} bytes` : JSON.stringify(text.length > 40 ? `${text.slice(0, 40)}…` : text);
  return `PID file ${path} holds ${shown}, which is not a PID`;
}

/**
 * "MAJ:MIN" of the device /proc/locks prints for the file open at `fd`: its
 * superblock's, which on btrfs is not the st_dev stat(2) gives (a subvolume
 * has an anonymous device of its own). The fd's mount (fdinfo mnt_id) names
 * it in mountinfo, from the same field the kernel prints in /proc/locks.
 */
function superblockDev(fd: number): string | undefined {
  try {
    const mnt = /^mnt_id:\s*(\d+)/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, "utf8"))?.[1];
    if (mnt === undefined) return undefined;
    for (const line of readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
      const f = line.split(" ");
      if (f[0] === mnt) {
        const [major, minor] = (f[2] ?? "").split(":").map(Number);
        if (major === undefined || minor === undefined) return undefined;
        const hex = (n: number) => n.toString(16).padStart(2, "0");
        return `${hex(major)}:${hex(minor)}`;
      }
    }
  } catch {
    // no procfs details: fall back to the inode alone below
  }
  return undefined;
}

interface LockTable {
  /** Pids /proc/locks shows holding a flock on the file (not waiters). */
  flock: number[];
  /** Pids holding a POSIX lock on it (a daemon marks its PID file so: see writePid). */
  posix: number[];
}

/**
 * The locks /proc/locks shows on the file open at `fd`, or undefined when
 * /proc/locks cannot be read. Reading it never takes a lock, so a reader
 * cannot make a concurrent `start` see "already running".
 */
function lockTable(fd: number, st: Stats): LockTable | undefined {
  let text: string;
  try {
    text = readFileSync("/proc/locks", "utf8");
  } catch {
    return undefined;
  }
  const dev = superblockDev(fd);
  const out: LockTable = { flock: [], posix: [] };
  for (const line of text.split("\n")) {
    // "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"; waiters read "1: -> FLOCK ..."
    const f = line.trim().split(/\s+/);
    if (f[1] === "->") continue;
    const [kind, pid, id] = [f[1], Number(f[4]), f[5] ?? ""];
    const cut = id.lastIndexOf(":");
    if (id.slice(cut + 1) !== String(st.ino)) continue;
    // Without the superblock device, an inode number alone could name a file on another file system.
    if (dev === undefined ? !lockedFileIsOurs(pid, st) : id.slice(0, cut) !== dev) continue;
    if (kind === "FLOCK") out.flock.push(pid);
    else if (kind === "POSIX") out.posix.push(pid);
  }
  return out;
}

function lockedFileIsOurs(pid: number, st: Stats): boolean {
  return holdsLock(pid, st) !== false;
}

/**
 * Whether process `pid` holds a flock on the file `st` through one of its
 * fds (its /proc/PID/fdinfo/N shows a FLOCK line): true, false (no such
 * process, or none of its fds does), or undefined when its fds cannot be
 * read (another user's, or a non-dumpable process): never a guess.
 */
export function holdsLock(pid: number, st: Stats): boolean | undefined {
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === "ENOENT" || code === "ESRCH" ? false : undefined;
  }
  let unreadable = false;
  for (const fd of fds) {
    try {
      // stat(2) through the magic link: the same (dev, ino) our own stat of the file gives, on any file system.
      const s = statSync(`/proc/${pid}/fd/${fd}`);
      if (s.ino !== st.ino || s.dev !== st.dev) continue;
      if (/^lock:.*\bFLOCK\b/m.test(readFileSync(`/proc/${pid}/fdinfo/${fd}`, "utf8"))) return true;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // Listing may be allowed where following the links is not (root without CAP_SYS_PTRACE).
      if (code === "EACCES" || code === "EPERM") unreadable = true;
    }
  }
  return unreadable ? undefined : false;
}

/** The first process /proc/locks names as a holder that is still alive and not proven otherwise. */
function pickHolder(pids: number[], st: Stats): LockHolder | undefined {
  let fallback: LockHolder | undefined;
  for (const pid of pids) {
    const id = processIdentity(pid);
    if (!id) continue; // exited: the lock lives on in a process that inherited the fd
    const holds = holdsLock(pid, st);
    if (holds === true) return { ...id, holds };
    if (holds === undefined) fallback ??= { ...id, holds };
    // false: its number was reused by a process that has nothing to do with the file
  }
  return fallback;
}

/**
 * Judge a PID file opened at `fd`. The rules:
 * - a pid counts as running only if it holds the lock, proven by its own
 *   /proc/PID/fdinfo, or (when that cannot be read) by the POSIX lock a
 *   daemon adds in writePid, which /proc/locks shows under its pid;
 * - locked and empty is "starting", unless the holder is proven to be
 *   another user's process (not the file's owner, not root): a launcher
 *   creates the file, or takes it over, as the user it runs as;
 * - locked and naming a pid that does not hold it is "foreign"; a pid that
 *   is alive but cannot be checked is "unverified", and is never signalled.
 */
function classify(path: string, fd: number, st: Stats, text: string): PidFileState {
  const bad = garbage(path, st, text);
  if (bad !== undefined) return { state: "invalid", path, reason: bad };
  const pid = parsePid(text);
  const held = pid === undefined ? false : holdsLock(pid, st);
  // The daemon's own fdinfo proves it: no /proc/locks, whose read can stall
  // for an RCU grace period (5-24 ms seen), on the path status and stop take.
  if (held === true) return { state: "running", path, pid: pid! };
  const table = lockTable(fd, st);
  const locked = table ? table.flock.length > 0 : !tryLockProbe(fd, path);
  if (!locked) return { state: "stale", path, pid };
  if (held === undefined && table?.posix.includes(pid!)) return { state: "running", path, pid: pid! };
  const holder = pickHolder(table?.flock ?? [], st);
  if (held === undefined) {
    return {
      state: "unverified",
      path,
      pid: pid!,
      holder,
      reason: `cannot check that pid ${pid} holds PID file ${path}: its /proc/${pid}/fd is not readable by this user (another user's or a non-dumpable process) and /proc/locks shows no lock of it; run as the daemon's user or as root`,
    };
  }
  const replaceable = holder?.holds === true && holder.uid !== st.uid && holder.uid !== 0;
  if (pid === undefined && !replaceable) return { state: "starting", path, holder };
  return { state: "foreign", path, pid, holder, replaceable };
}

/** Only where /proc/locks is unreadable: probe with a shared lock, released at once. */
function tryLockProbe(fd: number, path: string): boolean {
  return tryLock(fd, LOCK_SH, path);
}

/** Read a PID file without modifying or locking it; never follows a symlink, never blocks. */
export function inspectPidFile(path: string): PidFileState {
  let opened: { fd: number; st: Stats } | undefined;
  try {
    opened = openRegular(path, O_RDONLY | O_NONBLOCK, "read PID file");
  } catch (err) {
    if (err instanceof DaemonError && err.code === "PIDFILE_INVALID") return { state: "invalid", path, reason: err.message };
    throw err;
  }
  if (!opened) return { state: "absent", path };
  try {
    const text = readText(opened.fd);
    const state = classify(path, opened.fd, opened.st, text);
    const bad = untrustedOwner("PID file", path, opened.st);
    // Another user's file is that user's own business only while it belongs
    // to a daemon of that very user (signalling it gives them nothing they
    // could not do themselves); anything else it says was their choice.
    if (bad === undefined || (state.state === "running" && !(opened.st.mode & 0o022) && processIdentity(state.pid)?.uid === opened.st.uid)) return state;
    const pid = parsePid(text);
    return { state: "invalid", path, reason: pid === undefined ? bad : bad.replace("; refusing", ` (it names pid ${pid}); refusing`) };
  } finally {
    closeFd(opened.fd);
  }
}

/**
 * Lock the PID file's directory (flock on the directory itself), retrying
 * for up to `ms`. It orders a replacement (LOCK_EX) against takeovers
 * (LOCK_SH), which check that the path still names the file they locked:
 * so a file renamed into place can never replace one a concurrent `start`
 * has just taken over. Returns the directory fd, or -1.
 */
function lockDir(path: string, op: number, ms: number): number {
  let dfd: number;
  try {
    dfd = openFile(dirname(path), O_RDONLY | O_DIRECTORY, 0, "PIDFILE_OPEN", "open PID file directory");
  } catch {
    return -1;
  }
  const end = performance.now() + ms;
  for (;;) {
    try {
      if (tryLock(dfd, op, dirname(path))) return dfd;
    } catch {
      break; // a file system without flock on directories: nothing to order
    }
    if (performance.now() >= end) break;
    Bun.sleepSync(5);
  }
  closeFd(dfd);
  return -1;
}

/**
 * Create (or take over) the PID file and lock it exclusively. A stale
 * file is emptied at once, so no reader sees the dead pid while the new
 * daemon starts. Fails with ALREADY_RUNNING when a daemon (or a starting
 * launcher) holds it, PIDFILE_INVALID when the path holds something that
 * is not a PID file (left untouched). A file locked by another user's
 * process that is not the daemon is replaced by a fresh one.
 */
export function acquirePidFile(path: string): PidFileLock {
  for (let attempt = 0; ; attempt++) {
    if (attempt >= 20) throw new DaemonError("PIDFILE_OPEN", `PID file ${path} keeps being replaced while we lock it`, { path });
    // O_NOFOLLOW (in openRegular): a symlink planted at a /tmp path must not redirect our write.
    const { fd, st } = openRegular(path, O_RDWR | O_CREAT, "open PID file")!;
    let keep = false;
    try {
      const bad = untrustedOwner("PID file", path, st);
      if (bad !== undefined) {
        const pid = parsePid(readText(fd));
        throw new DaemonError("PIDFILE_UNSAFE", pid === undefined ? bad : bad.replace("; refusing", ` (it names pid ${pid}); refusing`), { path });
      }
      if (tryLock(fd, LOCK_EX, path)) {
        const dfd = lockDir(path, LOCK_SH, 2000);
        try {
          // The previous holder may have unlinked the path between our open and
          // our lock; a lock on an unlinked inode protects nothing.
          if (!samePath(fd, path)) continue;
          const bad = garbage(path, st, readText(fd));
          if (bad !== undefined) {
            throw invalid(`${bad}; refusing to overwrite it. Remove it if it is a stale PID file, or choose another --pid-file`, path);
          }
          try {
            ftruncateSync(fd, 0);
          } catch (err) {
            throw fromNodeError("PIDFILE_WRITE", "empty the stale PID file", err, path);
          }
        } finally {
          if (dfd >= 0) closeFd(dfd);
        }
        try {
          fchmodSync(fd, 0o644);
        } catch {
          // Not ours to chmod (another owner): the lock is what matters.
        }
        keep = true;
        return { path, fd };
      }
      const state = classify(path, fd, st, readText(fd));
      switch (state.state) {
        case "running":
          throw new DaemonError("ALREADY_RUNNING", `already running (pid ${state.pid})`, { path, pid: state.pid });
        case "starting":
          throw new DaemonError("ALREADY_RUNNING", `already running (PID file ${path} is locked by a starting daemon)`, { path });
        case "unverified":
          throw new DaemonError("ALREADY_RUNNING", `already running? ${state.reason}`, { path, pid: state.pid });
        case "invalid":
          throw invalid(`${state.reason}; refusing to overwrite it. Remove it if it is a stale PID file, or choose another --pid-file`, path);
        case "foreign": {
          if (!state.replaceable) {
            throw new DaemonError("ALREADY_RUNNING", `already running? ${foreignText(state)}; stop that process, or remove ${path} if it is not a daemon`, { path });
          }
          const fresh = replacePidFile(path, fd, state);
          if (fresh) return fresh;
          continue;
        }
        case "stale":
        case "absent":
          continue; // the holder let go meanwhile: try again
      }
    } finally {
      if (!keep) closeFd(fd);
    }
  }
}

/** How a foreign-locked PID file reads, for messages: "PID file X names pid N, which does not hold it; it is locked by ...". */
export function foreignText(s: Extract<PidFileState, { state: "foreign" }>): string {
  const what = s.pid === undefined ? `PID file ${s.path} is empty` : `PID file ${s.path} names pid ${s.pid}, which does not hold it`;
  const who = s.holder ? describeHolder(s.holder) : "a process that inherited it";
  return `${what}; it is locked by ${who}${s.replaceable ? ", which is not a daemon" : " instead"}`;
}

/**
 * Put a fresh, locked PID file in place of one another user's process holds
 * locked (it keeps its lock, on the unlinked file): created under a
 * temporary name in the same directory (O_EXCL), locked, then rename(2)d
 * over the path. Returns undefined when the file changed meanwhile (the
 * caller starts over).
 */
function replacePidFile(path: string, oldFd: number, state: Extract<PidFileState, { state: "foreign" }>): PidFileLock | undefined {
  const dfd = lockDir(path, LOCK_EX, 2000);
  if (dfd < 0) {
    throw new DaemonError("PIDFILE_OPEN", `cannot replace PID file ${path} (${foreignText(state)}): its directory cannot be locked; remove the file as its owner or root`, { path });
  }
  try {
    // Under the directory lock nobody can take the file over; re-judge it.
    if (!samePath(oldFd, path)) return undefined;
    const again = classify(path, oldFd, fstatSync(oldFd), readText(oldFd));
    if (again.state !== "foreign" || !again.replaceable) return undefined;
    for (let i = 0; i < 10; i++) {
      const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${Math.random().toString(36).slice(2, 10)}`);
      let fd: number;
      try {
        fd = openFile(tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_NOCTTY, 0o644, "PIDFILE_OPEN", "create a fresh PID file");
      } catch (err) {
        if ((err as DaemonError).errnoName === "EEXIST") continue;
        throw err;
      }
      let ok = false;
      try {
        // Someone who guessed the name between our create and this lock gets a file we drop.
        if (!tryLock(fd, LOCK_EX, tmp)) continue;
        try {
          fchmodSync(fd, 0o644);
        } catch {}
        try {
          renameSync(tmp, path);
        } catch (err) {
          const e = fromNodeError("PIDFILE_OPEN", "replace", err, path);
          throw new DaemonError("PIDFILE_OPEN", `cannot replace PID file ${path} (${foreignText(state)}): rename failed: ${e.errnoName ?? e.message}; remove the file as its owner or root, or choose another --pid-file`, { path });
        }
        ok = true;
        return { path, fd };
      } finally {
        if (!ok) {
          try {
            unlinkSync(tmp);
          } catch {}
          closeFd(fd);
        }
      }
    }
    throw new DaemonError("PIDFILE_OPEN", `cannot create a fresh PID file next to ${path}: every temporary name was taken`, { path });
  } finally {
    closeFd(dfd);
  }
}

/**
 * Replace the locked file's content with `pid\n`. Called by the daemon for
 * itself, it first adds a POSIX read lock: /proc/locks then names this very
 * pid as a holder of the file, which any user can read, so the daemon can
 * be verified even where its /proc/PID/fd is unreadable (it changed uid, or
 * is not dumpable). The mark lasts until the process closes any fd on the
 * file (POSIX lock semantics), so it never outlives the flock.
 */
export function writePid(lock: PidFileLock, pid: number): void {
  // No PID file (a foreground daemon whose default paths were all read-only), or not ours to write.
  if (lock.fd < 0 || lock.passive) return;
  if (pid === process.pid) {
    try {
      posixReadLock(lock.fd);
    } catch {
      // Only a help for readers without access to our /proc/PID/fd.
    }
  }
  try {
    // Never empty in between (an upgrade replaces one pid by another): the
    // new pid over the old, blank-padded to its length (a pid with trailing
    // blanks still parses), then cut.
    const text = `${pid}\n`;
    const size = fstatSync(lock.fd).size;
    writeSync(lock.fd, size > text.length ? `${pid}${" ".repeat(size - text.length)}\n` : text, 0);
    ftruncateSync(lock.fd, text.length);
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
  if (!lock.passive && samePath(lock.fd, lock.path)) {
    try {
      unlinkSync(lock.path);
    } catch {
      // Already gone or not ours to remove: the lock is released below anyway.
    }
  }
  closeFd(lock.fd);
  lock.fd = -1;
}
