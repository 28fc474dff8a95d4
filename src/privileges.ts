/**
 * Least privilege: rlimits, the drop to a user (chroot, supplementary groups,
 * gid, uid, no_new_privs) and its verification on every thread. Bun runs
 * several threads before the program's first line; glibc's setuid/setgid/
 * setgroups reach them all (its internal signal 33), and the verification
 * reads each task's /proc status to prove it, rather than trusting that.
 */
import { chownSync, closeSync, fchownSync, fstatSync, lstatSync, mkdirSync, openSync, readdirSync, readFileSync, realpathSync, statSync, constants as fsc } from "node:fs";
import { basename, dirname, join } from "node:path";
import { lookupUserSpec } from "./environment.ts";
import { DaemonError, errnoName, fromNodeError } from "./errors.ts";
import {
  enterChroot, groupList, lookupGroup, RLIMITS, setGid, setGroups, setNoNewPrivs, setRlimit, setUid, syncNoNewPrivs, trySetUid,
} from "./ffi.ts";
import type { Mode } from "./types.ts";

/** Resource limits: soft = hard = the value (Infinity: unlimited). */
export type Rlimits = Partial<Record<keyof typeof RLIMITS, number>>;

export interface PrivilegeOptions {
  user?: string | number;
  group?: string | number;
  noNewPrivileges?: boolean;
  chroot?: string;
  rlimits?: Rlimits;
  /** The daemon's log file: handed to the user at the drop. */
  logFile?: string;
}

/** Who the daemon becomes. */
export interface Target {
  name: string;
  uid: number;
  gid: number;
  /** Supplementary groups, as initgroups(3) sets them (the gid included). */
  groups: number[];
}

const fail = (message: string) => new DaemonError("PRIVILEGES", message);

/** Resolve user and group through NSS. Throws PRIVILEGES naming what is unknown. */
export function resolveTarget(user: string | number, group?: string | number): Target {
  const u = lookupUserSpec(user);
  if (!u.entry) {
    throw fail(`drop privileges: resolve user: unknown user ${JSON.stringify(String(user))}${u.errno ? ` (getpwnam: ${errnoName(u.errno)})` : ""}`);
  }
  let gid = u.entry.gid;
  if (group !== undefined) {
    const g = typeof group === "string" && /^\d+$/.test(group) && !lookupGroup(group).entry ? lookupGroup(Number(group)) : lookupGroup(group);
    if (!g.entry) throw fail(`drop privileges: resolve group: unknown group ${JSON.stringify(String(group))}${g.errno ? ` (getgrnam: ${errnoName(g.errno)})` : ""}`);
    gid = g.entry.gid;
  }
  return { name: u.entry.name, uid: u.entry.uid, gid, groups: [...new Set(groupList(u.entry.name, gid))].sort((a, b) => a - b) };
}

/** Whether this process already is `t` (then there is nothing to drop). */
export function isAlready(t: Target): boolean {
  return process.getuid!() === t.uid && process.geteuid!() === t.uid && process.getgid!() === t.gid && process.getegid!() === t.gid;
}

/**
 * In the launcher, before anything is locked or forked: a user that does
 * not exist, or a non-root launcher asking for someone else, fails here
 * with one line rather than in a detached daemon.
 */
export function checkLauncher(o: PrivilegeOptions): Target | undefined {
  if (o.chroot !== undefined) {
    checkChrootDir(o.chroot);
    if (!hasCapability(CAP_SYS_CHROOT)) throw fail(`drop privileges: chroot: this process (uid ${process.geteuid!()}) lacks CAP_SYS_CHROOT, so it cannot chroot to ${o.chroot} (EPERM): start it as root`);
  }
  if (o.user === undefined) {
    if (o.group !== undefined) throw fail("drop privileges: group is set without user; give user too");
    return undefined;
  }
  const t = resolveTarget(o.user, o.group);
  if (process.geteuid!() !== 0 && !isAlready(t)) {
    throw fail(`drop privileges to ${t.name}: this process runs as uid ${process.geteuid!()}, not root, so it cannot become uid ${t.uid} (EPERM): start it as root${t.uid === 0 ? "" : ` or as ${t.name}`}`);
  }
  return t;
}

const CAP_SYS_CHROOT = 18;

/** Whether the effective capability set (CapEff in /proc/self/status) holds `cap`. */
function hasCapability(cap: number): boolean {
  try {
    const hex = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync("/proc/self/status", "utf8"))?.[1];
    if (hex !== undefined) return ((BigInt(`0x${hex}`) >> BigInt(cap)) & 1n) === 1n;
  } catch {}
  return process.geteuid!() === 0;
}

function checkChrootDir(dir: string): void {
  let st;
  try {
    st = statSync(dir);
  } catch (err) {
    throw fromNodeError("PRIVILEGES", "drop privileges: chroot", err, dir);
  }
  if (!st.isDirectory()) throw fail(`drop privileges: chroot: ${dir} is not a directory (ENOTDIR)`);
}

/** The daemon's own files, as paths outside the root and (after the chroot) inside it. */
export interface RootPaths {
  pidFile: string;
  logFile?: string;
}

/**
 * Where the PID file and the log file are once the daemon is inside
 * `root`: each must lie under it, or after the chroot the daemon could
 * neither remove its PID file on stop nor reopen its log after logrotate
 * (BIND's `named -t` reads its paths inside the root the same way).
 * Directories are resolved (symlinks included) before the chroot, so the
 * inside path names the very file the outside one does. Throws PRIVILEGES
 * naming the file and a path that would work.
 */
export function rootPaths(root: string, paths: RootPaths): RootPaths {
  let realRoot: string;
  try {
    realRoot = realpathSync(root);
  } catch (err) {
    throw fromNodeError("PRIVILEGES", "drop privileges: chroot", err, root);
  }
  const inside = (file: string, what: string, flag: string): string => {
    let dir: string;
    try {
      dir = realpathSync(dirname(file));
    } catch (err) {
      throw fromNodeError("PRIVILEGES", `drop privileges: chroot: the ${what}'s directory`, err, dirname(file));
    }
    const rel = dir === realRoot ? "" : dir.startsWith(`${realRoot === "/" ? "" : realRoot}/`) ? dir.slice(realRoot === "/" ? 0 : realRoot.length) : undefined;
    if (rel === undefined) {
      throw fail(`drop privileges: chroot: the ${what} ${file} is outside the chroot ${root}: after the chroot the daemon could not ${what === "log file" ? "reopen it after logrotate" : "remove it on stop"}; put it inside, e.g. ${flag} ${join(root, what === "log file" ? "var/log" : "run", basename(file))}`);
    }
    return `${rel}/${basename(file)}`;
  };
  return {
    pidFile: inside(paths.pidFile, "PID file", "--pid-file"),
    ...(paths.logFile === undefined ? {} : { logFile: inside(paths.logFile, "log file", "--log-file") }),
  };
}

/** mkdir 0755 unless it exists, then refuse anything but a real directory there (a symlink is never followed). */
function ensureDir(dir: string, step: string): void {
  try {
    mkdirSync(dir, { mode: 0o755 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw fromNodeError("PRIVILEGES", step, err, dir);
  }
  if (!lstatSync(dir).isDirectory()) throw fail(`${step}: ${dir} exists and is not a directory (a symlink is never followed); remove it`);
}

/**
 * The runtime directory of the default PID file when `user` is set:
 * `/run/<name>/`, 0755, owned by the user (as systemd's RuntimeDirectory=),
 * so the daemon can still remove its PID file after the drop. A symlink or a
 * non-directory there is refused: root must not chown what it points at.
 */
export function prepareRuntimeDir(pidFile: string, t: Target): void {
  const dir = dirname(pidFile);
  ensureDir(dir, "create the runtime directory");
  try {
    chownSync(dir, t.uid, t.gid);
  } catch (err) {
    throw fromNodeError("PRIVILEGES", "chown the runtime directory", err, dir);
  }
}

/**
 * Hand the log file to the user at the drop: the launcher (root) created it,
 * the daemon keeps writing through its open fd, and after logrotate the
 * daemon itself creates the next one, which is then the user's anyway. Only
 * a regular file root owns (the one just created) is chowned, never through
 * a symlink: a file someone else owns is left alone.
 */
function handOverLogFile(path: string, t: Target): void {
  let fd: number;
  try {
    fd = openSync(path, fsc.O_WRONLY | fsc.O_APPEND | fsc.O_NOFOLLOW | fsc.O_NONBLOCK | fsc.O_NOCTTY);
  } catch (err) {
    throw fromNodeError("PRIVILEGES", `drop privileges to ${t.name}: hand the log file over`, err, path);
  }
  try {
    const st = fstatSync(fd);
    if (st.isFile() && st.uid === 0) fchownSync(fd, t.uid, t.gid);
  } catch (err) {
    throw fromNodeError("PRIVILEGES", `drop privileges to ${t.name}: chown the log file`, err, path);
  } finally {
    closeSync(fd);
  }
}

/**
 * Everything the launcher does for `user` and `chroot` before it locks or
 * forks: check the target (unknown user or group, non-root launcher,
 * missing chroot), create the default PID file's directory (with `chroot`,
 * `<root>/run` first; with `user`, owned by the user), and with `chroot`
 * check that the PID file and the log file lie inside the root.
 * Throws PRIVILEGES.
 */
export function prepareLaunch(o: PrivilegeOptions & { pidFile: string; pidFileIsDefault: boolean }): void {
  const t = checkLauncher(o);
  if (o.chroot !== undefined && o.pidFileIsDefault) ensureDir(join(o.chroot, "run"), "drop privileges: chroot: create the run directory");
  if (t && !isAlready(t) && o.pidFileIsDefault) prepareRuntimeDir(o.pidFile, t);
  if (o.chroot !== undefined) rootPaths(o.chroot, { pidFile: o.pidFile, ...(o.logFile === undefined ? {} : { logFile: o.logFile }) });
}

/** setrlimit each of `rlimits`; `core` is 0 in daemon mode unless given (a core dump holds the daemon's secrets). */
export function applyRlimits(rlimits: Rlimits | undefined, mode: Mode): void {
  const all: Rlimits = { ...(mode === "daemon" ? { core: 0 } : {}), ...rlimits };
  for (const [name, value] of Object.entries(all)) {
    const resource = RLIMITS[name as keyof typeof RLIMITS];
    if (resource === undefined) throw new DaemonError("USAGE", `rlimits.${name} is not a resource limit; use one of ${Object.keys(RLIMITS).join(", ")}`);
    if (typeof value !== "number" || !(value === Infinity || (Number.isInteger(value) && value >= 0))) {
      throw new DaemonError("USAGE", `rlimits.${name} must be a whole number >= 0 or Infinity, not ${String(value)}`);
    }
    setRlimit(resource, value, `set rlimits.${name}`);
  }
}

/** What a task's status says. */
interface TaskIds {
  uid: number[];
  gid: number[];
  groups: number[];
  capEff: string;
  capPrm: string;
  noNewPrivs: string;
}

function taskIds(status: string): TaskIds {
  const field = (k: string) => new RegExp(`^${k}:[ \\t]*(.*)$`, "m").exec(status)?.[1]?.trim() ?? "";
  const nums = (k: string) => field(k).split(/\s+/).filter((x) => x !== "").map(Number);
  return { uid: nums("Uid"), gid: nums("Gid"), groups: nums("Groups").sort((a, b) => a - b), capEff: field("CapEff"), capPrm: field("CapPrm"), noNewPrivs: field("NoNewPrivs") };
}

/**
 * Prove the drop on every task: Uid and Gid (real, effective, saved, fs),
 * Groups, empty CapEff/CapPrm, NoNewPrivs when asked, and setuid(0) refused
 * with EPERM. Throws PRIVILEGES naming the thread and the field.
 */
export function verifyDrop(t: Target, noNewPrivs: boolean): void {
  const step = `drop privileges to ${t.name}: verify`;
  let tasks: string[];
  try {
    tasks = readdirSync("/proc/self/task");
  } catch (err) {
    throw fromNodeError("PRIVILEGES", `${step} (with chroot, the directory needs /proc mounted inside)`, err, "/proc/self/task");
  }
  const want = (a: number[], v: number) => a.length === 4 && a.every((x) => x === v);
  for (const tid of tasks) {
    let status: string;
    try {
      status = readFileSync(`/proc/self/task/${tid}/status`, "utf8");
    } catch (err) {
      // A thread that ended between the listing and the read has no ids left to check.
      if ((err as NodeJS.ErrnoException).code === "ENOENT") continue;
      throw fromNodeError("PRIVILEGES", step, err, `/proc/self/task/${tid}/status`);
    }
    const s = taskIds(status);
    const bad = (what: string) => fail(`${step}: thread ${tid} ${what}`);
    if (!want(s.uid, t.uid)) throw bad(`has Uid ${s.uid.join(" ")}, not ${t.uid} four times`);
    if (!want(s.gid, t.gid)) throw bad(`has Gid ${s.gid.join(" ")}, not ${t.gid} four times`);
    if (s.groups.join(" ") !== t.groups.join(" ")) throw bad(`has Groups ${s.groups.join(" ") || "(none)"}, not ${t.groups.join(" ")}`);
    if (t.uid !== 0 && !/^0+$/.test(s.capEff)) throw bad(`has CapEff ${s.capEff}, not empty`);
    if (t.uid !== 0 && !/^0+$/.test(s.capPrm)) throw bad(`has CapPrm ${s.capPrm}, not empty`);
    if (noNewPrivs && s.noNewPrivs !== "1") throw bad(`has NoNewPrivs ${s.noNewPrivs || "(missing)"}, not 1`);
  }
  if (t.uid !== 0) {
    const e = trySetUid(0);
    if (e === 0) throw fail(`${step}: setuid(0) succeeded: the drop can be undone`);
    if (errnoName(e) !== "EPERM") throw fail(`${step}: setuid(0) failed with ${errnoName(e)}, not EPERM`);
  }
}

/**
 * The drop, in the order that works: look the user up (NSS needs /etc),
 * hand the log file over, chroot (needs CAP_SYS_CHROOT, so before setuid), supplementary groups,
 * gid, uid (each on every thread), no_new_privs (on every thread), then the
 * verification. `atDrop` runs after the chroot and before the ids change,
 * with the user about to be dropped to (the caller moves its paths inside
 * the root and hands its files over). Returns the user dropped to, or
 * undefined when none was set.
 */
export function drop(o: PrivilegeOptions, atDrop?: (t: Target | undefined) => void): Target | undefined {
  if (o.user === undefined) {
    if (o.group !== undefined) throw fail("drop privileges: group is set without user; give user too");
    if (o.chroot === undefined && !o.noNewPrivileges) return undefined;
  }
  const t = o.user === undefined ? undefined : resolveTarget(o.user, o.group);
  const who = t ? ` to ${t.name}` : "";
  if (t && !isAlready(t)) {
    // Before the chroot hides the path, and while still root.
    if (o.logFile !== undefined) handOverLogFile(o.logFile, t);
  }
  if (o.chroot !== undefined) {
    checkChrootDir(o.chroot);
    enterChroot(o.chroot, `drop privileges${who}: chroot`);
    // Without it the cwd stays outside the new root: the classic escape.
    process.chdir("/");
  }
  // Still root, and (with a chroot) before any later step can fail: a failed start still removes its PID file.
  atDrop?.(t && !isAlready(t) ? t : undefined);
  if (t && !isAlready(t)) {
    setGroups(t.groups, `drop privileges${who}: initgroups`);
    setGid(t.gid, `drop privileges${who}: setgid`);
    setUid(t.uid, `drop privileges${who}: setuid`);
  }
  const nnp = o.noNewPrivileges ?? o.user !== undefined;
  if (nnp) {
    setNoNewPrivs(`drop privileges${who}: prctl(PR_SET_NO_NEW_PRIVS)`);
    syncNoNewPrivs(`drop privileges${who}: no_new_privs on every thread`);
  }
  if (t) verifyDrop(t, nnp);
  return t;
}
