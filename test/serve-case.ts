/**
 * One daemon of the serve fixtures (test/fixtures/serve-app.ts and kin)
 * under test: its own port, PID file, log and BD_SERVE_DIR (where a test
 * "deploys" a version by writing files), and the CLI run against them with
 * every pid it names tracked for cleanup.
 */
import { expect } from "bun:test";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { alive, BUN, freePort, ROOT, run, startedPid, track, type Result } from "./helpers.ts";
import type { LoadResult } from "./load.ts";

export interface ServeCase {
  name: string;
  port: number;
  pidFile: string;
  log: string;
  /** BD_SERVE_DIR: the files the fixture reads (version, fail, ...). */
  serveDir: string;
  env: Record<string, string>;
  /** The program with `args`, in this case's environment. */
  cli(args: string[]): Promise<Result>;
  /** The pid the PID file names now, if any. */
  pid(): number | undefined;
  /** Write (or with undefined remove) a file in serveDir. */
  set(file: string, text: string | undefined): void;
  /**
   * `upgrade`, which must succeed: exit 0, nothing on stderr, "pid OLD ->
   * NEW", the old pid gone (upgrade exits 0 only once it has exited), the
   * new one alive. Returns the new pid.
   */
  upgraded(): Promise<number>;
}

/** A case named `name` in `home`, run as `program` (e.g. [BUN, APP], or a compiled binary). */
export function serveCase(home: string, name: string, program: string[], extraEnv: Record<string, string> = {}): ServeCase {
  const serveDir = join(home, name);
  mkdirSync(serveDir, { recursive: true });
  const port = freePort();
  const pidFile = join(home, `${name}.pid`);
  const env = { BD_SERVE_DIR: serveDir, BD_PORT: String(port), BD_NAME: name, ...extraEnv };
  const c: ServeCase = {
    name, port, pidFile, serveDir, env,
    log: join(home, `${name}.log`),
    async cli(args) {
      const r = await run([...program, ...args], { env, timeoutMs: 90_000 });
      track(startedPid(r.stdout));
      track(c.pid());
      return r;
    },
    pid() {
      try {
        const p = Number(readFileSync(pidFile, "utf8").trim());
        return p > 0 ? track(p) : undefined;
      } catch {
        return undefined;
      }
    },
    set(file, text) {
      const path = join(serveDir, file);
      if (text === undefined) rmSync(path, { force: true });
      else writeFileSync(path, text);
    },
    async upgraded() {
      const old = c.pid();
      const u = await c.cli(["upgrade", "--pid-file", pidFile]);
      expect(u.stderr).toBe("");
      expect(u.code).toBe(0);
      const now = c.pid()!;
      expect(now).not.toBe(old);
      expect(u.stdout).toContain(`pid ${old} -> ${now}`);
      expect(alive(old!)).toBe(false);
      expect(alive(now)).toBe(true);
      return now;
    },
  };
  return c;
}

/**
 * One GET / over a connection of its own (`Connection: close`, so no pooled
 * connection to an old process): the body of a 200, else a rejection
 * naming what came back. Bounded at 10 s.
 */
export function getFresh(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = "";
    const c = connect(port, "127.0.0.1", () => c.write("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"));
    c.setEncoding("utf8");
    c.setTimeout(10_000, () => {
      c.destroy();
      reject(new Error("GET timed out"));
    });
    c.on("data", (d) => (buf += d));
    c.on("error", reject);
    c.on("end", () => {
      if (!buf.startsWith("HTTP/1.1 200")) reject(new Error(`unexpected answer: ${JSON.stringify(buf.slice(0, 200))}`));
      else resolve(buf.slice(buf.indexOf("\r\n\r\n") + 4));
    });
  });
}

/** What loadClient() runs: test/load.ts's options (its defaults where absent, but a 5-minute window). */
export interface LoadClientOptions {
  /** --duration-ms: the window, unless stop() ends it first. Default 300 000. */
  ms?: number;
  keepAlive?: number;
  fresh?: number;
  path?: string;
  timeoutMs?: number;
}

/**
 * The load client (test/load.ts) in its own process, so it shares no event
 * loop with the test or the servers; its pid tracked. `done`: its result
 * once the window ends; stop(): SIGTERM (it stops and prints what it
 * counted), then the same result.
 */
export function loadClient(port: number, o: LoadClientOptions = {}): { done: Promise<LoadResult>; stop(): Promise<LoadResult> } {
  const args = ["--port", String(port), "--duration-ms", String(o.ms ?? 300_000)];
  if (o.keepAlive !== undefined) args.push("--keep-alive", String(o.keepAlive));
  if (o.fresh !== undefined) args.push("--fresh", String(o.fresh));
  if (o.path !== undefined) args.push("--path", o.path);
  if (o.timeoutMs !== undefined) args.push("--timeout-ms", String(o.timeoutMs));
  const p = Bun.spawn([BUN, join(ROOT, "test/load.ts"), ...args], { stdout: "pipe", stderr: "inherit" });
  track(p.pid);
  const done = new Response(p.stdout).text().then(async (text) => {
    await p.exited;
    return JSON.parse(text) as LoadResult;
  });
  // Awaited through done or stop(); never an unhandled rejection if a test only uses one.
  done.catch(() => {});
  return {
    done,
    stop() {
      p.kill("SIGTERM");
      return done;
    },
  };
}
