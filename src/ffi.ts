/**
 * The one place bun-daemon talks to libc. Everything is loaded on first use
 * (never at import), every symbol is typed here, and errno is read right
 * after the call that failed.
 */
import { CString, dlopen, FFIType as T, ptr, read, toArrayBuffer, type Pointer } from "bun:ffi";
import { readFileSync } from "node:fs";
import { constants as osConstants } from "node:os";
import { DaemonError, errorText, syscallError, type DaemonErrorCode } from "./errors.ts";

const symbols = {
  fork: { args: [], returns: T.i32 },
  setsid: { args: [], returns: T.i32 },
  execve: { args: [T.ptr, T.ptr, T.ptr], returns: T.i32 },
  _exit: { args: [T.i32], returns: T.void },
  // ssize_t declared i32: an i64 return is a BigInt, an allocation, and the
  // forked children must not allocate (counts here stay far below 2^31).
  write: { args: [T.i32, T.ptr, T.u64], returns: T.i32 },
  read: { args: [T.i32, T.ptr, T.u64], returns: T.i32 },
  close: { args: [T.i32], returns: T.i32 },
  dup2: { args: [T.i32, T.i32], returns: T.i32 },
  dup3: { args: [T.i32, T.i32, T.i32], returns: T.i32 },
  pipe2: { args: [T.ptr, T.i32], returns: T.i32 },
  // fcntl, open and prctl are variadic in C; the fixed-arity prototypes match
  // the register ABI on x86-64 and aarch64 Linux for integer arguments.
  fcntl: { args: [T.i32, T.i32, T.i32], returns: T.i32 },
  open: { args: [T.ptr, T.i32, T.u32], returns: T.i32 },
  prctl: { args: [T.i32, T.ptr, T.u64, T.u64, T.u64], returns: T.i32 },
  flock: { args: [T.i32, T.i32], returns: T.i32 },
  umask: { args: [T.u32], returns: T.u32 },
  signal: { args: [T.i32, T.ptr], returns: T.ptr },
  sigprocmask: { args: [T.i32, T.ptr, T.ptr], returns: T.i32 },
  close_range: { args: [T.u32, T.u32, T.i32], returns: T.i32 },
  madvise: { args: [T.u64, T.u64, T.i32], returns: T.i32 },
  waitpid: { args: [T.i32, T.ptr, T.i32], returns: T.i32 },
  waitid: { args: [T.i32, T.i32, T.ptr, T.i32], returns: T.i32 },
  poll: { args: [T.ptr, T.u64, T.i32], returns: T.i32 },
  kill: { args: [T.i32, T.i32], returns: T.i32 },
  socket: { args: [T.i32, T.i32, T.i32], returns: T.i32 },
  sendto: { args: [T.i32, T.ptr, T.u64, T.i32, T.ptr, T.u32], returns: T.i64 },
  // sd_pid_notify_with_fds: FDSTORE=1 passes the listeners to systemd's fd store.
  sendmsg: { args: [T.i32, T.ptr, T.i32], returns: T.i64 },
  // A worker's channel to its primary (src/workers.ts): listeners come back as SCM_RIGHTS.
  socketpair: { args: [T.i32, T.i32, T.i32, T.ptr], returns: T.i32 },
  recvmsg: { args: [T.i32, T.ptr, T.i32], returns: T.i64 },
  // The syslog transport (src/syslog.ts): one connect, then a send per line.
  // send's ssize_t is declared i32 as for write: no BigInt per line (a datagram stays under 8 KiB).
  connect: { args: [T.i32, T.ptr, T.u32], returns: T.i32 },
  send: { args: [T.i32, T.ptr, T.u64, T.i32], returns: T.i32 },
  // Listening sockets the toolkit owns and hands over (src/listeners.ts, src/serve.ts).
  bind: { args: [T.i32, T.ptr, T.u32], returns: T.i32 },
  listen: { args: [T.i32, T.i32], returns: T.i32 },
  setsockopt: { args: [T.i32, T.i32, T.i32, T.ptr, T.u32], returns: T.i32 },
  getsockopt: { args: [T.i32, T.i32, T.i32, T.ptr, T.ptr], returns: T.i32 },
  getsockname: { args: [T.i32, T.ptr, T.ptr], returns: T.i32 },
  epoll_ctl: { args: [T.i32, T.i32, T.i32, T.ptr], returns: T.i32 },
  inet_pton: { args: [T.i32, T.ptr, T.ptr], returns: T.i32 },
  inet_ntop: { args: [T.i32, T.ptr, T.ptr, T.u32], returns: T.ptr },
  // Variadic in C; for pidfd_open/pidfd_send_signal, which glibc < 2.36 and musl do not wrap.
  syscall: { args: [T.i64, T.i64, T.i64, T.i64, T.i64], returns: T.i64 },
  clock_gettime: { args: [T.i32, T.ptr], returns: T.i32 },
  // Privilege drop (src/privileges.ts). The user and group lookups go
  // through NSS, so a user from LDAP or systemd-userdb resolves as for login.
  getpwnam: { args: [T.ptr], returns: T.ptr },
  getpwuid: { args: [T.u32], returns: T.ptr },
  getgrnam: { args: [T.ptr], returns: T.ptr },
  getgrgid: { args: [T.u32], returns: T.ptr },
  getgrouplist: { args: [T.ptr, T.u32, T.ptr, T.ptr], returns: T.i32 },
  // glibc and musl run these on every thread of the process (glibc: its
  // internal signal 33), so a Bun runtime thread cannot keep the old ids.
  setgroups: { args: [T.u64, T.ptr], returns: T.i32 },
  setgid: { args: [T.u32], returns: T.i32 },
  setuid: { args: [T.u32], returns: T.i32 },
  chroot: { args: [T.ptr], returns: T.i32 },
  setrlimit: { args: [T.i32, T.ptr], returns: T.i32 },
  __errno_location: { args: [], returns: T.ptr },
} as const;

type Lib = ReturnType<typeof dlopen<typeof symbols>>["symbols"];
type Name = keyof typeof symbols;

let lib: Lib | undefined;
let errnoPtr: Pointer | undefined;

/**
 * Find the libc this process already mapped, by name: glibc's `libc.so.6`
 * or musl's `ld-musl-<arch>.so.1`. (`libc.so` is a linker script on glibc.)
 */
export function libcPath(): string {
  if (process.platform !== "linux") {
    throw new DaemonError("UNSUPPORTED_PLATFORM", `bun-daemon supports Linux only (this is ${process.platform})`);
  }
  let maps: string;
  try {
    maps = readFileSync("/proc/self/maps", "utf8");
  } catch (err) {
    throw new DaemonError("UNSUPPORTED_PLATFORM", "cannot read /proc/self/maps: is /proc mounted?", { cause: err });
  }
  for (const line of maps.split("\n")) {
    const path = line.slice(line.indexOf("/"));
    if (line.includes("/") && /\/(libc\.so\.6|ld-musl-[^/]+\.so\.1)$/.test(path)) return path;
  }
  throw new DaemonError("UNSUPPORTED_PLATFORM", "no libc.so.6 or ld-musl found in /proc/self/maps");
}

/**
 * The libc symbols, each bound on first use: binding one costs a compiled
 * trampoline (about 40 µs), and `status` needs a handful of the 35. The
 * first call finds libc and fails with LIBC or UNSUPPORTED_PLATFORM; code
 * that must not bind after a fork (the launcher's children) reads every
 * symbol it calls before forking.
 */
export function libc(): Lib {
  if (lib) return lib;
  const path = libcPath();
  const bound: Partial<Record<Name, unknown>> = {};
  const bind = (name: Name) => {
    try {
      return (bound[name] = dlopen(path, { [name]: symbols[name] } as Pick<typeof symbols, Name>).symbols[name]);
    } catch (err) {
      throw new DaemonError("LIBC", `cannot load ${name} from ${path}: ${errorText(err)}`, { path, cause: err });
    }
  };
  const table = {} as Lib;
  for (const name of Object.keys(symbols) as Name[]) {
    Object.defineProperty(table, name, { enumerable: true, get: () => bound[name] ?? bind(name) });
  }
  errnoPtr = table.__errno_location() as Pointer;
  lib = table;
  return lib;
}

/** errno of the calling (main) thread; read it right after the failing call. */
export function errno(): number {
  libc();
  return read.i32(errnoPtr!, 0);
}

/** The address errno lives at, for code that must read it without calls. */
export function errnoAddress(): Pointer {
  libc();
  return errnoPtr!;
}

/** A NUL-terminated copy of `s`; keep the buffer referenced while its pointer is in use. */
export function cstr(s: string): Buffer {
  return Buffer.from(`${s}\0`, "utf8");
}

/** Throw a DaemonError with errno if `ret` is negative; otherwise return it. */
function check(ret: number, code: DaemonErrorCode, step: string, syscall: string, path?: string): number {
  if (ret < 0) throw syscallError(code, step, syscall, errno(), path);
  return ret;
}

// Linux constants (generic ABI: x86-64, aarch64, riscv64, arm).
export const O_RDONLY = 0;
export const O_WRONLY = 1;
export const O_RDWR = 2;
export const O_CREAT = 0o100;
export const O_NOCTTY = 0o400;
export const O_APPEND = 0o2000;
export const O_NONBLOCK = 0o4000;
export const O_CLOEXEC = 0o2000000;
export const O_NOFOLLOW = 0o400000;
export const O_EXCL = 0o200;
export const O_DIRECTORY = 0o200000;
const F_GETFD = 1;
const F_SETFD = 2;
const F_GETFL = 3;
const F_SETFL = 4;
const FD_CLOEXEC = 1;
export const F_DUPFD_CLOEXEC = 1030;
export const LOCK_SH = 1;
export const LOCK_EX = 2;
export const LOCK_NB = 4;
export const EINTR = 4;
export const ESRCH = 3;
export const EWOULDBLOCK = 11;
export const SIG_SETMASK = 2;
export const MADV_DOFORK = 11;
export const CLOSE_RANGE_CLOEXEC = 4;
export const POLLIN = 1;
export const POLLERR = 8;
export const POLLHUP = 0x10;
const PR_SET_NAME = 15;
const PR_SET_CHILD_SUBREAPER = 36;

/** open(2); returns the fd or throws with the path and errno name. */
export function openFile(path: string, flags: number, mode: number, code: DaemonErrorCode, step: string): number {
  const p = cstr(path);
  return check(libc().open(ptr(p), flags | O_CLOEXEC, mode), code, step, "open", path);
}

/** close(2), ignoring errors: there is nothing useful to do about them. */
export function closeFd(fd: number): void {
  libc().close(fd);
}

/** flock(2). Returns true when taken, false when another holder has it (EWOULDBLOCK). */
export function tryLock(fd: number, op: number, path: string, code: DaemonErrorCode = "PIDFILE_OPEN"): boolean {
  for (;;) {
    if (libc().flock(fd, op | LOCK_NB) === 0) return true;
    const e = errno();
    if (e === EWOULDBLOCK) return false;
    if (e !== EINTR) throw syscallError(code, "lock PID file", "flock", e, path);
  }
}

/** pipe2(2) with O_CLOEXEC: [readEnd, writeEnd]. */
export function pipe(step: string): [number, number] {
  const fds = new Int32Array(2);
  check(libc().pipe2(ptr(fds), O_CLOEXEC), "PIPE", step, "pipe2");
  return [fds[0]!, fds[1]!];
}

/** Duplicate `fd` to the lowest free number >= min, close-on-exec. */
export function dupAbove(fd: number, min: number): number {
  return check(libc().fcntl(fd, F_DUPFD_CLOEXEC, min), "PIPE", "move descriptor", "fcntl");
}

export function setCloexec(fd: number, on: boolean): void {
  const l = libc();
  const flags = l.fcntl(fd, F_GETFD, 0);
  if (flags < 0) return;
  l.fcntl(fd, F_SETFD, on ? flags | FD_CLOEXEC : flags & ~FD_CLOEXEC);
}

/** Set FD_CLOEXEC on `fd`; returns 0, or the errno (EBADF: `fd` is not open). */
export function markCloexec(fd: number): number {
  const l = libc();
  const flags = l.fcntl(fd, F_GETFD, 0);
  if (flags < 0) return errno();
  if (flags & FD_CLOEXEC) return 0;
  return l.fcntl(fd, F_SETFD, flags | FD_CLOEXEC) < 0 ? errno() : 0;
}

export function setNonblock(fd: number): void {
  const l = libc();
  const flags = l.fcntl(fd, F_GETFL, 0);
  if (flags >= 0) l.fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

/** Clear O_NONBLOCK on an fd (best effort). */
export function clearNonblock(fd: number): void {
  const l = libc();
  const flags = l.fcntl(fd, F_GETFL, 0);
  if (flags >= 0) l.fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
}

/** dup2(2); throws on failure. */
export function dup2(from: number, to: number, step: string): void {
  check(libc().dup2(from, to), "STAGE", step, "dup2");
}

/** Whether `fd` is close-on-exec; undefined when it is not open. */
export function isCloexec(fd: number): boolean | undefined {
  const flags = libc().fcntl(fd, F_GETFD, 0);
  return flags < 0 ? undefined : (flags & FD_CLOEXEC) !== 0;
}

/**
 * Point `to` at what `from` is, keeping `to`'s close-on-exec flag: dup2(2)
 * always clears it, which would leak a private fd into every program spawned.
 */
export function redirectFd(from: number, to: number, step: string): void {
  const cloexec = isCloexec(to) ?? false;
  check(libc().dup3(from, to, cloexec ? O_CLOEXEC : 0), "STAGE", step, "dup3");
}

/** write(2) of the whole buffer, retrying short writes and EINTR. False on error (EPIPE, EBADF…). */
export function writeAll(fd: number, data: Uint8Array): boolean {
  const l = libc();
  let off = 0;
  while (off < data.length) {
    const n = l.write(fd, ptr(data, off), data.length - off);
    if (n < 0) {
      if (errno() === EINTR) continue;
      return false;
    }
    off += n;
  }
  return true;
}

/** read(2) into buf: bytes read, 0 at EOF, -errno on error. */
export function readInto(fd: number, buf: Uint8Array): number {
  for (;;) {
    const n = libc().read(fd, ptr(buf), buf.length);
    if (n >= 0) return n;
    const e = errno();
    if (e !== EINTR) return -e;
  }
}

/**
 * poll(2) on `fds` for input (timeout -1: no timeout). Returns the revents for each fd (0 when
 * nothing happened); an empty array on timeout. EINTR counts as a timeout
 * of zero length so the caller re-checks its deadline.
 */
export function pollIn(fds: number[], timeoutMs: number): number[] {
  const buf = new Int32Array(fds.length * 2);
  const view = new Int16Array(buf.buffer);
  fds.forEach((fd, i) => {
    buf[i * 2] = fd;
    view[i * 4 + 2] = POLLIN;
  });
  const n = libc().poll(ptr(buf), fds.length, timeoutMs < 0 ? -1 : Math.min(timeoutMs, 2 ** 31 - 1));
  if (n <= 0) return [];
  return fds.map((_, i) => view[i * 4 + 3]!);
}

/**
 * Reap direct child `pid` if it has exited (waitpid WNOHANG): true when it
 * was reaped or is not our child any more, false while it still runs.
 */
export function reapChild(pid: number): boolean {
  const WNOHANG = 1;
  const status = new Int32Array(1);
  const l = libc();
  for (;;) {
    const r = l.waitpid(pid, ptr(status), WNOHANG);
    if (r === 0) return false;
    if (r > 0 || errno() !== EINTR) return true;
  }
}

export const SIG_BLOCK = 0;

/** A sigset_t (128 bytes) with the given signals set. */
export function sigset(signals: number[]): Uint8Array {
  const set = new Uint8Array(128);
  for (const s of signals) set[(s - 1) >> 3]! |= 1 << ((s - 1) & 7);
  return set;
}

/** sigprocmask(2) of the calling thread; returns the previous mask. */
export function setSignalMask(how: number, set: Uint8Array): Uint8Array {
  const old = new Uint8Array(128);
  libc().sigprocmask(how, ptr(set), ptr(old));
  return old;
}

/**
 * Become the reaper of orphaned descendants: the daemon stays our child
 * after the intermediate exits, so its end can be observed (see childEnd).
 */
export function becomeSubreaper(): void {
  libc().prctl(PR_SET_CHILD_SUBREAPER, 1 as unknown as Pointer, 0, 0, 0);
}

/**
 * How child `pid` ended, read with waitid(WNOWAIT) so it stays waitable for
 * whoever inherits it after we exit: `text` "exit status N" or "killed by
 * SIGX", `status` what a shell shows (N, or 128 + the signal); undefined
 * while it has not ended.
 */
export function childEnd(pid: number): { text: string; status: number } | undefined {
  const P_PID = 1;
  const WEXITED = 4;
  const WNOHANG = 1;
  const WNOWAIT = 0x01000000;
  const info = new Int32Array(32); // siginfo_t: 128 bytes
  if (libc().waitid(P_PID, pid, ptr(info), WEXITED | WNOHANG | WNOWAIT) !== 0 || info[4] !== pid) return undefined;
  const code = info[2]; // si_code: CLD_EXITED 1, CLD_KILLED 2, CLD_DUMPED 3
  const status = info[6]!;
  if (code === 1) return { text: `exit status ${status}`, status };
  const name = Object.entries(osConstants.signals).find(([, n]) => n === status)?.[0] ?? `signal ${status}`;
  return { text: `killed by ${name}${code === 3 ? ", core dumped" : ""}`, status: 128 + status };
}

/** kill(2): 0 on success, otherwise errno (ESRCH when there is no such process). */
export function sendSignal(pid: number, sig: number): number {
  return libc().kill(pid, sig) === 0 ? 0 : errno();
}

// The same number on every architecture: both syscalls came after the
// syscall tables were unified (5.1/5.3), so no per-arch table is needed.
const SYS_PIDFD_SEND_SIGNAL = 424;
const SYS_PIDFD_OPEN = 434;
export const ENOSYS = 38;

/**
 * pidfd_open(2): an fd that refers to process `pid` itself, not to its
 * number, so a signal sent through it can never reach a later process that
 * reuses the number. Returns the fd (close-on-exec), or -errno (ESRCH: no
 * such process; ENOSYS: kernel before 5.3).
 */
export function pidfdOpen(pid: number): number {
  const fd = Number(libc().syscall(SYS_PIDFD_OPEN, pid, 0, 0, 0));
  return fd >= 0 ? fd : -errno();
}

/** pidfd_send_signal(2): 0 on success, otherwise errno (ESRCH once the process has exited). */
export function pidfdSendSignal(pidfd: number, sig: number): number {
  return Number(libc().syscall(SYS_PIDFD_SEND_SIGNAL, pidfd, sig, 0, 0)) === 0 ? 0 : errno();
}

// fcntl's third argument is a pointer for the record locks: a prototype of
// its own, loaded only by the daemon that marks its PID file.
let fcntlLk: ((fd: number, cmd: number, arg: Pointer) => number) | undefined;

/**
 * Take a POSIX read lock (fcntl F_SETLK, F_RDLCK, whole file) on `fd`.
 * flock(2) and POSIX locks do not interact on Linux, so this only adds a
 * /proc/locks line that names this very process; it is released when the
 * process closes any fd on the file, or exits. True when taken.
 */
export function posixReadLock(fd: number): boolean {
  if (!fcntlLk) {
    const l = dlopen(libcPath(), { fcntl: { args: [T.i32, T.i32, T.ptr], returns: T.i32 } }).symbols;
    fcntlLk = (a, b, c) => l.fcntl(a, b, c);
  }
  const F_SETLK = 6;
  const F_RDLCK = 0;
  // struct flock (x86-64, aarch64): short l_type, short l_whence, off_t l_start, off_t l_len, pid_t l_pid.
  const lk = new BigInt64Array(4);
  new Int16Array(lk.buffer)[0] = F_RDLCK; // l_whence SEEK_SET (0), l_start 0, l_len 0: the whole file
  return fcntlLk(fd, F_SETLK, ptr(lk)) === 0;
}

/** prctl(PR_SET_NAME): the name `ps -o comm` and /proc/PID/comm show (15 bytes). */
export function setProcessName(name: string): void {
  const bytes = Buffer.alloc(16);
  bytes.write(name.slice(0, 15), "utf8");
  bytes[15] = 0;
  libc().prctl(PR_SET_NAME, ptr(bytes), 0, 0, 0);
}

/**
 * Mark every fd >= `from` close-on-exec. close_range(2) does it in one call;
 * kernels before 5.11 lack the flag, so fall back to walking /proc/self/fd
 * (O(open fds), never O(RLIMIT_NOFILE)).
 */
export function cloexecFrom(from: number, listFds: () => number[]): void {
  if (libc().close_range(from, 0xffffffff, CLOSE_RANGE_CLOEXEC) === 0) return;
  for (const fd of listFds()) if (fd >= from) setCloexec(fd, true);
}

/**
 * sd_notify(3) without libsystemd: one datagram to `address` (a path, or
 * `@name` for the abstract namespace). True when the datagram was sent;
 * false when it could not be (no such socket, nobody bound, a full queue
 * refusing it, an address that is neither a path nor `@`). sd_notify's
 * other address kinds (vsock:) are not supported.
 */
export function notifySocket(address: string, message: string, fds: number[] = []): boolean {
  const AF_UNIX = 1;
  const SOCK_DGRAM = 2;
  const SOCK_CLOEXEC = 0o2000000;
  // A closed receiver must never raise SIGPIPE (Bun ignores it, but a
  // program may have installed its own handler).
  const MSG_NOSIGNAL = 0x4000;
  const name = Buffer.from(address, "utf8");
  // sockaddr_un: 2 bytes of family, 108 of sun_path (a path needs its NUL).
  const abstract = address.startsWith("@");
  if ((!abstract && !address.startsWith("/")) || name.length > (abstract ? 108 : 107) || name.length < 2) return false;
  const addr = Buffer.alloc(2 + 108);
  addr.writeUInt16LE(AF_UNIX, 0);
  name.copy(addr, 2);
  if (abstract) addr[2] = 0;
  const len = abstract ? 2 + name.length : 2 + name.length + 1;
  const msg = Buffer.from(message, "utf8");
  const l = libc();
  const fd = l.socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  try {
    if (fds.length > 0) return sendWithFds(fd, msg, addr, len, fds, MSG_NOSIGNAL);
    for (;;) {
      if (Number(l.sendto(fd, ptr(msg), msg.length, MSG_NOSIGNAL, ptr(addr), len)) >= 0) return true;
      if (errno() !== EINTR) return false;
    }
  } finally {
    l.close(fd);
  }
}

/**
 * struct msghdr (64-bit layout) for sendmsg/recvmsg: one iovec over `data`,
 * `control` as the ancillary buffer, `addr` (null: a connected socket).
 * The iovec is returned too: it must live as long as the header is used.
 */
function msghdr(data: Buffer, control: Buffer, addr: Buffer | null, addrLen: number): { hdr: Buffer; iov: Buffer } {
  const iov = Buffer.alloc(16);
  iov.writeBigUInt64LE(BigInt(ptr(data)), 0);
  iov.writeBigUInt64LE(BigInt(data.length), 8);
  const hdr = Buffer.alloc(56);
  if (addr) {
    hdr.writeBigUInt64LE(BigInt(ptr(addr)), 0);
    hdr.writeUInt32LE(addrLen, 8);
  }
  hdr.writeBigUInt64LE(BigInt(ptr(iov)), 16);
  hdr.writeBigUInt64LE(1n, 24);
  hdr.writeBigUInt64LE(BigInt(ptr(control)), 32);
  hdr.writeBigUInt64LE(BigInt(control.length), 40);
  return { hdr, iov };
}

/** A connected pair of AF_UNIX stream sockets, both close-on-exec. Throws `code` with the errno. */
export function socketPair(code: DaemonErrorCode, step: string): [number, number] {
  const AF_UNIX = 1;
  const SOCK_STREAM = 1;
  const SOCK_CLOEXEC = 0o2000000;
  const sv = new Int32Array(2);
  check(libc().socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ptr(sv)), code, step, "socketpair");
  return [sv[0]!, sv[1]!];
}

/** sendmsg(2) on a connected socket: `msg` with `fds` as SCM_RIGHTS. False on an error other than EINTR (the errno is then in errno()). */
export function sendFds(sock: number, msg: Uint8Array, fds: number[]): boolean {
  const MSG_NOSIGNAL = 0x4000;
  return sendWithFds(sock, Buffer.from(msg), null, 0, fds, MSG_NOSIGNAL);
}

/**
 * One recvmsg(2) on a blocking socket: up to `max` bytes and the fds that
 * came with them (close-on-exec). `{ errno }` on failure; zero bytes and no
 * fds is the peer's end.
 */
export function recvFds(sock: number, max: number): { bytes: Uint8Array; fds: number[] } | { errno: number } {
  const MSG_CMSG_CLOEXEC = 0x40000000;
  const buf = Buffer.alloc(max);
  const control = Buffer.alloc(16 + 8 * 4);
  const { hdr } = msghdr(buf, control, null, 0);
  const l = libc();
  for (;;) {
    const n = Number(l.recvmsg(sock, ptr(hdr), MSG_CMSG_CLOEXEC));
    if (n < 0) {
      const e = errno();
      if (e === EINTR) continue;
      return { errno: e };
    }
    const fds: number[] = [];
    const controlLen = Number(hdr.readBigUInt64LE(40));
    // One cmsghdr (SOL_SOCKET, SCM_RIGHTS): its length, then the ints.
    if (controlLen >= 16 && control.readInt32LE(8) === 1 && control.readInt32LE(12) === 1) {
      const len = Number(control.readBigUInt64LE(0));
      for (let off = 16; off + 4 <= len; off += 4) fds.push(control.readInt32LE(off));
    }
    return { bytes: new Uint8Array(buf.subarray(0, n)), fds };
  }
}

/** prctl(PR_SET_PDEATHSIG): this process gets `sig` when the thread that started it ends (a worker outliving its primary would hold the port for ever). */
export function setParentDeathSignal(sig: number): void {
  const PR_SET_PDEATHSIG = 1;
  libc().prctl(PR_SET_PDEATHSIG, sig as unknown as Pointer, 0, 0, 0);
}

/** sendmsg(2) of one datagram carrying `fds` as SCM_RIGHTS (64-bit layout of msghdr, iovec and cmsghdr); `addr` null on a connected socket. */
function sendWithFds(sock: number, msg: Buffer, addr: Buffer | null, addrLen: number, fds: number[], flags: number): boolean {
  const SOL_SOCKET = 1;
  const SCM_RIGHTS = 1;
  const data = fds.length * 4;
  const control = Buffer.alloc(16 + Math.ceil(data / 8) * 8);
  control.writeBigUInt64LE(BigInt(16 + data), 0);
  control.writeInt32LE(SOL_SOCKET, 8);
  control.writeInt32LE(SCM_RIGHTS, 12);
  fds.forEach((f, i) => control.writeInt32LE(f, 16 + i * 4));
  const { hdr } = msghdr(msg, control, addr, addrLen);
  const l = libc();
  for (;;) {
    if (Number(l.sendmsg(sock, ptr(hdr), flags)) >= 0) return true;
    if (errno() !== EINTR) return false;
  }
}

/** CLOCK_MONOTONIC in microseconds, as systemd compares it (MONOTONIC_USEC=). */
export function monotonicUsec(): bigint {
  const CLOCK_MONOTONIC = 1;
  const ts = new BigInt64Array(2); // struct timespec: tv_sec, tv_nsec (64-bit each on 64-bit Linux)
  if (libc().clock_gettime(CLOCK_MONOTONIC, ptr(ts)) !== 0) throw syscallError("LIBC", "read the monotonic clock", "clock_gettime", errno());
  return ts[0]! * 1_000_000n + ts[1]! / 1000n;
}

/** prctl(PR_SET_NO_NEW_PRIVS): execve can never again grant privileges (setuid bits, file capabilities). */
export const PR_SET_NO_NEW_PRIVS = 38;

/** A user as NSS (getpwnam/getpwuid) knows it. */
export interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  dir: string;
}

/** struct passwd on 64-bit Linux: name@0 passwd@8 uid@16 gid@20 gecos@24 dir@32 shell@40. */
function passwdAt(p: Pointer | null): PasswdEntry | undefined {
  if (!p) return undefined;
  return { name: new CString(read.ptr(p, 0) as Pointer).toString(), uid: read.u32(p, 16), gid: read.u32(p, 20), dir: new CString(read.ptr(p, 32) as Pointer).toString() };
}

/** Look a user up by name, or by uid when `user` is a number. Undefined when unknown (errno set only on a lookup failure). */
export function lookupUser(user: string | number): { entry: PasswdEntry | undefined; errno: number } {
  const c = libc();
  write0();
  const name = typeof user === "string" ? cstr(user) : undefined;
  const p = (name ? c.getpwnam(ptr(name)) : c.getpwuid(user as number)) as Pointer | null;
  return { entry: passwdAt(p), errno: p ? 0 : errno() };
}

/** struct group on 64-bit Linux: name@0 passwd@8 gid@16. */
export function lookupGroup(group: string | number): { entry: { name: string; gid: number } | undefined; errno: number } {
  const c = libc();
  write0();
  const name = typeof group === "string" ? cstr(group) : undefined;
  const p = (name ? c.getgrnam(ptr(name)) : c.getgrgid(group as number)) as Pointer | null;
  if (!p) return { entry: undefined, errno: errno() };
  return { entry: { name: new CString(read.ptr(p, 0) as Pointer).toString(), gid: read.u32(p, 16) }, errno: 0 };
}

/** errno = 0, so a NULL from getpwnam can tell "no such user" (still 0) from a failure. */
function write0(): void {
  libc();
  new Int32Array(toArrayBuffer(errnoPtr!, 0, 4))[0] = 0;
}

/** The supplementary groups initgroups(3) would set for `user` with primary group `gid` (gid included). */
export function groupList(user: string, gid: number): number[] {
  const c = libc();
  const name = cstr(user);
  let n = 64;
  for (;;) {
    const buf = new Uint32Array(n);
    const count = new Int32Array([n]);
    const r = c.getgrouplist(ptr(name), gid, ptr(buf), ptr(count));
    if (r >= 0) return [...buf.subarray(0, count[0]!)];
    if (count[0]! <= n) throw syscallError("PRIVILEGES", `read the groups of ${user}`, "getgrouplist", errno());
    n = count[0]!;
  }
}

/** setgroups(2) on every thread: initgroups(3) split in two, so the list can be read before a chroot hides /etc/group. */
export function setGroups(gids: number[], step: string): void {
  const list = new Uint32Array(gids.length === 0 ? [0] : gids);
  check(libc().setgroups(gids.length, ptr(list)), "PRIVILEGES", step, "setgroups");
}

export function setGid(gid: number, step: string): void {
  check(libc().setgid(gid), "PRIVILEGES", step, "setgid");
}

export function setUid(uid: number, step: string): void {
  check(libc().setuid(uid), "PRIVILEGES", step, "setuid");
}

/** setuid(uid) expected to fail: its errno, or 0 when it succeeded. */
export function trySetUid(uid: number): number {
  return libc().setuid(uid) === 0 ? 0 : errno();
}

export function enterChroot(dir: string, step: string): void {
  const p = cstr(dir);
  check(libc().chroot(ptr(p)), "PRIVILEGES", step, "chroot", dir);
}

export function setNoNewPrivs(step: string): void {
  check(libc().prctl(PR_SET_NO_NEW_PRIVS, 1 as unknown as Pointer, 0, 0, 0), "PRIVILEGES", step, "prctl(PR_SET_NO_NEW_PRIVS)");
}

/** RLIMIT_* numbers (generic Linux ABI: x86-64, aarch64, riscv64). */
export const RLIMITS = {
  cpu: 0, fsize: 1, data: 2, stack: 3, core: 4, rss: 5, nproc: 6, nofile: 7, memlock: 8, as: 9, locks: 10, sigpending: 11, msgqueue: 12, nice: 13, rtprio: 14, rttime: 15,
} as const;
export const RLIM_INFINITY = 0xffffffffffffffffn;

/** setrlimit(2) with soft = hard = `value` (Infinity: RLIM_INFINITY). */
export function setRlimit(resource: number, value: number, step: string): void {
  const v = value === Infinity ? RLIM_INFINITY : BigInt(value);
  const buf = new BigUint64Array([v, v]);
  check(libc().setrlimit(resource, ptr(buf)), "PRIVILEGES", step, "setrlimit");
}

/**
 * no_new_privs is a per-thread flag, and Bun's runtime threads already run:
 * prctl() from here marks only this thread. seccomp(SECCOMP_FILTER_FLAG_TSYNC)
 * with an allow-everything filter copies the flag to every thread of the
 * process (kernel seccomp_sync_threads), so no thread can gain privileges by
 * execve. The filter itself allows every call.
 */
export function syncNoNewPrivs(step: string): void {
  const nr = process.arch === "x64" ? 317 : process.arch === "arm64" ? 277 : undefined;
  if (nr === undefined) throw new DaemonError("PRIVILEGES", `${step}: seccomp TSYNC is not wired for ${process.arch}`);
  // struct sock_filter { u16 code; u8 jt; u8 jf; u32 k }: BPF_RET|BPF_K, SECCOMP_RET_ALLOW.
  const filter = new Uint8Array(8);
  const fv = new DataView(filter.buffer);
  fv.setUint16(0, 0x06, true);
  fv.setUint32(4, 0x7fff0000, true);
  // struct sock_fprog { u16 len; (pad) ; struct sock_filter *filter }.
  const prog = new BigUint64Array(2);
  prog[0] = 1n;
  prog[1] = BigInt(ptr(filter));
  const SECCOMP_SET_MODE_FILTER = 1;
  const SECCOMP_FILTER_FLAG_TSYNC = 1;
  const r = Number(libc().syscall(nr, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, Number(ptr(prog)), 0));
  // TSYNC returns the tid of a thread it could not sync (> 0), or -1 with errno.
  if (r < 0) throw syscallError("PRIVILEGES", step, "seccomp(SECCOMP_FILTER_FLAG_TSYNC)", errno());
  if (r > 0) throw new DaemonError("PRIVILEGES", `${step}: seccomp(SECCOMP_FILTER_FLAG_TSYNC) could not reach thread ${r}`);
}

// syslog socket

// errno values the syslog transport tells apart (generic Linux ABI: x86-64, aarch64, riscv64, arm).
export const ENOENT = 2;
export const EBADF = 9;
export const EAGAIN = 11;
export const EPIPE = 32;
export const ENAMETOOLONG = 36;
export const ENOTSOCK = 88;
export const ECONNRESET = 104;
export const ENOTCONN = 107;
export const ECONNREFUSED = 111;

/** sockaddr_un for a path, or `@name` for the abstract namespace: [address, its length]; undefined when it cannot be one. */
function unixAddress(address: string): [Buffer, number] | undefined {
  const AF_UNIX = 1;
  const name = Buffer.from(address, "utf8");
  const abstract = address.startsWith("@");
  if (name.length < (abstract ? 2 : 1) || name.length > (abstract ? 108 : 107) || address.includes("\0")) return undefined;
  const addr = Buffer.alloc(2 + 108);
  addr.writeUInt16LE(AF_UNIX, 0);
  name.copy(addr, 2);
  if (abstract) addr[2] = 0;
  return [addr, abstract ? 2 + name.length : 2 + name.length + 1];
}

/**
 * An AF_UNIX datagram socket connected to `address` (a path such as
 * /dev/log, or `@name` for the abstract namespace), close-on-exec and
 * non-blocking: a send on it can never stall the caller. Returns the fd, or
 * -errno: ENOENT (no such file), ECONNREFUSED (a socket file nobody is bound
 * to), EPROTOTYPE (a stream socket), EACCES, ENAMETOOLONG (no valid address).
 * Connecting a datagram socket never waits.
 */
export function connectDatagram(address: string): number {
  const SOCK_DGRAM = 2;
  const SOCK_NONBLOCK = 0o4000;
  const SOCK_CLOEXEC = 0o2000000;
  const target = unixAddress(address);
  if (!target) return -ENAMETOOLONG;
  const [addr, len] = target;
  const l = libc();
  const fd = l.socket(1, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno();
  for (;;) {
    if (l.connect(fd, ptr(addr), len) === 0) return fd;
    const e = errno();
    if (e === EINTR) continue;
    l.close(fd);
    return -e;
  }
}

/**
 * send(2) of one datagram on a connected socket, never waiting and never
 * raising SIGPIPE. Returns 0 when sent, otherwise the errno: EAGAIN (the
 * receiver's queue is full), ECONNREFUSED/ENOTCONN (the receiver went away),
 * EBADF/ENOTSOCK (the fd was closed, or now is something else).
 */
export function sendDatagram(fd: number, data: Uint8Array): number {
  const MSG_DONTWAIT = 0x40;
  const MSG_NOSIGNAL = 0x4000;
  if (data.length === 0) return 0;
  const l = libc();
  for (;;) {
    if (l.send(fd, ptr(data), data.length, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0) return 0;
    const e = errno();
    if (e !== EINTR) return e;
  }
}

// reaping

/**
 * Reap child `pid` if it has ended: waitid(P_PID, pid, WEXITED | WNOHANG),
 * for that one pid only (a waitpid(-1) could take a child the runtime waits
 * for through its pidfd). True when this call reaped it; false while it
 * still runs, or when it is not our child (any more): ECHILD.
 */
export function reapExited(pid: number): boolean {
  const P_PID = 1;
  const WEXITED = 4;
  const WNOHANG = 1;
  const info = new Int32Array(32); // siginfo_t: 128 bytes; si_pid (int 4) stays 0 when nothing ended
  const l = libc();
  for (;;) {
    if (l.waitid(P_PID, pid, ptr(info), WEXITED | WNOHANG) === 0) return info[4] === pid;
    if (errno() !== EINTR) return false;
  }
}

// listening sockets

/** A TCP listener's address: `host` as an IP literal (IPv6 without brackets), and its port. */
export interface SocketAddress {
  family: 4 | 6;
  host: string;
  port: number;
}

const AF_INET = 2;
const AF_INET6 = 10;
const SOL_SOCKET = 1;
const SO_REUSEADDR = 2;
const SO_TYPE = 3;
const SO_ACCEPTCONN = 30;
const IPPROTO_IPV6 = 41;
const IPV6_V6ONLY = 26;
const SOCK_STREAM = 1;

/** The 16 (IPv4) or 28 (IPv6) bytes of a sockaddr for `a`; undefined when `a.host` is no IP literal of its family. */
function sockaddr(a: SocketAddress): Buffer | undefined {
  const v4 = a.family === 4;
  const b = Buffer.alloc(v4 ? 16 : 28);
  b.writeUInt16LE(v4 ? AF_INET : AF_INET6, 0);
  b.writeUInt16BE(a.port, 2);
  const host = cstr(a.host);
  // inet_pton(3): 1 for a valid literal of the family, with the bytes in network order.
  return libc().inet_pton(v4 ? AF_INET : AF_INET6, ptr(host), ptr(b, v4 ? 4 : 8)) === 1 ? b : undefined;
}

/**
 * A listening TCP socket bound to `a`: close-on-exec, non-blocking (every
 * process that accepts on it is an event loop), SO_REUSEADDR (a restart
 * binds while the old connections sit in TIME_WAIT), an IPv6 one v6-only
 * when bound to a specific address and dual-stack on `::`, as Bun.serve
 * does. Throws a DaemonError "LISTEN" naming the address and the errno.
 */
export function listenTcp(a: SocketAddress, backlog: number): number {
  const SOCK_NONBLOCK = 0o4000;
  const SOCK_CLOEXEC = 0o2000000;
  const where = a.family === 6 ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
  const addr = sockaddr(a);
  if (!addr) throw new DaemonError("LISTEN", `listen on ${where}: not an IPv${a.family} address`);
  const l = libc();
  const fd = check(l.socket(a.family === 6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), "LISTEN", `listen on ${where}`, "socket");
  try {
    const one = new Int32Array([1]);
    check(l.setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, ptr(one), 4), "LISTEN", `listen on ${where}`, "setsockopt(SO_REUSEADDR)");
    if (a.family === 6) {
      const only = new Int32Array([a.host === "::" ? 0 : 1]);
      check(l.setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, ptr(only), 4), "LISTEN", `listen on ${where}`, "setsockopt(IPV6_V6ONLY)");
    }
    check(l.bind(fd, ptr(addr), addr.length), "LISTEN", `listen on ${where}`, "bind");
    check(l.listen(fd, backlog), "LISTEN", `listen on ${where}`, "listen");
    return fd;
  } catch (err) {
    l.close(fd);
    throw err;
  }
}

/** The local address of TCP socket `fd`, or undefined when it is none (closed, not TCP/IP). */
export function localAddress(fd: number): SocketAddress | undefined {
  const buf = Buffer.alloc(128);
  const len = new Uint32Array([buf.length]);
  if (libc().getsockname(fd, ptr(buf), ptr(len)) !== 0) return undefined;
  const family = buf.readUInt16LE(0);
  const port = buf.readUInt16BE(2);
  if (family !== AF_INET && family !== AF_INET6) return undefined;
  const text = Buffer.alloc(64);
  if (libc().inet_ntop(family, ptr(buf, family === AF_INET ? 4 : 8), ptr(text), text.length) === null) return undefined;
  return { family: family === AF_INET ? 4 : 6, host: text.toString("latin1", 0, text.indexOf(0)), port };
}

function intOption(fd: number, level: number, name: number): number | undefined {
  const v = new Int32Array(1);
  const len = new Uint32Array([4]);
  return libc().getsockopt(fd, level, name, ptr(v), ptr(len)) === 0 ? v[0] : undefined;
}

/** True when `fd` is a listening stream socket (SO_ACCEPTCONN). */
export function isListeningStream(fd: number): boolean {
  return intOption(fd, SOL_SOCKET, SO_TYPE) === SOCK_STREAM && intOption(fd, SOL_SOCKET, SO_ACCEPTCONN) === 1;
}

export const EPOLL_CTL_ADD = 1;
export const EPOLL_CTL_DEL = 2;

/** epoll_ctl(2) with an event of `events` and the 64-bit `data`; returns 0 or the errno. */
export function epollCtl(epfd: number, op: number, fd: number, events: number, data: bigint): number {
  // struct epoll_event is packed on x86-64 (12 bytes) and naturally aligned elsewhere (16).
  const packed = process.arch === "x64";
  const ev = Buffer.alloc(16);
  ev.writeUInt32LE(events >>> 0, 0);
  ev.writeBigUInt64LE(data, packed ? 4 : 8);
  return libc().epoll_ctl(epfd, op, fd, ptr(ev)) === 0 ? 0 : errno();
}
