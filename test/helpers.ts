/**
 * Shared by the tests: run commands, inspect processes from outside through
 * /proc, and stop every process a test started (by PID, SIGTERM then SIGKILL).
 *
 * The /proc readers here (alive, isFlocked…) deliberately repeat what src/
 * does rather than import it: an oracle that shares the code it checks
 * would pass along with that code's bugs.
 */
import { afterAll, afterEach } from "bun:test";
import { chmodSync, closeSync, constants, cpSync, existsSync, fstatSync, mkdtempSync, openSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

export const ROOT = resolve(import.meta.dir, "..");
export const BUN = process.execPath;
export const FIXTURE = join(ROOT, "test/fixtures/app.ts");
export const HELLO = join(ROOT, "examples/hello.ts");

export interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run a command to completion (bounded by `timeoutMs`), capturing its output. */
export async function run(cmd: string[], opts: { env?: Record<string, string | undefined>; timeoutMs?: number; cwd?: string } = {}): Promise<Result> {
  const proc = Bun.spawn(cmd, {
    env: { ...process.env, ...opts.env } as Record<string, string>,
    cwd: opts.cwd ?? ROOT,
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  track(proc.pid);
  const timer = setTimeout(() => proc.kill("SIGKILL"), opts.timeoutMs ?? 60_000);
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(timer);
  return { code, stdout, stderr };
}

/** Every pid a test started or learned of; stopped after each test. */
const tracked = new Set<number>();
export function track(pid: number | undefined): number | undefined {
  if (pid !== undefined && pid > 1) tracked.add(pid);
  return pid;
}

/** The pid number from "started NAME (pid N)". */
export function startedPid(stdout: string): number | undefined {
  const m = /started \S+ \(pid (\d+)\)/.exec(stdout);
  return m ? Number(m[1]) : undefined;
}

export function procState(pid: number): string | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, "utf8");
    return s.slice(s.lastIndexOf(")") + 2).split(" ")[0];
  } catch {
    return undefined;
  }
}

/** Alive until all its threads are gone (a zombie leader with threads still exiting counts as alive). */
export function alive(pid: number): boolean {
  const s = procState(pid);
  if (s === undefined || s === "X") return false;
  if (s !== "Z") return true;
  try {
    return readdirSync(`/proc/${pid}/task`).length > 1;
  } catch {
    return false;
  }
}

export async function waitFor(cond: () => boolean | Promise<boolean>, ms = 10_000, step = 10): Promise<boolean> {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    if (await cond()) return true;
    await Bun.sleep(step);
  }
  return cond();
}

/** SIGTERM, wait, SIGKILL: only the pids given, never by name. */
export async function stopPid(pid: number, graceMs = 3000): Promise<void> {
  if (!alive(pid)) return;
  try {
    process.kill(pid, "SIGTERM");
  } catch {
    return;
  }
  if (await waitFor(() => !alive(pid), graceMs)) return;
  try {
    process.kill(pid, "SIGKILL");
  } catch {}
  await waitFor(() => !alive(pid), 3000);
}

export async function stopTracked(): Promise<void> {
  const pids = [...tracked];
  tracked.clear();
  await Promise.all(pids.map((p) => stopPid(p)));
}

/** Register afterEach/afterAll that stop what the tests started. */
export function cleanupProcesses(): void {
  afterEach(stopTracked);
  afterAll(stopTracked);
}

/** mulberry32: a small seeded PRNG for the fuzz tests, so a failure can be replayed from its seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A TCP port on 127.0.0.1 free a moment ago (bound and released). */
export function freePort(): number {
  const s = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = s.port;
  s.stop(true);
  return port;
}

/** A fresh temporary directory, removed after the file's tests. */
export function tempDir(prefix = "bd-test-"): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Fields of /proc/PID/stat after the command name: [state, ppid, pgrp, session, tty_nr, ...]. */
export function statFields(pid: number | "self"): string[] {
  const s = readFileSync(`/proc/${pid}/stat`, "utf8");
  return s.slice(s.lastIndexOf(")") + 2).split(" ");
}

export function statusField(pid: number, field: string): string | undefined {
  const m = new RegExp(`^${field}:\\s*(.*)$`, "m").exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m?.[1]?.trim();
}

/** fd number → link target of a process's open fds. */
export function fdTargets(pid: number): Map<number, string> {
  const out = new Map<number, string>();
  for (const f of readdirSync(`/proc/${pid}/fd`)) {
    try {
      out.set(Number(f), readlinkSync(`/proc/${pid}/fd/${f}`));
    } catch {}
  }
  return out;
}

/**
 * Whether some process holds a flock on `path` (per /proc/locks). /proc/locks
 * names the file by its superblock's device, which is not stat's st_dev on
 * btrfs (a subvolume has an anonymous device of its own): take the device
 * from the file's mount in mountinfo instead, found through an fd's mnt_id.
 */
export function isFlocked(path: string): boolean {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  let key: string;
  try {
    const ino = fstatSync(fd).ino;
    const mnt = /^mnt_id:\s*(\d+)/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, "utf8"))![1];
    const line = readFileSync("/proc/self/mountinfo", "utf8").split("\n").find((l) => l.split(" ")[0] === mnt)!;
    const [major, minor] = line.split(" ")[2]!.split(":").map(Number) as [number, number];
    key = `${major.toString(16).padStart(2, "0")}:${minor.toString(16).padStart(2, "0")}:${ino}`;
  } finally {
    closeSync(fd);
  }
  return readFileSync("/proc/locks", "utf8").split("\n").some((l) => l.includes(" FLOCK ") && !l.includes("->") && l.includes(` ${key} `));
}

/** Pids of live processes whose command line mentions `needle` (to assert nothing stray is left; never to kill). */
export function pidsMentioning(needle: string): number[] {
  const out: number[] = [];
  for (const d of readdirSync("/proc")) {
    const pid = Number(d);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(needle) && alive(pid)) out.push(pid);
    } catch {}
  }
  return out;
}

/** SigIgn/SigCgt/SigBlk of a fresh `bun -e ''`: what the runtime owns by itself. */
export async function bareBunSignals(): Promise<{ SigIgn: string; SigBlk: string }> {
  const r = await run([BUN, "-e", `const s=require("fs").readFileSync("/proc/self/status","utf8");console.log(JSON.stringify({SigIgn:/SigIgn:\\s*(\\S+)/.exec(s)[1],SigBlk:/SigBlk:\\s*(\\S+)/.exec(s)[1]}))`]);
  return JSON.parse(r.stdout);
}

/**
 * A world-readable copy of the runtime and the program (src/, test/fixtures/,
 * the dependencies) for tests that run processes as other users (nobody):
 * a clone may sit where they cannot enter (under /root, in a `mkdir -m 700`
 * directory), and its bun and sources must still be theirs to run. Call it
 * once, at file or describe scope: the copy (about 100 MB, the bun binary)
 * is removed in that scope's afterAll. `root` is also a working directory they may enter.
 */
export function forOtherUsers(): { bun: string; root: string; fixture: (rel: string) => string } {
  const root = tempDir("bd-others-");
  chmodSync(root, 0o755);
  cpSync(BUN, join(root, "bun"));
  chmodSync(join(root, "bun"), 0o755);
  for (const rel of ["src", "test/fixtures", "test/stress/fixtures"]) {
    if (existsSync(join(ROOT, rel))) cpSync(join(ROOT, rel), join(root, rel), { recursive: true });
  }
  for (const dep of ["citty", "consola"]) cpSync(join(ROOT, "node_modules", dep), join(root, "node_modules", dep), { recursive: true, dereference: true });
  chmodTree(root);
  return { bun: join(root, "bun"), root, fixture: (rel: string) => join(root, rel) };
}

function chmodTree(path: string): void {
  const st = statSync(path);
  chmodSync(path, st.isDirectory() ? 0o755 : st.mode & 0o111 ? 0o755 : 0o644);
  if (st.isDirectory()) for (const e of readdirSync(path)) chmodTree(join(path, e));
}

// One datagram a line: "<receiver's CLOCK_MONOTONIC seconds> <fields joined by |>".
const NOTIFY_RECEIVER = `
import socket, sys, time
addr, out = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\\0" + addr[1:] if addr.startswith("@") else addr)
open(out + ".bound", "w").close()
with open(out, "a") as f:
    while True:
        msg = s.recv(65536).decode()
        f.write("%.6f %s\\n" % (time.monotonic(), msg.replace("\\n", "|")))
        f.flush()
`;

export interface NotifyReceiver {
  /** The NOTIFY_SOCKET value: a path, or "@name" for the abstract namespace. */
  address: string;
  /** Datagrams so far, fields joined by "|". */
  msgs(): string[];
  /** With the receiver's monotonic time (s) of each. */
  timed(): { t: number; m: string }[];
}

let receivers = 0;
/**
 * A real AF_UNIX datagram socket (bound by python3: Bun has no unix
 * datagrams) that records every sd_notify datagram; stopped with the test's
 * processes. Resolves once it is bound.
 */
export async function notifyReceiver(dir: string, kind: "path" | "abstract" = "abstract"): Promise<NotifyReceiver> {
  const python = Bun.which("python3");
  if (!python) throw new Error("python3, the datagram receiver, is missing");
  const n = ++receivers;
  const out = join(dir, `rx${n}.msgs`);
  const address = kind === "path" ? join(dir, `rx${n}.sock`) : `@bun-daemon-notify-test-${process.pid}-${n}`;
  const rx = Bun.spawn([python, "-c", NOTIFY_RECEIVER, address, out], { stdout: "ignore", stderr: "inherit" });
  track(rx.pid);
  if (!(await waitFor(() => existsSync(`${out}.bound`)))) throw new Error("the python3 receiver did not bind");
  const timed = () =>
    (existsSync(out) ? readFileSync(out, "utf8").split("\n").filter(Boolean) : []).map((l) => {
      const i = l.indexOf(" ");
      return { t: Number(l.slice(0, i)), m: l.slice(i + 1) };
    });
  return { address, timed, msgs: () => timed().map((x) => x.m) };
}
