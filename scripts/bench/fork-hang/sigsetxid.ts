/**
 * glibc's posix_spawn child sets its internal signals (32 SIGCANCEL, 33
 * SIGSETXID) to SIG_IGN, and an ignored disposition survives execve. This
 * spawns a Bun that starts a few threads, prints its SigIgn/SigCgt and drops
 * to uid 65534 with process.setuid, first without, then with 32/33 in
 * POSIX_SPAWN_SETSIGDEF. Run as root: bun scripts/bench/fork-hang/sigsetxid.ts
 */
import { dlopen, FFIType as T, ptr } from "bun:ffi";
const l = dlopen("libc.so.6", {
  posix_spawn: { args: [T.ptr, T.ptr, T.ptr, T.ptr, T.ptr, T.ptr], returns: T.i32 },
  posix_spawnattr_init: { args: [T.ptr], returns: T.i32 },
  posix_spawnattr_setflags: { args: [T.ptr, T.i16], returns: T.i32 },
  posix_spawnattr_setsigdefault: { args: [T.ptr, T.ptr], returns: T.i32 },
  waitpid: { args: [T.i32, T.ptr, T.i32], returns: T.i32 },
}).symbols;
const keep: Buffer[] = [];
const c = (s: string) => { const b = Buffer.from(s + "\0"); keep.push(b); return b; };
const arr = (xs: string[]) => { const a = new BigUint64Array(xs.length + 1); xs.forEach((s, i) => (a[i] = BigInt(ptr(c(s))))); return a; };
const script = `const fs=require("fs");const st=()=>fs.readFileSync("/proc/self/status","utf8").split("\\n").filter(l=>/^(SigIgn|SigCgt)/.test(l)).join(" ");
await fs.promises.readFile("/etc/hostname"); await Bun.file("/etc/hostname").text(); const w = new Worker("data:text/javascript,setTimeout(()=>{},100000)"); await Bun.sleep(300);
console.log("threads", fs.readdirSync("/proc/self/task").length, st());
const t0=performance.now(); process.setgid(65534);process.setuid(65534);
const t=fs.readdirSync("/proc/self/task").map(t=>fs.readFileSync("/proc/self/task/"+t+"/status","utf8").match(/Uid:\\s+(\\S+)/)[1]);console.log("setuid took", (performance.now()-t0).toFixed(1), "ms; task uids", t.join(","));process.exit(0)`;
const argv = arr([process.execPath, "-e", script]);
const env = arr(Object.entries(process.env).map(([k, v]) => `${k}=${v}`));
for (const def of [false, true]) {
  const attr = new Uint8Array(512);
  l.posix_spawnattr_init(ptr(attr));
  l.posix_spawnattr_setflags(ptr(attr), 0x80 | (def ? 4 : 0));
  const set = new Uint8Array(128); set[3]! |= 0x80; set[4]! |= 0x01; // signals 32, 33
  l.posix_spawnattr_setsigdefault(ptr(attr), ptr(set));
  const pid = new Int32Array(1);
  console.log(def ? "SETSIGDEF {32,33}:" : "no SETSIGDEF:", "rc", l.posix_spawn(ptr(pid), ptr(c(process.execPath)), null, ptr(attr), ptr(argv), ptr(env)));
  const st = new Int32Array(1);
  l.waitpid(pid[0]!, ptr(st), 0);
  console.log("status", st[0]);
}
