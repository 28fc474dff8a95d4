/**
 * Checks that importing bun-daemon does no work: the process's open fds,
 * caught and ignored signals and libc mappings are the same before and after.
 * Prints one JSON object: { same: boolean, before, after }. Threads are shown
 * but not compared: Bun starts its own (JIT, transpiler pool) as code loads.
 */
import { readdirSync, readFileSync } from "node:fs";

function snapshot() {
  const status = readFileSync("/proc/self/status", "utf8");
  const field = (name: string) => new RegExp(`^${name}:\\s*(\\S+)`, "m").exec(status)?.[1] ?? "";
  const maps = readFileSync("/proc/self/maps", "utf8");
  return {
    fds: readdirSync("/proc/self/fd").length,
    sigCgt: field("SigCgt"),
    sigIgn: field("SigIgn"),
    sigBlk: field("SigBlk"),
    // A dlopen of libc by bun-daemon would show up as more mappings of it.
    libcMappings: maps.split("\n").filter((l) => /\/(libc\.so\.6|ld-musl-[^/]+\.so\.1)$/.test(l)).length,
  };
}

const threads = () => readdirSync("/proc/self/task").length;
// Warm the loader first, so its own threads are not charged to bun-daemon.
await import("./empty.ts");
const before = { ...snapshot(), threads: threads() };
await import("bun-daemon");
const after = { ...snapshot(), threads: threads() };
const { threads: _a, ...b } = before;
const { threads: _b, ...a } = after;
console.log(JSON.stringify({ same: JSON.stringify(a) === JSON.stringify(b), before, after }));
