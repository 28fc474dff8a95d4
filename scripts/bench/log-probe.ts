/**
 * Log-line throughput of a daemon's logger, timed in-process:
 *
 *   BENCH_LOG_LINES=20000 bun scripts/bench/log-probe.ts NAME 2>FILE         # the file path
 *   BENCH_LOG_SOCKET=/path BENCH_LOG_LINES=20000 bun scripts/bench/log-probe.ts NAME   # syslog
 *
 * The logger is the daemon's own, from src/log.ts createLogger(NAME,
 * "daemon"): target "stderr" (its fd 2 reporter: one synchronous write(2) of
 * a timestamped line, fd 2 being the log file a detached daemon has), or,
 * with BENCH_LOG_SOCKET, target "syslog" at that socket after ready() (only
 * the createSyslogReporter reporter left, as in a detached daemon once
 * ready: one non-blocking datagram a line, dropped and counted when the
 * receiver's queue is full). 100 uncounted lines ("warm N") first, a 50 ms
 * pause, then NAME's lines "line N ..." as fast as the loop goes, timed as a
 * whole. With syslog, 1.1 s later one more line, "end": the reporter sends
 * its count of dropped lines just before it (at most one count a second), so
 * every line is then in the receiver's output or in a count. Prints one JSON
 * line on stdout: { sent, warm, ms } (ms: the timed loop only).
 */
import { createLogger } from "../../src/log.ts";

const name = process.argv[2];
if (!name) {
  process.stderr.write("usage: bun scripts/bench/log-probe.ts NAME\n");
  process.exit(2);
}
const lines = Number(process.env.BENCH_LOG_LINES ?? 20_000);
const socket = process.env.BENCH_LOG_SOCKET;
const WARM = 100;

const logger = socket ? createLogger(name, "daemon", { target: "syslog", syslog: { socket } }) : createLogger(name, "daemon", { target: "stderr" });
logger.ready();
const { log } = logger;

for (let i = 1; i <= WARM; i++) log.info(`warm ${i}`);
await Bun.sleep(50);
const t0 = performance.now();
// A line of a plausible length (about 60 characters of text).
for (let i = 1; i <= lines; i++) log.info(`line ${i} served GET /api/items?page=3 200 in 1.25 ms`);
const ms = performance.now() - t0;
if (socket) {
  await Bun.sleep(1100);
  log.info("end");
}
process.stdout.write(`${JSON.stringify({ sent: lines, warm: WARM, ms })}\n`);
