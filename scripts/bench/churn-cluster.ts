/**
 * The churn section's node:cluster baseline under Bun: a primary that loads
 * no app and N Bun.serve workers on one port (SO_REUSEPORT: Bun's
 * node:cluster hands no listening socket to its workers).
 *
 *   CHURN_PORT=P [CHURN_WORKERS=2] bun scripts/bench/churn-cluster.ts
 *
 * Primary, on stdout: "READY pid pid" once every worker listens, "rolled K"
 * after the K-th rolling restart, "replaced OLD NEW" after a crashed worker's
 * replacement listens.
 * - SIGHUP: rolling restart, one worker at a time: fork a new worker, wait
 *   until it says it is listening, then SIGTERM the old one and wait for its
 *   exit. (Bun emits no cluster 'listening' event for Bun.serve, so a worker
 *   sends "listening" over IPC once Bun.serve has returned.)
 * - A worker that exits unasked (kill -9) is replaced at once.
 * - SIGTERM: SIGTERM every worker, wait for them, exit 0.
 * Worker: SIGTERM stops accepting, finishes what is in flight, exits 0.
 */
import cluster, { type Worker } from "node:cluster";

const port = Number(process.env.CHURN_PORT);
const count = Number(process.env.CHURN_WORKERS ?? 2);

if (cluster.isPrimary) {
  const say = (line: string) => process.stdout.write(`${line}\n`);
  /** Workers being replaced or stopped: their exit is not a crash. */
  const retiring = new Set<Worker>();
  let stopping = false;
  let rolls = 0;
  let rolling: Promise<void> = Promise.resolve();

  const fork = (): Promise<Worker> =>
    new Promise((resolve, reject) => {
      const w = cluster.fork({ CHURN_PORT: String(port) });
      const onMessage = (m: unknown) => {
        if (m !== "listening") return;
        w.off("message", onMessage);
        w.off("exit", onExit);
        resolve(w);
      };
      const onExit = (code: number | null, signal: string | null) => reject(new Error(`worker ${w.process.pid} exited (${code ?? signal}) before listening`));
      w.on("message", onMessage);
      w.once("exit", onExit);
    });

  const exited = (w: Worker): Promise<void> =>
    new Promise((resolve) => {
      if (w.isDead()) resolve();
      else w.once("exit", () => resolve());
    });

  const retire = async (w: Worker): Promise<void> => {
    retiring.add(w);
    const done = exited(w);
    if (w.process.pid !== undefined) {
      try {
        process.kill(w.process.pid, "SIGTERM");
      } catch {}
    }
    await done;
    retiring.delete(w);
  };

  const live = () => Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined && !retiring.has(w) && !w.isDead());

  cluster.on("exit", (w, code, signal) => {
    if (stopping || retiring.has(w)) return;
    fork().then(
      (n) => say(`replaced ${w.process.pid} ${n.process.pid} (${code ?? signal})`),
      (err: Error) => say(`replace failed: ${err.message}`),
    );
  });

  process.on("SIGHUP", () => {
    rolling = rolling.then(async () => {
      for (const old of live()) {
        await fork();
        await retire(old);
      }
      say(`rolled ${++rolls}`);
    }, () => {});
  });

  process.on("SIGTERM", () => {
    stopping = true;
    void Promise.all(Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined).map((w) => retire(w))).then(() => process.exit(0));
    setTimeout(() => process.exit(1), 10_000).unref();
  });

  const first = await Promise.all(Array.from({ length: count }, () => fork()));
  say(`READY ${first.map((w) => w.process.pid).join(" ")}`);
} else {
  const server = Bun.serve({
    port,
    hostname: "127.0.0.1",
    reusePort: true,
    fetch: () => new Response(`pid ${process.pid}\n`),
  });
  let stopping = false;
  process.on("SIGTERM", () => {
    if (stopping) return;
    stopping = true;
    setTimeout(() => process.exit(0), 5000).unref();
    void server.stop().then(() => process.exit(0));
  });
  process.send?.("listening");
}
