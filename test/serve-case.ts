/**
 * One daemon of the serve fixtures (test/fixtures/serve-app.ts and kin)
 * under test: its own port, PID file, log and BD_SERVE_DIR (where a test
 * "deploys" a version by writing files), and the CLI run against them with
 * every pid it names tracked for cleanup.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { freePort, run, startedPid, track, type Result } from "./helpers.ts";

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
  };
  return c;
}
