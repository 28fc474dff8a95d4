/**
 * The churn section's plain server: one Bun.serve and nothing else, the
 * floor the daemons are compared with; also the app pm2 runs in cluster mode.
 *
 *   CHURN_PORT=P bun scripts/bench/churn-bare.ts
 *
 * Binds 127.0.0.1:P with SO_REUSEPORT (Bun's node:cluster shares no
 * listening handle: each worker of a pm2 cluster binds the port itself),
 * answers every request with "pid N", prints READY on stdout and, under a
 * process manager, sends it "ready" over IPC (pm2's wait_ready). SIGTERM or
 * SIGINT: stop accepting, finish what is in flight, exit 0.
 */
const server = Bun.serve({
  port: Number(process.env.CHURN_PORT),
  hostname: "127.0.0.1",
  reusePort: true,
  fetch: () => new Response(`pid ${process.pid}\n`),
});

let stopping = false;
async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  setTimeout(() => process.exit(0), 5000).unref();
  await server.stop();
  process.exit(0);
}
process.on("SIGTERM", () => void stop());
process.on("SIGINT", () => void stop());

process.send?.("ready");
process.stdout.write(`READY ${server.port}\n`);
