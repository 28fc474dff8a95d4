/**
 * The benchmark's daemon: binds an HTTP port in init and does nothing else,
 * so what is measured is the runtime and bun-daemon, not the app.
 *
 *   bun scripts/bench/tiny.ts run|start|stop|status|reload --port P --pid-file F
 *
 * Load applied in the launcher only (never in the re-executed daemon stage,
 * which inherits the same environment), before main():
 *   BENCH_NOFILE=N     soft and hard RLIMIT_NOFILE = N
 *   BENCH_FDS=N        hold N more open fds, not close-on-exec
 *   BENCH_HEAP_MB=N    hold N MiB of live, touched memory
 *   BENCH_SETUP_LOG=F  write {"ms", "rssMB"} of that setup to F, so the
 *                      benchmark can take the fixture's own work out of the wall time
 * In the running daemon (either mode):
 *   BENCH_HUP_LOG=F    the reload hook appends CLOCK_MONOTONIC ms at its start
 * In every process of the program:
 *   BENCH_MARKS=F      append "<first|daemon> <origin|main|listening> <epoch ms>"
 *                      (wall clock, no FFI, so marking costs next to nothing)
 * In the foreground, the ready hook prints READY on stdout (the line the
 * re-spawn launcher and the benchmark wait for).
 */
import { appendFileSync, openSync, readFileSync, writeFileSync, writeSync } from "node:fs";
import { defineDaemon } from "../../src/index.ts";
import { isDaemonStage } from "../../src/stage.ts";
import { holdFds, monoMs, setNofile } from "./sys.ts";

const env = process.env;
const stage = isDaemonStage() ? "daemon" : "first";

function mark(what: string, at = performance.timeOrigin + performance.now()): void {
  if (env.BENCH_MARKS) appendFileSync(env.BENCH_MARKS, `${stage} ${what} ${at}\n`);
}

// Module scope keeps it alive for the launcher's whole life.
const held: Buffer[] = [];

function launcherLoad(): void {
  const nofile = Number(env.BENCH_NOFILE ?? 0);
  const fds = Number(env.BENCH_FDS ?? 0);
  const heapMB = Number(env.BENCH_HEAP_MB ?? 0);
  if (!nofile && !fds && !heapMB) return;
  const t0 = performance.now();
  if (nofile) setNofile(nofile);
  if (fds) holdFds(openSync("/dev/null", "r"), fds - 1);
  // 1 MiB chunks, every page written (untouched pages would cost fork
  // nothing). Buffers rather than JS arrays: same page tables, faster to fill.
  for (let i = 0; i < heapMB; i++) held.push(Buffer.allocUnsafeSlow(1 << 20).fill((i & 0xfe) | 1));
  const ms = performance.now() - t0;
  const rss = /^VmRSS:\s*(\d+)/m.exec(readFileSync("/proc/self/status", "utf8"));
  if (env.BENCH_SETUP_LOG) writeFileSync(env.BENCH_SETUP_LOG, JSON.stringify({ ms, rssMB: Number(rss?.[1] ?? 0) / 1024 }));
}

if (!isDaemonStage()) launcherLoad();

const daemon = defineDaemon({
  name: "tiny",
  args: { port: { type: "string", description: "TCP port on 127.0.0.1", default: "0" } },
});

daemon.on("init", (ctx) => {
  Bun.serve({ hostname: "127.0.0.1", port: Number(ctx.args.port), fetch: () => new Response(`hello from ${process.pid}\n`) });
  mark("listening");
});

daemon.on("ready", (ctx) => {
  if (ctx.mode === "foreground") writeSync(1, `READY ${process.pid}\n`);
});

daemon.on("reload", () => {
  const t = monoMs();
  if (env.BENCH_HUP_LOG) appendFileSync(env.BENCH_HUP_LOG, `${t}\n`);
});

// Deliberately empty: SIGTERM-to-gone measures the framework, not a hook.
daemon.on("shutdown", () => {});

mark("origin", performance.timeOrigin);
mark("main");
await daemon.main();
