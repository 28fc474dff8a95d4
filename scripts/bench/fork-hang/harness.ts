/**
 * Fork-hang harness for issue 6 item 10: from a GC-busy Bun process, start
 * children in several shapes and count those that do not finish in time.
 * A measuring tool: it talks to libc.so.6 directly and is not library code.
 *
 *   bun scripts/bench/fork-hang/harness.ts hang SHAPE N [--gc-before] [--quiet-gc]
 *   bun scripts/bench/fork-hang/harness.ts timing K
 *   bun scripts/bench/fork-hang/harness.ts facts
 *
 * hang:   N trials of SHAPE; prints one JSON line {shape, n, hung, crashed, ...}.
 * timing: K rounds, each running every spawn shape once (interleaved, so
 *         they share the machine's load), plus a bare `bun -e 0`; prints medians.
 * facts:  what the final target process inherits in each shape (SigIgn,
 *         SigBlk, session/pgid, fds), with `cat` as the target.
 *
 * Shapes (the target is /bin/true; "done" = every process of the chain has
 * exited, seen as EOF on a pipe whose write end each of them holds as fd 3
 * or a higher fd):
 *   a   fork; child: setsid, fork, write (declared i64: a BigInt is
 *       allocated in the child), _exit; grandchild: umask, sigprocmask,
 *       signal loop (declared ptr), dup2, close_range, execve (src/launch.ts today)
 *   b   as a, every libc return declared i32: no allocation in the children
 *   c   fork; child: _exit(0) straight away (the least JS a fork child can run)
 *   cn  as b but the whole child side in C (native.c): no return into JS
 *   e1  posix_spawn(SETSID|SETSIGMASK|SETSIGDEF, file actions) of the target
 *       itself: one level, the target is a session leader
 *   e2  posix_spawn(SETSID…) of /bin/sh -c 'exec "$0" "$@" &' target: sh
 *       forks the target as a background job and exits
 *   e3  posix_spawn(SETSID…) of `bun -e <script>` which posix_spawns the
 *       target (no SETSID) and exits
 *   e3c as e3 through a `bun build --compile` binary run with BUN_BE_BUN=1
 * --gc-before: Bun.gc(true) right before every fork/spawn (shape "d").
 * --quiet-gc:  no allocation load (control).
 */
import { dlopen, FFIType as T, ptr, read, type Pointer } from "bun:ffi";
import { existsSync, mkdtempSync as mkdtemp, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const LIBC = "libc.so.6";
// Temp dirs (the native .so, the compiled binary, facts output) go when we exit.
const tempDirs: string[] = [];
const mkdtempSync = (prefix: string): string => {
  const d = mkdtemp(prefix);
  tempDirs.push(d);
  return d;
};
process.on("exit", () => {
  for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
});
const HANG_MS = 2000;
const O_CLOEXEC = 0o2000000;
const F_DUPFD_CLOEXEC = 1030;
const WNOHANG = 1;
const POSIX_SPAWN_SETSIGDEF = 0x04;
const POSIX_SPAWN_SETSIGMASK = 0x08;
const POSIX_SPAWN_SETSID = 0x80;

// The parent's libc: returns may allocate here, the parent is free to.
const p = dlopen(LIBC, {
  pipe2: { args: [T.ptr, T.i32], returns: T.i32 },
  fcntl: { args: [T.i32, T.i32, T.i32], returns: T.i32 },
  close: { args: [T.i32], returns: T.i32 },
  read: { args: [T.i32, T.ptr, T.u64], returns: T.i64 },
  poll: { args: [T.ptr, T.u64, T.i32], returns: T.i32 },
  waitpid: { args: [T.i32, T.ptr, T.i32], returns: T.i32 },
  kill: { args: [T.i32, T.i32], returns: T.i32 },
  prctl: { args: [T.i32, T.u64, T.u64, T.u64, T.u64], returns: T.i32 },
  madvise: { args: [T.u64, T.u64, T.i32], returns: T.i32 },
  open: { args: [T.ptr, T.i32, T.u32], returns: T.i32 },
  __errno_location: { args: [], returns: T.ptr },
  posix_spawn: { args: [T.ptr, T.ptr, T.ptr, T.ptr, T.ptr, T.ptr], returns: T.i32 },
  posix_spawnattr_init: { args: [T.ptr], returns: T.i32 },
  posix_spawnattr_setflags: { args: [T.ptr, T.i16], returns: T.i32 },
  posix_spawnattr_setsigmask: { args: [T.ptr, T.ptr], returns: T.i32 },
  posix_spawnattr_setsigdefault: { args: [T.ptr, T.ptr], returns: T.i32 },
  posix_spawn_file_actions_init: { args: [T.ptr], returns: T.i32 },
  posix_spawn_file_actions_destroy: { args: [T.ptr], returns: T.i32 },
  posix_spawn_file_actions_adddup2: { args: [T.ptr, T.i32, T.i32], returns: T.i32 },
  posix_spawn_file_actions_addclosefrom_np: { args: [T.ptr, T.i32], returns: T.i32 },
  posix_spawn_file_actions_addchdir_np: { args: [T.ptr, T.ptr], returns: T.i32 },
}).symbols;
const errnoPtr = p.__errno_location() as Pointer;
const errno = () => read.i32(errnoPtr, 0);

// The children's libc, as src/ffi.ts declares it today (write -> i64 BigInt).
const c64 = dlopen(LIBC, {
  fork: { args: [], returns: T.i32 },
  setsid: { args: [], returns: T.i32 },
  _exit: { args: [T.i32], returns: T.void },
  write: { args: [T.i32, T.ptr, T.u64], returns: T.i64 },
  umask: { args: [T.u32], returns: T.u32 },
  sigprocmask: { args: [T.i32, T.ptr, T.ptr], returns: T.i32 },
  signal: { args: [T.i32, T.ptr], returns: T.ptr },
  dup2: { args: [T.i32, T.i32], returns: T.i32 },
  close_range: { args: [T.u32, T.u32, T.i32], returns: T.i32 },
  execve: { args: [T.ptr, T.ptr, T.ptr], returns: T.i32 },
}).symbols;
// Allocation-free children: every return an i32 (signal's old handler is
// truncated; it is never read).
const c32 = dlopen(LIBC, {
  fork: { args: [], returns: T.i32 },
  setsid: { args: [], returns: T.i32 },
  _exit: { args: [T.i32], returns: T.void },
  write: { args: [T.i32, T.ptr, T.u64], returns: T.i32 },
  umask: { args: [T.u32], returns: T.u32 },
  sigprocmask: { args: [T.i32, T.ptr, T.ptr], returns: T.i32 },
  signal: { args: [T.i32, T.ptr], returns: T.i32 },
  dup2: { args: [T.i32, T.i32], returns: T.i32 },
  close_range: { args: [T.u32, T.u32, T.i32], returns: T.i32 },
  execve: { args: [T.ptr, T.ptr, T.ptr], returns: T.i32 },
}).symbols;

// ---------- helpers ----------
const keep: unknown[] = [];
function cstr(s: string): Buffer {
  const b = Buffer.from(`${s}\0`, "utf8");
  keep.push(b);
  return b;
}
function cArray(items: string[]): BigUint64Array {
  const arr = new BigUint64Array(items.length + 1);
  items.forEach((s, i) => (arr[i] = BigInt(ptr(cstr(s)))));
  keep.push(arr);
  return arr;
}
const envList = (drop: string[] = []) =>
  Object.entries(process.env)
    .filter(([k]) => !drop.includes(k))
    .map(([k, v]) => `${k}=${v ?? ""}`);
const envC = cArray(envList());

function sigset(sigs: number[]): Uint8Array {
  const s = new Uint8Array(128);
  for (const n of sigs) s[(n - 1) >> 3]! |= 1 << ((n - 1) & 7);
  return s;
}
function maskOf(field: string, pid: number | "self" = "self"): number[] {
  const line = readFileSync(`/proc/${pid}/status`, "utf8").split("\n").find((l) => l.startsWith(`${field}:`));
  const v = BigInt(`0x${line!.split(/\s+/)[1]}`);
  const out: number[] = [];
  for (let i = 0; i < 64; i++) if ((v >> BigInt(i)) & 1n) out.push(i + 1);
  return out;
}
const UNTOUCHABLE = new Set([9, 19, 32, 33]);
const resetSigs = new Int32Array(maskOf("SigIgn").filter((s) => !UNTOUCHABLE.has(s)));
const emptySet = new Uint8Array(128);
// 32/33 belong in posix_spawn's default set: its child sets glibc's internal
// signals to SIG_IGN and that survives the exec (see sigsetxid.ts).
const defSet = sigset([...resetSigs, 32, 33]);

/** A pipe with both ends close-on-exec, the write end moved to >= 10. */
function pipe(): [number, number] {
  const fds = new Int32Array(2);
  if (p.pipe2(ptr(fds), O_CLOEXEC) !== 0) throw new Error(`pipe2: errno ${errno()}`);
  const w = p.fcntl(fds[1]!, F_DUPFD_CLOEXEC, 10);
  p.close(fds[1]!);
  return [fds[0]!, w];
}

const pollBuf = new Int32Array(2);
const pollView = new Int16Array(pollBuf.buffer);
const rbuf = new Uint8Array(64);
/** Read until EOF or deadline. Returns the bytes read, or undefined on timeout. */
function drainUntilEof(fd: number, timeoutMs: number): number[] | undefined {
  const end = performance.now() + timeoutMs;
  const got: number[] = [];
  for (;;) {
    const left = Math.ceil(end - performance.now());
    if (left <= 0) return undefined;
    pollBuf[0] = fd;
    pollView[2] = 1; // POLLIN
    pollView[3] = 0;
    const n = p.poll(ptr(pollBuf), 1, left);
    if (n < 0 && errno() === 4) continue;
    if (n <= 0) return undefined;
    const r = Number(p.read(fd, ptr(rbuf), rbuf.length));
    if (r < 0 && errno() === 4) continue;
    if (r <= 0) return got;
    for (let i = 0; i < r; i++) got.push(rbuf[i]!);
  }
}

const status = new Int32Array(1);
/** Reap every exited child (we are a subreaper, so orphans come to us). */
function reapAll(): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (;;) {
    const pid = p.waitpid(-1, ptr(status), WNOHANG);
    if (pid <= 0) return out;
    out.push([pid, status[0]!]);
  }
}

function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const st = readFileSync(`/proc/${d}/stat`, "utf8");
      const f = st.slice(st.lastIndexOf(")") + 2).split(" ");
      if (Number(f[1]) === pid) out.push(Number(d));
    } catch {}
  }
  return out;
}

/** Every live (non-zombie) descendant, children first. */
function descendantsOf(pid: number): number[] {
  const out: number[] = [];
  for (const c of childrenOf(pid)) {
    const st = readOr(`/proc/${c}/stat`);
    if (st.slice(st.lastIndexOf(")") + 2).startsWith("Z")) continue;
    out.push(c, ...descendantsOf(c));
  }
  return out;
}

function readOr(path: string): string {
  try {
    return readFileSync(path, "utf8").trim();
  } catch (e) {
    return `(${(e as NodeJS.ErrnoException).code})`;
  }
}

function diagnose(pid: number): Record<string, unknown> {
  const tasks = existsSync(`/proc/${pid}/task`) ? readdirSync(`/proc/${pid}/task`) : [];
  const st = readOr(`/proc/${pid}/stat`);
  return {
    pid,
    comm: readOr(`/proc/${pid}/comm`),
    state: st.slice(st.lastIndexOf(")") + 2).split(" ")[0],
    sid_pgid_ppid: (() => {
      const f = st.slice(st.lastIndexOf(")") + 2).split(" ");
      return `${f[3]}/${f[2]}/${f[1]}`;
    })(),
    threads: tasks.length,
    wchan: readOr(`/proc/${pid}/wchan`),
    syscall: readOr(`/proc/${pid}/syscall`),
    stack: readOr(`/proc/${pid}/stack`).split("\n").slice(0, 8),
    // FH_GDB=1: the user-space stack too (gdb attaches in ~1 s; the harness waits).
    ...(process.env.FH_GDB ? { gdb: gdbStack(pid) } : {}),
  };
}

function gdbStack(pid: number): string[] {
  const g = Bun.spawnSync(["gdb", "-p", String(pid), "-batch", "-nx", "-ex", "bt 25"], { stderr: "pipe", timeout: 20000 });
  return g.stdout
    .toString()
    .split("\n")
    .filter((l) => /^#\d/.test(l))
    .map((l) => l.replace(/\s+/g, " ").slice(0, 160));
}

// JSC maps its JIT region MADV_DONTFORK; a fork child returning into JS
// needs it (BUN-RUNTIME-NOTES §1). Re-applied now and then in case new
// regions appear.
function madviseDoFork(): number {
  let n = 0;
  let cur: [bigint, bigint] | undefined;
  for (const line of readFileSync("/proc/self/smaps", "utf8").split("\n")) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) /.exec(line);
    if (m) cur = [BigInt(`0x${m[1]}`), BigInt(`0x${m[2]}`)];
    else if (cur && line.startsWith("VmFlags:") && / dc( |$)/.test(line)) {
      p.madvise(cur[0], cur[1] - cur[0], 11);
      n++;
    }
  }
  return n;
}

// ---------- GC load ----------
const RING = 200_000;
const ring: unknown[] = new Array(RING).fill(0);
let ri = 0;
function churn(n: number): void {
  for (let i = 0; i < n; i++) {
    ring[ri] = i % 97 === 0 ? new Array(64).fill(i) : { i, a: [i, ri], s: `s${i}:${ri}` };
    ri = (ri + 1) % RING;
  }
}
let busy = false;
let timer: ReturnType<typeof setInterval> | undefined;
function startLoad(): void {
  busy = true;
  churn(RING); // fill the ring: the heap has ~200k live objects to mark
  timer = setInterval(() => churn(3000), 1);
}
function stepLoad(i: number): void {
  if (!busy) return;
  churn(Math.floor(Math.random() * 20000));
  if (i % 7 === 0) Bun.gc(false);
}
/** CPU ticks spent so far by the GC's own threads (Heap Helper, Collector). */
function gcThreadTicks(): number {
  let t = 0;
  for (const task of readdirSync("/proc/self/task")) {
    const comm = readOr(`/proc/self/task/${task}/comm`);
    if (!/heap|collect|gc/i.test(comm)) continue;
    const st = readOr(`/proc/self/task/${task}/stat`);
    const f = st.slice(st.lastIndexOf(")") + 2).split(" ");
    t += Number(f[11]) + Number(f[12]);
  }
  return t;
}

// ---------- the shapes ----------
const TRUE = "/bin/true";
const trueC = cstr(TRUE);
const trueArgv = cArray([TRUE]);
const frame = new Int32Array(1);
const framePtr = ptr(frame);
const pTrue = ptr(trueC);
const pTrueArgv = ptr(trueArgv);
const pEnv = ptr(envC);
const pEmpty = ptr(emptySet);

type Start = (w: number) => number; // returns the first pid (or -errno)

function forkShape(l: typeof c64 | typeof c32): Start {
  const { fork, setsid, _exit, write, umask, sigprocmask, signal, dup2, close_range, execve } = l;
  return (w) => {
    const pid1 = fork();
    if (pid1 === 0) {
      setsid();
      const pid2 = fork();
      if (pid2 !== 0) {
        frame[0] = pid2;
        write(w, framePtr, 4);
        _exit(pid2 > 0 ? 0 : 1);
      }
      umask(0o22);
      sigprocmask(2, pEmpty, null);
      for (let i = 0; i < resetSigs.length; i++) signal(resetSigs[i]!, null);
      dup2(w, 3);
      close_range(4, 0xffffffff, 0);
      execve(pTrue, pTrueArgv, pEnv);
      _exit(127);
    }
    return pid1;
  };
}

function shapeC(): Start {
  const { fork, _exit } = c32;
  return () => {
    const pid = fork();
    if (pid === 0) _exit(0);
    return pid;
  };
}

function shapeNative(): Start {
  const dir = mkdtempSync(join(tmpdir(), "fork-hang-"));
  const so = join(dir, "native.so");
  const cc = Bun.spawnSync(["cc", "-O2", "-shared", "-fPIC", "-o", so, join(import.meta.dir, "native.c")]);
  if (cc.exitCode !== 0) throw new Error(`cc failed: ${cc.stderr.toString()}`);
  const n = dlopen(so, { fh_double_fork: { args: [T.i32, T.ptr, T.ptr, T.ptr], returns: T.i32 } }).symbols;
  return (w) => n.fh_double_fork(w, pTrue, pTrueArgv, pEnv);
}

const fa = new Uint8Array(512); // posix_spawn_file_actions_t is 80 bytes on x86-64
const pidOut = new Int32Array(1);
const slash = cstr("/");
function spawnAttr(flags: number): Uint8Array {
  const a = new Uint8Array(512); // posix_spawnattr_t is 336 bytes on x86-64
  p.posix_spawnattr_init(ptr(a));
  p.posix_spawnattr_setflags(ptr(a), flags);
  p.posix_spawnattr_setsigmask(ptr(a), ptr(emptySet));
  p.posix_spawnattr_setsigdefault(ptr(a), ptr(defSet));
  keep.push(a);
  return a;
}
const setsidAttr = spawnAttr(POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

/** posix_spawn `argv` with SETSID, the write end as fd 3, fds >= 4 closed, cwd /. */
function spawnWith(file: string, argv: string[], env: BigUint64Array = envC, out = -1): Start {
  const fileC = cstr(file);
  const argvC = cArray(argv);
  return (w) => {
    p.posix_spawn_file_actions_init(ptr(fa));
    if (out >= 0) {
      p.posix_spawn_file_actions_adddup2(ptr(fa), out, 1);
      p.posix_spawn_file_actions_adddup2(ptr(fa), out, 2);
    }
    p.posix_spawn_file_actions_adddup2(ptr(fa), w, 3);
    p.posix_spawn_file_actions_addclosefrom_np(ptr(fa), 4);
    p.posix_spawn_file_actions_addchdir_np(ptr(fa), ptr(slash));
    const rc = p.posix_spawn(ptr(pidOut), ptr(fileC), ptr(fa), ptr(setsidAttr), ptr(argvC), ptr(env));
    p.posix_spawn_file_actions_destroy(ptr(fa));
    return rc === 0 ? pidOut[0]! : -rc;
  };
}

// The intermediate for e3/e3c: a fresh bun that posix_spawns argv[1..]
// without SETSID (so the target is not a session leader) and leaves.
const INTERMEDIATE = `
const { dlopen, FFIType: T, ptr } = require("bun:ffi");
const l = dlopen("libc.so.6", {
  posix_spawn: { args: [T.ptr, T.ptr, T.ptr, T.ptr, T.ptr, T.ptr], returns: T.i32 },
  posix_spawnattr_init: { args: [T.ptr], returns: T.i32 },
  posix_spawnattr_setflags: { args: [T.ptr, T.i16], returns: T.i32 },
  posix_spawnattr_setsigmask: { args: [T.ptr, T.ptr], returns: T.i32 },
  posix_spawnattr_setsigdefault: { args: [T.ptr, T.ptr], returns: T.i32 },
  fcntl: { args: [T.i32, T.i32, T.i32], returns: T.i32 },
  _exit: { args: [T.i32], returns: T.void },
}).symbols;
const c = (s) => Buffer.from(s + "\\0");
const keep = [];
const arr = (xs) => { const a = new BigUint64Array(xs.length + 1); xs.forEach((s, i) => { const b = c(s); keep.push(b); a[i] = BigInt(ptr(b)); }); return a; };
const args = process.argv.slice(1);
const env = arr(Object.entries(process.env).filter(([k]) => k !== "BUN_BE_BUN").map(([k, v]) => k + "=" + v));
const attr = new Uint8Array(512), set = new Uint8Array(128);
set[1] |= 1 << 4; set[3] |= 1 << 0 | 1 << 7; set[4] |= 1; // SIGPIPE, SIGXFSZ (Bun ignores them), 32, 33 (glibc)
l.posix_spawnattr_init(ptr(attr));
l.posix_spawnattr_setflags(ptr(attr), 0x0c);
l.posix_spawnattr_setsigmask(ptr(attr), ptr(new Uint8Array(128)));
l.posix_spawnattr_setsigdefault(ptr(attr), ptr(set));
l.fcntl(3, 2, 0); // fd 3 survives Bun's start-up; clear CLOEXEC anyway
const pid = new Int32Array(1);
const rc = l.posix_spawn(ptr(pid), ptr(c(args[0])), null, ptr(attr), ptr(arr(args)), ptr(env));
l._exit(rc === 0 ? 0 : 100 + rc);
`;

let compiledBin: string | undefined;
function compiled(): string {
  if (compiledBin) return compiledBin;
  const dir = mkdtempSync(join(tmpdir(), "fork-hang-bin-"));
  writeFileSync(join(dir, "app.ts"), "console.log('app');\n");
  const b = Bun.spawnSync([process.execPath, "build", "--compile", join(dir, "app.ts"), "--outfile", join(dir, "app")]);
  if (b.exitCode !== 0) throw new Error(`bun build --compile failed: ${b.stderr.toString()}`);
  return (compiledBin = join(dir, "app"));
}

function makeShape(name: string, target: string[] = [TRUE], out = -1): Start {
  switch (name) {
    case "a":
      return forkShape(c64);
    case "b":
      return forkShape(c32);
    case "c":
      return shapeC();
    case "cn":
      return shapeNative();
    case "e1":
      return spawnWith(target[0]!, target, envC, out);
    case "e2":
      return spawnWith("/bin/sh", ["/bin/sh", "-c", 'exec "$0" "$@" &', ...target], envC, out);
    case "e3":
      return spawnWith(process.execPath, [process.execPath, "-e", INTERMEDIATE, ...target], envC, out);
    case "e3c": {
      const bin = compiled();
      return spawnWith(bin, [bin, "-e", INTERMEDIATE, ...target], cArray([...envList(), "BUN_BE_BUN=1"]), out);
    }
    case "selftest": // a chain that does not finish: checks the hang path (diagnosis, SIGKILL, reap)
      return spawnWith("/bin/sleep", ["/bin/sleep", "5"], envC, out);
    case "bare": // the scale: a bare `bun -e 0`, spawned the same way
      return spawnWith(process.execPath, [process.execPath, "-e", "0"], envC, out);
  }
  throw new Error(`unknown shape ${name}`);
}

interface Trial {
  ms: number;
  hung: boolean;
  crashed: number;
  diag?: Array<Record<string, unknown>>;
}

/** One start: wait for every process of the chain to be gone (EOF), reap. */
function trial(start: Start, wantDiag: boolean): Trial {
  const [r, w] = pipe();
  const t0 = performance.now();
  const pid1 = start(w);
  p.close(w);
  if (pid1 < 0) {
    p.close(r);
    throw new Error(`start failed: ${-pid1}`);
  }
  const got = drainUntilEof(r, HANG_MS);
  const ms = performance.now() - t0;
  p.close(r);
  let crashed = 0;
  if (got === undefined) {
    // Hung: whatever of the chain is left is a descendant of ours, and
    // comes back to us (subreaper) once its parent is killed.
    const left = descendantsOf(process.pid);
    const diag = wantDiag ? left.map(diagnose) : undefined;
    const end = performance.now() + 5000;
    for (let kids = left; kids.length && performance.now() < end; kids = descendantsOf(process.pid)) {
      for (const pid of kids) p.kill(pid, 9);
      reapAll();
      Bun.sleepSync(5);
    }
    reapAll();
    const stuck = descendantsOf(process.pid);
    if (stuck.length) throw new Error(`could not stop ${stuck.join(" ")}`);
    return { ms, hung: true, crashed, diag };
  }
  // Every process exited; reap them (the grandchild may still be being
  // reparented to us for a moment).
  const end = performance.now() + 1000;
  for (;;) {
    const pid = p.waitpid(-1, ptr(status), WNOHANG);
    if (pid > 0) {
      if (status[0] !== 0) crashed++;
      continue;
    }
    if ((pid < 0 && errno() === 10) || performance.now() > end) break; // ECHILD: all reaped
    Bun.sleepSync(0.2);
  }
  return { ms, hung: false, crashed };
}

function median(xs: number[]): number {
  const s = [...xs].sort((x, y) => x - y);
  return s[Math.floor(s.length / 2)] ?? NaN;
}
function pct(xs: number[], q: number): number {
  const s = [...xs].sort((x, y) => x - y);
  return s[Math.min(s.length - 1, Math.floor(s.length * q))] ?? NaN;
}

async function main(): Promise<void> {
  const [mode, a1, a2] = process.argv.slice(2);
  const gcBefore = process.argv.includes("--gc-before");
  p.prctl(36, 1, 0, 0, 0); // PR_SET_CHILD_SUBREAPER: the orphaned grandchildren come back to us
  madviseDoFork();
  if (!process.argv.includes("--quiet-gc")) startLoad();
  const tick = () => new Promise<void>((res) => setImmediate(res));

  if (mode === "hang") {
    const shape = a1!;
    const n = Number(a2);
    const start = makeShape(shape);
    const g0 = gcThreadTicks();
    const t0 = performance.now();
    let hung = 0;
    let crashed = 0;
    const diags: unknown[] = [];
    const times: number[] = [];
    for (let i = 0; i < n; i++) {
      stepLoad(i);
      if (i % 200 === 0) madviseDoFork();
      if (gcBefore) Bun.gc(true);
      const t = trial(start, diags.length < 2);
      times.push(t.ms);
      if (t.hung) {
        hung++;
        if (t.diag) diags.push({ trial: i, procs: t.diag });
      }
      crashed += t.crashed;
      await tick();
    }
    if (timer) clearInterval(timer);
    console.log(
      JSON.stringify({
        shape: shape + (gcBefore ? "+gc(true)" : "") + (busy ? "" : " quiet"),
        n,
        hung,
        crashed,
        median_ms: +median(times.filter((x) => x < HANG_MS)).toFixed(2),
        wall_s: +((performance.now() - t0) / 1000).toFixed(1),
        gc_thread_cpu_s: (gcThreadTicks() - g0) / 100,
        diags,
      }),
    );
    process.exit(0);
  }

  if (mode === "timing") {
    const k = Number(a1 ?? 100);
    const names = ["b", "cn", "e1", "e2", "e3", "e3c", "bare"];
    const starts = names.map((nm) => makeShape(nm));
    const times: number[][] = names.map(() => []);
    let hung = 0;
    for (let i = 0; i < k; i++) {
      for (let j = 0; j < names.length; j++) {
        stepLoad(i);
        const t = trial(starts[j]!, false);
        if (t.hung) hung++;
        else times[j]!.push(t.ms);
        await tick();
      }
    }
    if (timer) clearInterval(timer);
    const base = median(times[0]!);
    const rows = names.map((nm, j) => ({
      shape: nm,
      n: times[j]!.length,
      median_ms: +median(times[j]!).toFixed(2),
      p90_ms: +pct(times[j]!, 0.9).toFixed(2),
      extra_vs_b_ms: +(median(times[j]!) - base).toFixed(2),
    }));
    console.log(JSON.stringify({ k, hung, rows }));
    process.exit(0);
  }

  if (mode === "facts") {
    // What the target inherits: run `cat /proc/self/status /proc/self/stat`
    // and `ls -l /proc/self/fd` as the target, output to a file. The
    // launcher gets SIGINT/SIGQUIT/SIGHUP ignored and USR2 blocked first, as
    // a `nohup … &` from a shell with a blocked mask would.
    const ign = dlopen(LIBC, {
      signal: { args: [T.i32, T.ptr], returns: T.ptr },
      sigprocmask: { args: [T.i32, T.ptr, T.ptr], returns: T.i32 },
    }).symbols;
    for (const s of [1, 2, 3]) ign.signal(s, 1 as unknown as Pointer);
    ign.sigprocmask(0, ptr(sigset([12])), null);
    // Recompute the attrs' default set with the new ignores.
    const ignNow = maskOf("SigIgn").filter((s) => !UNTOUCHABLE.has(s));
    defSet.set(sigset([...ignNow, 32, 33]));
    p.posix_spawnattr_setsigdefault(ptr(setsidAttr), ptr(defSet));
    const dir = mkdtempSync(join(tmpdir(), "fork-hang-facts-"));
    const res: Record<string, unknown> = { launcher: { SigIgn: maskOf("SigIgn"), SigBlk: maskOf("SigBlk") } };
    for (const nm of ["e1", "e2", "e3", "e3c"]) {
      const file = join(dir, `${nm}.txt`);
      const out = p.open(ptr(cstr(file)), 0o1 | 0o100 | 0o1000 | O_CLOEXEC, 0o644);
      const t1 = trial(makeShape(nm, ["/bin/cat", "/proc/self/status", "/proc/self/stat"], out), false);
      p.close(out);
      const txt = readFileSync(file, "utf8");
      const sline = txt.split("\n").find((l) => /^\d+ \(cat\)/.test(l)) ?? "";
      const f = sline.slice(sline.lastIndexOf(")") + 2).split(" ");
      const field = (k: string) => txt.split("\n").find((l) => l.startsWith(`${k}:`))?.split(/\s+/)[1];
      const toSigs = (hex?: string) => {
        const v = BigInt(`0x${hex ?? "0"}`);
        return [...Array(64).keys()].filter((i) => (v >> BigInt(i)) & 1n).map((i) => i + 1);
      };
      const pid = Number(sline.split(" ")[0]);
      const fdFile = join(dir, `${nm}-fd.txt`);
      const out2 = p.open(ptr(cstr(fdFile)), 0o1 | 0o100 | 0o1000 | O_CLOEXEC, 0o644);
      trial(makeShape(nm, ["/bin/ls", "-l", "/proc/self/fd/"], out2), false);
      p.close(out2);
      res[nm] = {
        hung: t1.hung,
        SigIgn: toSigs(field("SigIgn")),
        SigBlk: toSigs(field("SigBlk")),
        sessionLeader: Number(f[3]) === pid,
        pgidLeader: Number(f[2]) === pid,
        fds: readFileSync(fdFile, "utf8")
          .split("\n")
          .filter((l) => l.includes("->"))
          .map((l) => l.replace(/^.*\d\d:\d\d /, "")),
      };
    }
    console.log(JSON.stringify(res, null, 1));
    process.exit(0);
  }
  console.error("usage: harness.ts hang SHAPE N [--gc-before] [--quiet-gc] | timing K | facts");
  process.exit(2);
}

await main();
