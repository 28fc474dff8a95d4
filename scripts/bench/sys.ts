/**
 * The few libc calls the benchmark needs that Bun does not expose. Loaded on
 * first use, so importing this file costs a fixture nothing it does not use.
 */
import { dlopen, FFIType as T, ptr } from "bun:ffi";
import { libcPath } from "../../src/ffi.ts";

const symbols = {
  clock_gettime: { args: [T.i32, T.ptr], returns: T.i32 },
  usleep: { args: [T.u32], returns: T.i32 },
  dup: { args: [T.i32], returns: T.i32 },
  getrlimit: { args: [T.i32, T.ptr], returns: T.i32 },
  setrlimit: { args: [T.i32, T.ptr], returns: T.i32 },
  prctl: { args: [T.i32, T.u64, T.u64, T.u64, T.u64], returns: T.i32 },
  waitpid: { args: [T.i32, T.ptr, T.i32], returns: T.i32 },
} as const;

let lib: ReturnType<typeof dlopen<typeof symbols>>["symbols"] | undefined;
const sys = () => (lib ??= dlopen(libcPath(), symbols).symbols);

const CLOCK_MONOTONIC = 1;
const RLIMIT_NOFILE = 7;
const PR_SET_CHILD_SUBREAPER = 36;
const WNOHANG = 1;

const ts = new BigInt64Array(2);

/**
 * CLOCK_MONOTONIC in ms. Unlike performance.now() (per-process origin) and
 * process.hrtime in Bun (also relative to process start), it is one clock
 * for every process, so a timestamp taken in a daemon compares with ours.
 */
export function monoMs(): number {
  sys().clock_gettime(CLOCK_MONOTONIC, ptr(ts));
  return Number(ts[0]) * 1e3 + Number(ts[1]) / 1e6;
}

/** Sub-millisecond sleep: Bun.sleepSync rounds fractions of a ms down to nothing. */
export function usleep(us: number): void {
  sys().usleep(us);
}

/** Duplicate `fd` `n` times without close-on-exec, as fds a launcher inherited would be. */
export function holdFds(fd: number, n: number): void {
  const l = sys();
  for (let i = 0; i < n; i++) {
    if (l.dup(fd) < 0) throw new Error(`dup failed after ${i} of ${n} fds (RLIMIT_NOFILE too low?)`);
  }
}

/** Set the soft and hard RLIMIT_NOFILE; throws when the kernel refuses. */
export function setNofile(limit: number): void {
  const r = new BigUint64Array([BigInt(limit), BigInt(limit)]);
  if (sys().setrlimit(RLIMIT_NOFILE, ptr(r)) !== 0) throw new Error(`setrlimit(RLIMIT_NOFILE, ${limit}) refused`);
}

/**
 * Adopt orphaned descendants (our daemons) instead of leaving them to pid 1:
 * an init that does not reap (a container's, this VM's) would otherwise
 * collect one zombie per daemon the benchmark ever started.
 */
export function becomeSubreaper(): boolean {
  return sys().prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) === 0;
}

/** Reap `pid` if it is our exited child; never blocks, never touches other children. True once reaped. */
export function reap(pid: number): boolean {
  const status = new Int32Array(1);
  return sys().waitpid(pid, ptr(status), WNOHANG) === pid;
}
