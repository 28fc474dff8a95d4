/**
 * The state file beside the PID file: the daemon publishes its state and
 * its reloads' outcomes there, `status` and `reload` read them. One fd, open
 * for the daemon's life, rewritten in place: it keeps working after the
 * privilege drop and the chroot. Readers trust only a file the daemon's user
 * or root owns and only they may write.
 */
import { fchmodSync, fchownSync, fstatSync, ftruncateSync, lstatSync, readFileSync, readlinkSync, readSync, renameSync, unlinkSync, writeSync, type Stats } from "node:fs";
import { DaemonError, errorText, fromNodeError } from "./errors.ts";
import { closeFd, O_CREAT, O_NOCTTY, O_NOFOLLOW, O_NONBLOCK, O_RDONLY, O_RDWR, openFile } from "./ffi.ts";
import { kindOf, samePath, untrustedOwner } from "./pidfile.ts";
import { uptimeSeconds, userName } from "./proc.ts";

/** What the daemon is doing: `starting` until ready, `reloading` while a reload runs, `stopping` from the stop on. */
export type DaemonState = "starting" | "running" | "reloading" | "stopping";

/** One finished reload. `seq` is the value reloadStarted returned for it (1, 2, …). */
export interface ReloadOutcome {
  seq: number;
  /** ISO time the reload began. */
  startedAt: string;
  /** ISO time it finished. */
  finishedAt: string;
  ok: boolean;
  /** Why it failed (the invalid config's file:line, or the failing hook and its message). */
  error?: string;
}

/** The content of a state file. */
export interface StateRecord {
  v: 1;
  name: string;
  pid: number;
  state: DaemonState;
  /** ISO time this state began. */
  since: string;
  /** ISO time the process started. */
  startedAt: string;
  configFile?: string;
  /** Reloads begun so far: the seq of the latest. */
  reloadsStarted: number;
  /** The last 16 outcomes, oldest first. */
  reloads: ReloadOutcome[];
  /** Upgrades begun so far (absent: none). */
  upgradesStarted?: number;
  /** The latest upgrade: running, or how it ended. */
  upgrade?: UpgradeRecord;
  /** A primary's workers (DaemonConfig.workers), by id; absent without workers. */
  workers?: WorkerRecord[];
}

/** One worker of a primary, as `status` lists it. */
export interface WorkerRecord {
  id: number;
  pid: number;
  state: "starting" | "running" | "stopping";
  /** ISO time it started. */
  startedAt: string;
  /** Replacements of this id after an exit nobody asked for. */
  restarts: number;
}

/** An upgrade (SIGUSR2): `running` until the new process is ready (`ok`) or failed. */
export interface UpgradeRecord {
  seq: number;
  state: "running" | "ok" | "failed";
  /** The new process, once it exists. */
  pid?: number;
  startedAt: string;
  finishedAt?: string;
  error?: string;
}

/** Outcomes kept in the file: enough for every waiting caller of a burst, since requests during a reload coalesce. */
const KEEP = 16;
/** An error text longer than this is cut: the file stays small and a reader's bound stays far off. */
const MAX_ERROR = 4096;
/** A reader reads at most this much: a real record is a few KB at most (16 × MAX_ERROR, escaped). */
const MAX_BYTES = 1 << 20;
/**
 * Reads of a record caught in the middle of a rewrite, 1 ms apart, before
 * the reader gives up. A daemon rewrites a few times per reload; even one
 * rewriting without pause tears about 1 read in 12 (test/state.test.ts).
 */
const READ_ATTEMPTS = 10;
/** First line of the file: `bun-daemon-state <bytes> <crc32>`, then that many bytes of JSON. */
const HEADER_RE = /^bun-daemon-state (\d{1,8}) ([0-9a-f]{8})$/;

/** `/run/x.pid` → `/run/x.state`; a name not ending in .pid gets `.state` appended. */
export function statePathFor(pidFile: string): string {
  const base = pidFile.slice(pidFile.lastIndexOf("/") + 1);
  return base.length > 4 && base.endsWith(".pid") ? `${pidFile.slice(0, -4)}.state` : `${pidFile}.state`;
}

/** The daemon's handle on its state file. Every write is best effort: it never throws. */
export interface StateWriter {
  /** Where the file is, as the daemon sees it (changed by moveTo). */
  readonly path: string;
  /** Enter `state` (its `since` is now, unless it already was in it). */
  set(state: DaemonState): void;
  /** A reload begins: counts it, enters "reloading" (not when stopping); returns its seq. */
  reloadStarted(): number;
  /** The reload `seq` ended: records its outcome (the last 16 are kept) and, when no other runs, goes back to "running" (not when stopping). */
  reloadFinished(seq: number, ok: boolean, error?: string): void;
  /** The config file in use, or undefined for none. */
  setConfigFile(file: string | undefined): void;
  /**
   * At the privilege drop (root → user): fchown the open file to the user,
   * so readers find it owned by the daemon's user and the user may remove it
   * at the end even from a sticky directory. Never through a path; a failure
   * is ignored (the fd stays writable whatever its owner).
   */
  handOver(uid: number, gid: number): void;
  /** After a chroot: the same file's path inside the root, where close() removes it. */
  moveTo(path: string): void;
  /** An upgrade begins: returns its seq (refused by the caller while one runs). */
  upgradeStarted(): number;
  /** The upgrade's new process exists. */
  upgradePid(pid: number): void;
  /** The upgrade `seq` ended. */
  upgradeFinished(seq: number, ok: boolean, error?: string): void;
  /** A primary's workers now. */
  setWorkers(workers: WorkerRecord[]): void;
  /** Rename the file to `path` (a new daemon's record, written aside, replaces the old one's in one step). */
  promote(path: string): void;
  /** Close without removing: the file now belongs to a new daemon. */
  abandon(): void;
  /** Remove the file if its path still names it (not replaced), close the fd. Idempotent. */
  close(): void;
}

/** Why `st` (from lstat or fstat) at `path` is not a state file. */
function notAStateFile(path: string, st: Stats): string {
  if (st.isSymbolicLink()) {
    let to = "?";
    try {
      to = readlinkSync(path);
    } catch {}
    return `state file ${path} is a symlink to ${to}; state files are never followed (a planted link would redirect the writes): remove it, or choose another --pid-file (the state file lies beside it)`;
  }
  return `state file ${path} is ${kindOf(st)}, not a state file; remove it, or choose another --pid-file (the state file lies beside it)`;
}


function crc(body: Uint8Array): string {
  return (Bun.hash.crc32(body) >>> 0).toString(16).padStart(8, "0");
}

/** The file's bytes for `r`: a header naming the body's length and CRC, so a torn read shows as such. */
function encode(r: StateRecord): Buffer {
  const body = Buffer.from(`${JSON.stringify(r)}\n`);
  return Buffer.concat([Buffer.from(`bun-daemon-state ${body.length} ${crc(body)}\n`), body]);
}

function processStart(pid: number): string {
  const up = uptimeSeconds(pid);
  return new Date(up === undefined ? performance.timeOrigin : Date.now() - up * 1000).toISOString();
}

function stateError(message: string, path: string): DaemonError {
  return new DaemonError("STATE", message, { path });
}

/** lstat, or undefined when nothing is there. */
function lstatOrNone(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw fromNodeError("STATE", "open the state file", err, path);
  }
}

class Writer implements StateWriter {
  private fd: number;
  private where: string;
  private readonly record: StateRecord;
  /** Started, not yet finished reloads: seq → ISO start time. */
  private readonly running = new Map<number, string>();

  constructor(fd: number, path: string, record: StateRecord) {
    this.fd = fd;
    this.where = path;
    this.record = record;
  }

  get path(): string {
    return this.where;
  }

  /** Rewrite the whole record in place: one pwrite at 0, then cut what an older, longer record left. */
  write(): boolean {
    if (this.fd < 0) return false;
    const buf = encode(this.record);
    try {
      if (writeSync(this.fd, buf, 0, buf.length, 0) !== buf.length) return false;
      ftruncateSync(this.fd, buf.length);
      return true;
    } catch {
      return false;
    }
  }

  private enter(state: DaemonState): void {
    if (this.record.state === state) return;
    this.record.state = state;
    this.record.since = new Date().toISOString();
  }

  set(state: DaemonState): void {
    this.enter(state);
    this.write();
  }

  reloadStarted(): number {
    const seq = ++this.record.reloadsStarted;
    this.running.set(seq, new Date().toISOString());
    // Stopping is final: a reload that still runs then does not make the daemon look alive to a probe.
    if (this.record.state !== "stopping") this.enter("reloading");
    this.write();
    return seq;
  }

  reloadFinished(seq: number, ok: boolean, error?: string): void {
    const finishedAt = new Date().toISOString();
    const startedAt = this.running.get(seq) ?? finishedAt;
    this.running.delete(seq);
    const outcome: ReloadOutcome = { seq, startedAt, finishedAt, ok };
    if (error !== undefined) outcome.error = error.length > MAX_ERROR ? `${error.slice(0, MAX_ERROR)}…` : error;
    this.record.reloads.push(outcome);
    if (this.record.reloads.length > KEEP) this.record.reloads.splice(0, this.record.reloads.length - KEEP);
    if (this.running.size === 0 && this.record.state === "reloading") this.enter("running");
    this.write();
  }

  setConfigFile(file: string | undefined): void {
    if (file === undefined) delete this.record.configFile;
    else this.record.configFile = file;
    this.write();
  }

  handOver(uid: number, gid: number): void {
    if (this.fd < 0) return;
    try {
      fchownSync(this.fd, uid, gid);
    } catch {
      // Writes go on through the fd; only the removal from a sticky directory may fail at the end.
    }
  }

  moveTo(path: string): void {
    this.where = path;
  }

  upgradeStarted(): number {
    const seq = (this.record.upgradesStarted ?? 0) + 1;
    this.record.upgradesStarted = seq;
    this.record.upgrade = { seq, state: "running", startedAt: new Date().toISOString() };
    this.write();
    return seq;
  }

  upgradePid(pid: number): void {
    if (this.record.upgrade) this.record.upgrade.pid = pid;
    this.write();
  }

  upgradeFinished(seq: number, ok: boolean, error?: string): void {
    const u = this.record.upgrade;
    if (!u || u.seq !== seq) return;
    u.state = ok ? "ok" : "failed";
    u.finishedAt = new Date().toISOString();
    if (error !== undefined) u.error = error.length > MAX_ERROR ? `${error.slice(0, MAX_ERROR)}…` : error;
    this.write();
  }

  setWorkers(workers: WorkerRecord[]): void {
    this.record.workers = workers;
    this.write();
  }

  promote(path: string): void {
    try {
      renameSync(this.where, path);
      this.where = path;
    } catch {
      // Readers then find the old daemon's record, naming another pid: they say so.
    }
  }

  abandon(): void {
    if (this.fd < 0) return;
    closeFd(this.fd);
    this.fd = -1;
  }

  close(): void {
    // Idempotent: a second close of the number could hit an fd opened since.
    if (this.fd < 0) return;
    if (samePath(this.fd, this.where)) {
      try {
        unlinkSync(this.where);
      } catch {
        // Not ours to remove (a directory the dropped user may not write): readers check the pid anyway.
      }
    }
    closeFd(this.fd);
    this.fd = -1;
  }
}

/** Options of openStateFile. */
export interface OpenStateOptions {
  /** The daemon's name, recorded for readers. */
  name: string;
  /** The daemon's pid (readers accept the record only for the pid the PID file names). */
  pid: number;
  /** The config file in use, if any. */
  configFile?: string;
  /**
   * A uid besides this process's and root that may own an existing file:
   * the user a root start drops to, whose earlier run left the file its own. Default none.
   */
  trustedUid?: number;
}

/**
 * Create, or take over, the state file at `path` and write the first record
 * (state "starting"). Called by the daemon holding the PID file's lock,
 * possibly as root before the drop, so what is already at the path is
 * judged first: never a symlink (O_NOFOLLOW), never anything but a regular
 * file, never one another user owns or may write (root must not write into
 * a file another user planted in /tmp). Throws DaemonError "STATE" naming
 * the path, the errno and what to do.
 */
export function openStateFile(path: string, o: OpenStateOptions): StateWriter {
  const pre = lstatOrNone(path);
  if (pre && !pre.isFile()) throw stateError(notAStateFile(path, pre), path);
  let fd: number;
  try {
    // O_NONBLOCK: a FIFO swapped in after the lstat cannot hang the open.
    fd = openFile(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY, 0o644, "STATE", "open the state file");
  } catch (err) {
    // ELOOP, or EACCES from some kernels when O_CREAT meets a link in a sticky directory.
    const now = lstatOrNone(path);
    if (now && !now.isFile()) throw stateError(notAStateFile(path, now), path);
    throw err;
  }
  let ok = false;
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw stateError(notAStateFile(path, st), path);
    const bad = untrustedOwner("state file", path, st, o.trustedUid);
    if (bad !== undefined) throw stateError(`${bad} (the state file lies beside the PID file: --pid-file moves both)`, path);
    try {
      // Readable by every user (status), whatever the umask was.
      fchmodSync(fd, 0o644);
    } catch {}
    const now = new Date().toISOString();
    const record: StateRecord = { v: 1, name: o.name, pid: o.pid, state: "starting", since: now, startedAt: processStart(o.pid), reloadsStarted: 0, reloads: [] };
    if (o.configFile !== undefined) record.configFile = o.configFile;
    const w = new Writer(fd, path, record);
    const buf = encode(record);
    try {
      writeSync(fd, buf, 0, buf.length, 0);
      ftruncateSync(fd, buf.length);
    } catch (err) {
      throw fromNodeError("STATE", "write the state file", err, path);
    }
    ok = true;
    return w;
  } finally {
    if (!ok) closeFd(fd);
  }
}

/** What readState found: the record, or why there is none to trust (`absent` when no file is there). */
export type StateRead = { ok: true; record: StateRecord } | { ok: false; reason: string; absent?: boolean };

/** Effective uid of a live process, from /proc/PID/status; undefined when it is gone. */
function daemonUid(pid: number): number | undefined {
  try {
    const uid = Number(/^Uid:\s+\d+\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1]);
    return Number.isInteger(uid) ? uid : undefined;
  } catch {
    return undefined;
  }
}

/** Why a reader must not believe the file `st`, or undefined: only the daemon's user or root may have written it. */
function untrustedState(path: string, st: Stats, pid: number, owner: number | undefined): string | undefined {
  const owned = st.uid === 0 || st.uid === owner;
  const writable = (st.mode & 0o022) !== 0;
  if (owned && !writable && st.nlink <= 1) return undefined;
  const mode = (st.mode & 0o7777).toString(8).padStart(4, "0");
  const whose = `owned by ${userName(st.uid)} (uid ${st.uid}), mode ${mode}`;
  const why = !owned
    ? `not by pid ${pid}'s user (${owner === undefined ? "unknown: it is gone" : `${userName(owner)}, uid ${owner}`}) or root`
    : writable
      ? `writable by ${st.mode & 0o002 ? "every user" : "its group"}`
      : `it has ${st.nlink} hard links`;
  return `state file ${path} is ${whose}: ${why}, so another user may have written it; not trusting it (remove it: the daemon writes a fresh one when it starts)`;
}

/** The file's content from offset 0, up to MAX_BYTES + 1 (so a larger one shows as such). */
function readAll(fd: number): Buffer {
  const chunks: Buffer[] = [];
  let total = 0;
  while (total <= MAX_BYTES) {
    const buf = Buffer.allocUnsafe(Math.min(65536, MAX_BYTES + 1 - total));
    const n = readSync(fd, buf, 0, buf.length, total);
    if (n <= 0) break;
    chunks.push(buf.subarray(0, n));
    total += n;
  }
  return Buffer.concat(chunks, total);
}

const STATES: readonly string[] = ["starting", "running", "reloading", "stopping"];
const isInt = (x: unknown, min: number): x is number => typeof x === "number" && Number.isSafeInteger(x) && x >= min;
const isStr = (x: unknown): x is string => typeof x === "string";

function isOutcome(x: unknown): x is ReloadOutcome {
  if (typeof x !== "object" || x === null) return false;
  const o = x as Record<string, unknown>;
  return isInt(o.seq, 1) && isStr(o.startedAt) && isStr(o.finishedAt) && typeof o.ok === "boolean" && (o.error === undefined || isStr(o.error));
}

function isUpgrade(x: unknown): x is UpgradeRecord {
  if (typeof x !== "object" || x === null) return false;
  const u = x as Record<string, unknown>;
  return isInt(u.seq, 1) && (u.state === "running" || u.state === "ok" || u.state === "failed") && (u.pid === undefined || isInt(u.pid, 1)) && isStr(u.startedAt) &&
    (u.finishedAt === undefined || isStr(u.finishedAt)) && (u.error === undefined || isStr(u.error));
}

function isWorker(x: unknown): x is WorkerRecord {
  if (typeof x !== "object" || x === null) return false;
  const w = x as Record<string, unknown>;
  return isInt(w.id, 1) && isInt(w.pid, 1) && (w.state === "starting" || w.state === "running" || w.state === "stopping") && isStr(w.startedAt) && isInt(w.restarts, 0);
}

function isRecord(x: unknown): x is StateRecord {
  if (typeof x !== "object" || x === null) return false;
  const r = x as Record<string, unknown>;
  return (
    r.v === 1 && isStr(r.name) && isInt(r.pid, 1) && isStr(r.state) && STATES.includes(r.state) && isStr(r.since) && isStr(r.startedAt) &&
    (r.configFile === undefined || isStr(r.configFile)) && isInt(r.reloadsStarted, 0) && Array.isArray(r.reloads) && r.reloads.every(isOutcome) &&
    (r.upgradesStarted === undefined || isInt(r.upgradesStarted, 0)) && (r.upgrade === undefined || isUpgrade(r.upgrade)) &&
    (r.workers === undefined || (Array.isArray(r.workers) && r.workers.every(isWorker)))
  );
}

/** The record in `buf`, or why there is none: torn (retry) or wrong (do not). */
function decode(buf: Buffer): { record: StateRecord } | { why: string; torn: boolean } {
  if (buf.length === 0) return { why: "is empty", torn: true };
  if (buf.length > MAX_BYTES) return { why: `holds more than ${MAX_BYTES} bytes, which is no state file`, torn: false };
  const nl = buf.indexOf(10);
  const header = HEADER_RE.exec(nl < 0 || nl > 64 ? "" : buf.toString("latin1", 0, nl));
  // A file still being created may hold half a header: read it again like a torn body.
  if (!header) return { why: "does not start with a state file header", torn: true };
  const body = buf.subarray(nl + 1, nl + 1 + Number(header[1]));
  if (body.length !== Number(header[1]) || crc(body) !== header[2]) return { why: "holds an incomplete record (torn, or cut short)", torn: true };
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString("utf8"));
  } catch {
    return { why: "holds a record that is not JSON", torn: false };
  }
  return isRecord(parsed) ? { record: parsed } : { why: "holds a record of another format (a different bun-daemon version?)", torn: false };
}

/**
 * Read and validate the state file of pid `pid`: never through a symlink,
 * never blocking (O_NOFOLLOW|O_NONBLOCK, regular files only), only a file
 * owned by the daemon's user (its effective uid, from /proc/PID/status) or
 * root and writable by its owner only, and only a record of that pid. A
 * record caught mid-rewrite is read again (READ_ATTEMPTS times, 1 ms
 * apart). Never throws.
 */
export function readState(path: string, pid: number): StateRead {
  try {
    const pre = lstatSync(path, { throwIfNoEntry: false });
    if (pre === undefined) return { ok: false, absent: true, reason: `no state file at ${path}` };
    if (!pre.isFile()) return { ok: false, reason: notAStateFile(path, pre) };
    let fd: number;
    try {
      fd = openFile(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY, 0, "STATE", "read the state file");
    } catch (err) {
      const e = err as DaemonError;
      if (e.errnoName === "ENOENT") return { ok: false, absent: true, reason: `no state file at ${path}` };
      const now = lstatSync(path, { throwIfNoEntry: false });
      if (now && !now.isFile()) return { ok: false, reason: notAStateFile(path, now) };
      return { ok: false, reason: `cannot read state file ${path}: ${e.errnoName ?? errorText(err)}` };
    }
    try {
      const st = fstatSync(fd);
      if (!st.isFile()) return { ok: false, reason: notAStateFile(path, st) };
      const bad = untrustedState(path, st, pid, daemonUid(pid));
      if (bad !== undefined) return { ok: false, reason: bad };
      for (let attempt = 1; ; attempt++) {
        const got = decode(readAll(fd));
        if ("record" in got) {
          if (got.record.pid !== pid) return { ok: false, reason: `state file ${path} is pid ${got.record.pid}'s, not pid ${pid}'s (left by an earlier run, or this daemon publishes none)` };
          return { ok: true, record: got.record };
        }
        if (!got.torn || attempt >= READ_ATTEMPTS) return { ok: false, reason: `state file ${path} ${got.why}${got.torn ? `, after ${attempt} reads` : ""}: unparsable` };
        Bun.sleepSync(1);
      }
    } finally {
      closeFd(fd);
    }
  } catch (err) {
    return { ok: false, reason: `cannot read state file ${path}: ${errorText(err)}` };
  }
}
