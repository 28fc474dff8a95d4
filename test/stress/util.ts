/**
 * Helpers of the stress suite (on top of test/helpers.ts): fixtures, an
 * incremental event-log reader, a subreaper that reports the daemon's real
 * exit status, free ports, /proc readings, and known-bug tests.
 */
import { expect, test } from "bun:test";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { BUN, ROOT, alive, isFlocked, pidsMentioning, track, waitFor } from "../helpers.ts";

export const STRESS_APP = join(ROOT, "test/stress/fixtures/stress-app.ts");
export const REAPER = join(ROOT, "test/stress/fixtures/reaper.ts");
export const LOAD = join(ROOT, "test/stress/fixtures/load.ts");
export const VICTIM = join(ROOT, "test/stress/fixtures/victim.ts");
export const RAW = join(ROOT, "test/stress/fixtures/raw.ts");

/** The pid a PID file names, or undefined (absent, empty, garbage). */
export function pidIn(path: string): number | undefined {
  try {
    const m = /^\s*(\d+)\s*$/.exec(readFileSync(path, "utf8"));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** Wait until the PID file names a pid (the launcher writes it once the daemon is forked). */
export async function waitForPid(path: string, ms = 20_000): Promise<number> {
  let pid: number | undefined;
  await waitFor(() => (pid = pidIn(path)) !== undefined, ms, 2);
  if (pid === undefined) throw new Error(`${path} named no pid within ${ms} ms`);
  track(pid);
  return pid;
}

/** "Nothing left behind": no live process mentions `needle`, and the PID file is gone or unlocked. */
export async function expectNothingLeft(needle: string, pidFile: string): Promise<void> {
  // A daemon that reported failure may still be inside process.exit() for a moment.
  await waitFor(() => pidsMentioning(needle).length === 0, 10_000);
  expect(pidsMentioning(needle)).toEqual([]);
  if (existsSync(pidFile)) expect(isFlocked(pidFile)).toBe(false);
}

export function fdCount(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** Resident set size in KiB (VmRSS). */
export function rssKiB(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]);
}

/** A TCP port on 127.0.0.1 in 30000-39999 that nobody listens on right now. */
export function freePort(): number {
  for (let i = 0; i < 200; i++) {
    const port = 30_000 + Math.floor(Math.random() * 10_000);
    try {
      const l = Bun.listen({ hostname: "127.0.0.1", port, socket: { data() {} } });
      l.stop(true);
      return port;
    } catch {
      // taken: try another
    }
  }
  throw new Error("no free port in 30000-39999");
}

/** Reads an append-only event log incrementally. */
export class EventLog {
  private offset = 0;
  private partial = "";
  readonly lines: string[] = [];

  constructor(readonly path: string) {}

  /** Read what was appended since the last call; returns all lines so far. */
  poll(): string[] {
    let buf: Buffer;
    try {
      buf = readFileSync(this.path);
    } catch {
      return this.lines;
    }
    if (buf.length > this.offset) {
      const text = this.partial + buf.toString("utf8", this.offset);
      this.offset = buf.length;
      const parts = text.split("\n");
      this.partial = parts.pop() ?? "";
      this.lines.push(...parts);
    }
    return this.lines;
  }

  count(prefix: string): number {
    return this.poll().filter((l) => l.startsWith(prefix)).length;
  }

  async waitCount(prefix: string, n: number, ms = 20_000): Promise<void> {
    if (!(await waitFor(() => this.count(prefix) >= n, ms, 1))) {
      throw new Error(`${this.path}: wanted ${n} "${prefix}" events within ${ms} ms, saw ${this.count(prefix)}; last: ${this.lines.slice(-5).join(" | ")}`);
    }
  }

  /** Wait until no new line has arrived for `quietMs`. */
  async settle(quietMs = 500, ms = 30_000): Promise<string[]> {
    const end = performance.now() + ms;
    let n = -1;
    let since = performance.now();
    while (performance.now() < end) {
      const now = this.poll().length;
      if (now !== n) {
        n = now;
        since = performance.now();
      } else if (performance.now() - since >= quietMs) {
        return this.lines;
      }
      await Bun.sleep(20);
    }
    throw new Error(`${this.path} kept growing for ${ms} ms`);
  }
}

/** Collects a child's stdout text and lets a test wait for a line. */
class Lines {
  text = "";
  readonly done: Promise<void>;

  constructor(stream: ReadableStream<Uint8Array>) {
    this.done = (async () => {
      const dec = new TextDecoder();
      for await (const chunk of stream) this.text += dec.decode(chunk, { stream: true });
    })();
  }

  async wait(re: RegExp, ms: number): Promise<RegExpExecArray> {
    let m: RegExpExecArray | null = null;
    await waitFor(() => (m = re.exec(this.text)) !== null, ms, 5);
    if (!m) throw new Error(`no line matching ${re} within ${ms} ms; got: ${JSON.stringify(this.text)}`);
    return m;
  }
}

export interface Reaped {
  /** The launcher's exit status. */
  launcher: Promise<number>;
  /** The daemon's real end, as waitpid(2) reports it to the subreaper: "exit N" or "signal N". */
  daemon(pid: number, ms?: number): Promise<string>;
  /** Everything the launcher wrote to stdout and stderr so far. */
  stdout(): string;
  stderr(): string;
}

/**
 * Run a launcher (e.g. `bun app.ts start ...`) under a child subreaper, so the
 * daemon it double-forks is re-parented to the reaper and its exit status can
 * be seen from outside.
 */
export function reaped(cmd: string[], env: Record<string, string | undefined> = {}): Reaped {
  const proc = Bun.spawn([BUN, REAPER, ...cmd], {
    env: { ...process.env, ...env } as Record<string, string>,
    cwd: ROOT,
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  track(proc.pid);
  const out = new Lines(proc.stdout);
  const err = new Lines(proc.stderr);
  return {
    launcher: out.wait(/^launcher exited (\d+)$/m, 120_000).then((m) => Number(m[1])),
    daemon: (pid, ms = 60_000) => out.wait(new RegExp(`^reaped ${pid} (exit \\d+|signal \\d+)$`, "m"), ms).then((m) => m[1]!),
    stdout: () => out.text,
    stderr: () => err.text,
  };
}

/** Wait until `pid` is gone (or not, after `ms`). */
export function gone(pid: number, ms = 20_000): Promise<boolean> {
  return waitFor(() => !alive(pid), ms);
}

/** A maker of fresh PID file and event log paths in `dir`, one pair per case. */
export function casePaths(dir: string): (tag: string) => { pidFile: string; events: string } {
  let n = 0;
  return (tag) => {
    n++;
    return { pidFile: join(dir, `${tag}-${n}.pid`), events: join(dir, `${tag}-${n}.events`) };
  };
}

/** An assertion that names what went wrong when it fails. */
export function must(ok: boolean, what: string): void {
  expect(ok ? "as it should" : what).toBe("as it should");
}
