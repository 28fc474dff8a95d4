/**
 * The health listener (--health-port: GET /livez, GET /readyz) across an
 * upgrade. The new process must get the health port as it gets ctx.serve's
 * (handed over, never bound while the old one holds it): the upgrade goes
 * through, probes that arrive meanwhile are answered (queued, never refused
 * or reset), and afterwards the new pid answers them on the same socket.
 *
 * Which process answers is read from outside: the listening socket's inode
 * (from /proc/net/tcp) and the processes holding an fd on it (/proc/PID/fd),
 * so the health responses stay as they are.
 */
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync, readlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { alive, BUN, cleanupProcesses, freePort, ROOT, tempDir, waitFor } from "./helpers.ts";
import type { LoadResult } from "./load.ts";
import { loadClient, serveCase, type ServeCase } from "./serve-case.ts";

cleanupProcesses();
const SERVE_APP = join(ROOT, "test/fixtures/serve-app.ts");
const HEALTH_APP = join(ROOT, "test/fixtures/health-app.ts");
const HEALTH_SERVE_APP = join(ROOT, "test/fixtures/health-serve-app.ts");
const dir = tempDir("bd-hup-");
let n = 0;

type Case = ServeCase & { health: number };

function setup(app: string, extraEnv: Record<string, string> = {}): Case {
  n++;
  const c = serveCase(dir, `hup${process.pid}-${n}`, [BUN, app], extraEnv);
  let health = freePort();
  while (health === c.port) health = freePort();
  return { ...c, health };
}

/** The load client (test/load.ts) in its own process on `path`, until stop(); then its result. */
const probe = (port: number, path: string) => loadClient(port, { path, ms: 120_000, keepAlive: 2, fresh: 3, timeoutMs: 10_000 });

/** One request on a fresh connection: status and body. */
async function get(port: number, path: string): Promise<{ status: number; body: string }> {
  const r = await fetch(`http://127.0.0.1:${port}${path}`, { headers: { connection: "close" } });
  return { status: r.status, body: await r.text() };
}

/** The inode of the socket listening on TCP `port` (any address), from /proc/net/tcp{,6}. */
function listeningInode(port: number): string | undefined {
  const hex = port.toString(16).toUpperCase().padStart(4, "0");
  for (const f of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text: string;
    try {
      text = readFileSync(f, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const cols = line.trim().split(/\s+/);
      // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
      if (cols.length > 9 && cols[1]!.endsWith(`:${hex}`) && cols[3] === "0A") return cols[9];
    }
  }
  return undefined;
}

/** Every live process with an fd on socket `inode` (all of /proc: nothing else may hold it). */
function holders(inode: string): number[] {
  const out: number[] = [];
  const want = `socket:[${inode}]`;
  for (const d of readdirSync("/proc")) {
    const pid = Number(d);
    if (!Number.isInteger(pid) || !alive(pid)) continue;
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        if (readlinkSync(`/proc/${pid}/fd/${fd}`) === want) {
          out.push(pid);
          break;
        }
      } catch {}
    }
  }
  return out;
}

/** Only answers, never a connection that failed: a 503 (an old process that is stopping says it is not ready) is an answer. */
function connectionFailures(r: LoadResult): Record<string, number> {
  return Object.fromEntries(Object.entries(r.failures).filter(([kind]) => kind !== "status-5xx"));
}

async function upgradesWhileProbing(c: Case, times: number, setVersion: boolean): Promise<{ pids: number[]; readyz: LoadResult; livez: LoadResult }> {
  const first = c.pid()!;
  const inode = listeningInode(c.health);
  expect(inode).toBeDefined();
  expect(holders(inode!)).toEqual([first]);
  const readyz = probe(c.health, "/readyz");
  const livez = probe(c.health, "/livez");
  // Both probers are connected and answered before the first upgrade.
  await Bun.sleep(700);
  const pids = [first];
  for (let v = 2; v < 2 + times; v++) {
    if (setVersion) writeFileSync(join(c.serveDir, "version"), String(v));
    const u = await c.cli(["upgrade", "--pid-file", c.pidFile]);
    expect(u.stderr).toBe("");
    expect(u.code).toBe(0);
    const now = c.pid()!;
    expect(now).not.toBe(pids.at(-1)!);
    expect(u.stdout).toContain(`pid ${pids.at(-1)} -> ${now}`);
    expect(alive(pids.at(-1)!)).toBe(false);
    // The same listening socket (handed over, not bound anew), and only the new pid holds it.
    expect(listeningInode(c.health)).toBe(inode!);
    expect(holders(inode!)).toEqual([now]);
    // So this answer is the new pid's: ready.
    expect(await get(c.health, "/readyz")).toEqual({ status: 200, body: "ready\n" });
    pids.push(now);
  }
  await Bun.sleep(300);
  return { pids, readyz: await readyz.stop(), livez: await livez.stop() };
}

describe("--health-port across an upgrade", () => {
  test("ctx.serve app + --health-port: 3 upgrades while /readyz and /livez are probed; each exits 0, no probe connection refused or reset, the new pid answers on the same socket", async () => {
    const c = setup(SERVE_APP);
    const r = await c.cli(["start", "--pid-file", c.pidFile, "--log-file", c.log, "--health-port", String(c.health)]);
    expect(r.code).toBe(0);
    expect(await get(c.health, "/readyz")).toEqual({ status: 200, body: "ready\n" });
    const { pids, readyz, livez } = await upgradesWhileProbing(c, 3, true);
    console.log(`readyz probe: ${JSON.stringify({ ok: readyz.ok, failed: readyz.failed, retried: readyz.retried, failures: readyz.failures, bodies: readyz.bodies })}`);
    console.log(`livez probe: ${JSON.stringify({ ok: livez.ok, failed: livez.failed, retried: livez.retried, failures: livez.failures, bodies: livez.bodies })}`);
    expect(connectionFailures(readyz)).toEqual({});
    expect(readyz.ok).toBeGreaterThan(50);
    expect(livez.failures).toEqual({});
    expect(livez.failed).toBe(0);
    expect(livez.ok).toBeGreaterThan(50);
    // The app's own port came along too.
    expect((await get(c.port, "/")).body).toBe(`v4 pid ${pids.at(-1)}\n`);
    expect((await c.cli(["stop", "--pid-file", c.pidFile])).code).toBe(0);
    expect(await waitFor(() => !alive(pids.at(-1)!), 10_000)).toBe(true);
  }, 120_000);

  test("an app with only the health listener (no ctx.serve), whose shutdown hook takes 1 s: 2 upgrades while probing; each exits 0, no probe connection refused or reset", async () => {
    const c = setup(HEALTH_APP, { BD_STOP_MS: "1000" });
    const r = await c.cli(["start", "--pid-file", c.pidFile, "--log-file", c.log, "--health-port", String(c.health)]);
    expect(r.code).toBe(0);
    const { readyz, livez } = await upgradesWhileProbing(c, 2, false);
    console.log(`readyz probe (health only): ${JSON.stringify({ ok: readyz.ok, failed: readyz.failed, retried: readyz.retried, failures: readyz.failures, bodies: readyz.bodies })}`);
    console.log(`livez probe (health only): ${JSON.stringify({ ok: livez.ok, failed: livez.failed, retried: livez.retried, failures: livez.failures, bodies: livez.bodies })}`);
    expect(connectionFailures(readyz)).toEqual({});
    expect(readyz.ok).toBeGreaterThan(50);
    expect(livez.failures).toEqual({});
    expect(livez.ok).toBeGreaterThan(50);
  }, 120_000);
});

describe("--health-port as before", () => {
  test("/livez 200 ok, /readyz 200 ready, anything else 404; after stop the port is closed", async () => {
    const c = setup(HEALTH_APP);
    const r = await c.cli(["start", "--pid-file", c.pidFile, "--health-port", String(c.health)]);
    expect(r.code).toBe(0);
    const pid = c.pid()!;
    expect(await get(c.health, "/livez")).toEqual({ status: 200, body: "ok\n" });
    expect(await get(c.health, "/readyz")).toEqual({ status: 200, body: "ready\n" });
    expect(await get(c.health, "/nope")).toEqual({ status: 404, body: "not found: try /livez or /readyz\n" });
    // Bound on every address by default (the pod's IP), not only loopback.
    const hex = c.health.toString(16).toUpperCase().padStart(4, "0");
    expect(readFileSync("/proc/net/tcp", "utf8")).toMatch(new RegExp(`^\\s*\\d+: 00000000:${hex} 00000000:0000 0A `, "m"));
    expect((await c.cli(["stop", "--pid-file", c.pidFile])).code).toBe(0);
    expect(await waitFor(() => !alive(pid), 10_000)).toBe(true);
    expect(listeningInode(c.health)).toBeUndefined();
    expect(await get(c.health, "/livez").then(() => "answered", (e: { code?: string }) => e.code ?? "error")).toBe("ECONNREFUSED");
  }, 60_000);

  test("a ctx.serve app stopping (shutdown hook 3 s): while its hooks run, /livez still answers 200 and /readyz 503 (the app's servers drain, the health listener does not)", async () => {
    const c = setup(HEALTH_SERVE_APP, { BD_STOP_MS: "3000" });
    expect((await c.cli(["start", "--pid-file", c.pidFile, "--log-file", c.log, "--health-port", String(c.health)])).code).toBe(0);
    const pid = c.pid()!;
    expect(await get(c.health, "/livez")).toEqual({ status: 200, body: "ok\n" });
    process.kill(pid, "SIGTERM");
    expect(await waitFor(() => readFileSync(c.log, "utf8").includes("shutdown hook begins"), 10_000)).toBe(true);
    const during = async (path: string) =>
      fetch(`http://127.0.0.1:${c.health}${path}`, { headers: { connection: "close" }, signal: AbortSignal.timeout(1500) }).then(
        async (r) => `${r.status} ${await r.text()}`,
        (e: { code?: unknown; name?: string }) => (e.name === "TimeoutError" ? "timed out" : String(e.code ?? e.name ?? "error")),
      );
    expect(await during("/livez")).toBe("200 ok\n");
    expect(await during("/readyz")).toBe("503 not ready\n");
    expect(alive(pid)).toBe(true);
    expect(await waitFor(() => !alive(pid), 15_000)).toBe(true);
  }, 60_000);

  test("a health port another process holds: start fails, saying which port", async () => {
    const c = setup(HEALTH_APP);
    const squatter = Bun.listen({ hostname: "0.0.0.0", port: c.health, socket: { data() {} } });
    try {
      const r = await c.cli(["start", "--pid-file", c.pidFile, "--health-port", String(c.health)]);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain(`the health listener on port ${c.health} failed`);
      expect(r.stderr).toMatch(/EADDRINUSE|in use/);
      expect(c.pid()).toBeUndefined();
    } finally {
      squatter.stop(true);
    }
  }, 60_000);
});
