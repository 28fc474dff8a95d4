/**
 * notify() send cost, timed in-process (a fresh process per sample):
 *
 *   NOTIFY_SOCKET=/path BENCH_NOTIFY_CALLS=2000 bun scripts/bench/notify-probe.ts
 *
 * Takes the supervisor's variables the way the daemon's lifecycle does
 * (takeSupervisorEnv), warms up (the first call loads src/ffi.ts and its
 * libc symbols), then times each `notify({ STATUS: "x" })` call alone with
 * Bun.nanoseconds(). Prints one JSON line: median and mean µs per call, and
 * how many calls returned true (all of them with a socket, none without).
 */
import { notify } from "../../src/index.ts";
import { takeSupervisorEnv } from "../../src/notify.ts";

const calls = Number(process.env.BENCH_NOTIFY_CALLS ?? 2000);
const WARMUP = 200;

takeSupervisorEnv();
let sent = 0;
for (let i = 0; i < WARMUP; i++) if (notify({ STATUS: "x" })) sent++;
const ns = new Float64Array(calls);
const t0 = Bun.nanoseconds();
for (let i = 0; i < calls; i++) {
  const a = Bun.nanoseconds();
  if (notify({ STATUS: "x" })) sent++;
  ns[i] = Bun.nanoseconds() - a;
}
const totalNs = Bun.nanoseconds() - t0;
ns.sort();
const median = calls % 2 ? ns[(calls - 1) / 2]! : (ns[calls / 2 - 1]! + ns[calls / 2]!) / 2;
process.stdout.write(`${JSON.stringify({ calls: WARMUP + calls, sent, medianUs: median / 1000, meanUs: totalNs / calls / 1000 })}\n`);
