/**
 * An HTTP readiness prober that stays up, for the pid1 section of
 * scripts/bench.ts: GET URL over and over, timed in-process.
 *
 *   bun scripts/bench/pid1-fetch.ts http://127.0.0.1:PORT/readyz
 *
 * Prints READY, then reads commands from stdin, one a line:
 *
 *   N close|keep [PACE_MS]
 *     N fetches of URL one after the other (PACE_MS apart if given), each
 *     read to its end and checked (200, "ready\n"). close: `Connection:
 *     close` and `keepalive: false`, a new TCP connection per call, as
 *     kubelet's HTTP prober makes (its transport sets DisableKeepAlives);
 *     keep: the runtime's pooled connection. Answers one JSON line: how
 *     many were ok, mean and median µs per call (Bun.nanoseconds, the
 *     pauses left out), and this process's CPU over the batch in µs
 *     (getrusage's user + sys through process.cpuUsage(), every thread's,
 *     read just before the first call and just after the last; the
 *     pauses' timer wake-ups included).
 *
 * Exits 0 at EOF.
 */
const url = process.argv[2];
if (!url) {
  process.stderr.write("usage: bun scripts/bench/pid1-fetch.ts URL\n");
  process.exit(2);
}

/** µs, every thread's, those the runtime ended meanwhile too. */
function cpuUs(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

async function batch(calls: number, close: boolean, paceMs: number) {
  const init: RequestInit = close ? { headers: { connection: "close" }, keepalive: false } : {};
  const ns = new Float64Array(calls);
  let ok = 0;
  const c0 = cpuUs();
  for (let i = 0; i < calls; i++) {
    if (paceMs > 0 && i > 0) await Bun.sleep(paceMs);
    const a = Bun.nanoseconds();
    const res = await fetch(url!, init);
    const body = await res.text();
    if (res.status === 200 && body === "ready\n") ok++;
    ns[i] = Bun.nanoseconds() - a;
  }
  const cpu = cpuUs() - c0;
  const totalNs = ns.reduce((a, b) => a + b, 0);
  ns.sort();
  const median = calls % 2 ? ns[(calls - 1) / 2]! : (ns[calls / 2 - 1]! + ns[calls / 2]!) / 2;
  return { calls, ok, meanUs: totalNs / calls / 1000, medianUs: median / 1000, cpuUs: cpu };
}

process.stdout.write("READY\n");
for await (const line of console) {
  const [n, how, pace] = line.trim().split(/\s+/);
  if (!n) continue;
  const calls = Number(n);
  const paceMs = Number(pace ?? 0);
  try {
    if (!Number.isInteger(calls) || calls < 1 || (how !== "close" && how !== "keep") || !(paceMs >= 0)) throw new Error(`expected "N close|keep [PACE_MS]", got ${JSON.stringify(line)}`);
    process.stdout.write(`${JSON.stringify(await batch(calls, how === "close", paceMs))}\n`);
  } catch (err) {
    process.stdout.write(`${JSON.stringify({ error: (err as Error).message })}\n`);
  }
}
process.exit(0);
