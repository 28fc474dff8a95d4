/**
 * reload() round trip timed in-process, without a process start-up per call:
 *
 *   BENCH_RELOAD_CALLS=100 bun scripts/bench/reload-probe.ts NAME PID_FILE
 *
 * Calls `reload(NAME, PID_FILE)` from src/control.ts (SIGHUP, then wait for
 * the outcome the daemon publishes in its state file) 5 times uncounted (the
 * first loads src/ffi.ts and its libc symbols), then times each of the
 * calls alone with Bun.nanoseconds(), one after the other. reload() prints
 * its "reloaded NAME (pid N)" line per call; the last line of stdout is one
 * JSON object: median, mean and min ms per call, how many returned 0, and
 * how many of the timed calls took under 5 ms (answered before reload()'s
 * first 10 ms pause between reads of the state file).
 */
import { reload } from "../../src/control.ts";

const [name, pidFile] = process.argv.slice(2);
if (!name || !pidFile) {
  process.stderr.write("usage: bun scripts/bench/reload-probe.ts NAME PID_FILE\n");
  process.exit(2);
}
const calls = Number(process.env.BENCH_RELOAD_CALLS ?? 100);
const WARMUP = 5;

let ok = 0;
for (let i = 0; i < WARMUP; i++) if ((await reload(name, pidFile)) === 0) ok++;
const ns = new Float64Array(calls);
const t0 = Bun.nanoseconds();
for (let i = 0; i < calls; i++) {
  const a = Bun.nanoseconds();
  if ((await reload(name, pidFile)) === 0) ok++;
  ns[i] = Bun.nanoseconds() - a;
}
const totalNs = Bun.nanoseconds() - t0;
ns.sort();
const fast = ns.filter((v) => v < 5e6).length;
const median = calls % 2 ? ns[(calls - 1) / 2]! : (ns[calls / 2 - 1]! + ns[calls / 2]!) / 2;
process.stdout.write(`${JSON.stringify({ calls: WARMUP + calls, ok, medianMs: median / 1e6, meanMs: totalNs / calls / 1e6, minMs: ns[0]! / 1e6, fast })}\n`);
