/**
 * The watchdog benchmark's daemon: an init hook that only says it ran, then
 * nothing, so the CPU it spends while idle is bun-daemon's and the runtime's.
 *
 *   bun scripts/bench/idle.ts run --pid-file F
 *   BENCH_IDLE_TICK_MS=N   the init hook also starts an empty, unref'd
 *                          setInterval of N ms: the event loop's own cost of
 *                          waking as often as the watchdog, without a datagram
 *
 * The init hook prints "READY <pid>" on stdout: the only hook, so the
 * watchdog (started by the lifecycle when WATCHDOG_USEC is set) is the one
 * difference between a supervised and an unsupervised run.
 */
import { writeSync } from "node:fs";
import { defineDaemon } from "../../src/index.ts";

const daemon = defineDaemon({ name: "idle" });

daemon.on("init", () => {
  const tick = Number(process.env.BENCH_IDLE_TICK_MS ?? 0);
  // unref'd, as the watchdog's timer is: the lifecycle keeps the process alive.
  if (tick > 0) setInterval(() => {}, tick).unref();
  writeSync(1, `READY ${process.pid}\n`);
});

await daemon.main();
