/** Importing bun-daemon does nothing: no fds, no signal handlers, no output, no libc calls. */
import { expect, test } from "bun:test";
import { join } from "node:path";
import { BUN, ROOT, run, tempDir } from "./helpers.ts";

const dir = tempDir();

// Prints what the process looks like before and after a dynamic import.
const probe = (spec: string) => `
const fs = require("fs");
const look = () => {
  const s = fs.readFileSync("/proc/self/status", "utf8");
  return {
    fds: fs.readdirSync("/proc/self/fd").length,
    SigCgt: /SigCgt:\\s*(\\S+)/.exec(s)[1],
    SigIgn: /SigIgn:\\s*(\\S+)/.exec(s)[1],
    SigBlk: /SigBlk:\\s*(\\S+)/.exec(s)[1],
    listeners: ["SIGTERM", "SIGINT", "SIGHUP", "SIGUSR1", "exit"].map((e) => process.listenerCount(e)),
    maps: fs.readFileSync("/proc/self/maps", "utf8").split("\\n").filter((l) => /tcc|ffi/i.test(l)).length,
  };
};
// Warm up with an empty module: the first dynamic import makes the runtime
// (glibc's lazy setxid handler, signal 33) change state by itself.
await import(${JSON.stringify(join(ROOT, "test/fixtures/empty.ts"))});
const before = look();
const mod = await import(${JSON.stringify(spec)});
const after = look();
// stdout carries only this line: anything the import printed breaks the parse.
console.log(JSON.stringify({ before, after, exports: Object.keys(mod).sort() }));
`;

test("import has no side effects", async () => {
  const r0 = await run([BUN, "-e", probe(join(ROOT, "src/index.ts"))]);
  expect(r0.code).toBe(0);
  expect(r0.stderr).toBe("");
  const r = JSON.parse(r0.stdout);
  expect(r.before.fds).toBeGreaterThan(2);
  expect(r.before.SigCgt).toMatch(/^[0-9a-f]{16}$/);
  expect(r.after).toEqual(r.before);
  expect(r.exports).toEqual([
    "DaemonError", "daemonize", "defaultPidFile", "defineDaemon", "listenFds", "notify", "onInit", "onReady", "onReload", "onShutdown",
  ]);
}, 30_000);

test("the package name resolves to src/index.ts", async () => {
  const r = await run([BUN, "-e", `const m = await import("bun-daemon"); console.log(typeof m.defineDaemon, typeof m.daemonize)`]);
  expect(r).toMatchObject({ code: 0, stdout: "function function\n" });
}, 30_000);

const strace = Bun.which("strace");
test.skipIf(!strace)("import opens no libc and reads nothing of /proc (strace between two markers)", async () => {
  const trace = join(dir, "trace");
  const code = `
const fs = require("fs");
await import(${JSON.stringify(join(ROOT, "test/fixtures/empty.ts"))});
try { fs.openSync("/dev/null/MARK-BEFORE", "r"); } catch {}
await import(${JSON.stringify(join(ROOT, "src/index.ts"))});
try { fs.openSync("/dev/null/MARK-AFTER", "r"); } catch {}
`;
  const r = await run([strace!, "-f", "-e", "trace=open,openat,openat2", "-o", trace, BUN, "-e", code]);
  expect(r.code).toBe(0);
  const text = await Bun.file(trace).text();
  // Only the main thread runs the import; runtime threads read /proc/self/statm on their own.
  const main = text.split(/\s/, 1)[0]!;
  const window = text.slice(text.indexOf("MARK-BEFORE"), text.indexOf("MARK-AFTER"));
  const between = window.split("\n").filter((l) => l.startsWith(`${main} `)).join("\n");
  expect(between.length).toBeGreaterThan(0);
  expect(between).toContain(`"${join(ROOT, "src")}`); // the window really covers the import: its modules are read
  // What bun-daemon itself would open (the runtime reads /proc/self/statm on its own).
  expect(between.split("\n").filter((l) => /libc\.so|ld-musl|\/proc\/self\/(maps|smaps|status|fd|locks)|\/proc\/locks|\.pid"/.test(l))).toEqual([]);
}, 30_000);
