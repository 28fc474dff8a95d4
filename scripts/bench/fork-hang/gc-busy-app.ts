/**
 * A daemon whose launcher keeps the garbage collector busy when `start`
 * forks: it fills a ring of ~200k live objects at import, then churns it on a
 * 1 ms timer and calls Bun.gc(false) for ~30 ms before daemon.main(), and the
 * timer keeps running while main() loads the launcher and forks. The
 * fixture of part 2 of README.md (start-loop.ts runs it).
 *
 *   bun scripts/bench/fork-hang/gc-busy-app.ts start --pid-file /tmp/x/y.pid
 */
import { defineDaemon } from "../../../src/index.ts";

const RING = 200_000;
const ring: unknown[] = new Array(RING).fill(0);
let at = 0;
function churn(n: number): void {
  for (let i = 0; i < n; i++) {
    ring[at] = i % 97 === 0 ? new Array(64).fill(i) : { i, a: [i, at], s: `s${i}:${at}` };
    at = (at + 1) % RING;
  }
}
churn(RING);
let ticks = 0;
const timer = setInterval(() => {
  churn(5000);
  if (++ticks % 5 === 0) Bun.gc(false);
}, 1);

const daemon = defineDaemon({ name: "gc-busy", description: "fork-hang fixture: a GC-busy launcher" });
// The daemon stage runs this file too; once it is up the load has done its job.
daemon.on("ready", () => clearInterval(timer));

await Bun.sleep(30);
await daemon.main();
