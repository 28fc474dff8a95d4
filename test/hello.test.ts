/**
 * The README's main job with examples/hello.ts, under `bun run` and as a
 * single binary from `bun build --compile`: start, curl, status, reload, stop.
 */
import { beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { alive, BUN, cleanupProcesses, HELLO, run, startedPid, tempDir, track, waitFor } from "./helpers.ts";

cleanupProcesses();
const dir = tempDir();
const BIN = join(dir, "hello");

beforeAll(async () => {
  const r = await run([BUN, "build", "--compile", "--splitting", "--bytecode", "--format=esm", HELLO, "--outfile", BIN]);
  if (r.code !== 0) throw new Error(`bun build --compile failed: ${r.stderr}`);
}, 120_000);

/** A port the kernel just said is free. */
async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

describe.each([
  ["bun run", () => [BUN, "run", HELLO]],
  ["compiled binary", () => [BIN]],
] as Array<[string, () => string[]]>)("hello (%s)", (label, prog) => {
  test("start, curl, status, reload, stop", async () => {
    const port = await freePort();
    const tag = label.replace(/\W/g, "");
    const pidFile = join(dir, `hello-${tag}.pid`);
    const log = join(dir, `hello-${tag}.log`);
    const opts = ["--pid-file", pidFile];
    const s = await run([...prog(), "start", "--port", String(port), ...opts, "--log-file", log]);
    const pid = track(startedPid(s.stdout))!;
    expect(s).toMatchObject({ code: 0, stdout: `started hello (pid ${pid})\n` });
    // Ready means listening: the first request after start succeeds.
    expect(await (await fetch(`http://127.0.0.1:${port}/`)).text()).toBe(`hello from ${pid}\n`);
    expect((await run([...prog(), "status", ...opts])).stdout).toContain(`hello is running (pid ${pid}`);
    expect((await run([...prog(), "reload", ...opts])).code).toBe(0);
    expect(await waitFor(() => readFileSync(log, "utf8").includes("reload #1"))).toBe(true);
    const again = await run([...prog(), "start", "--port", String(port), ...opts]);
    expect(again).toMatchObject({ code: 1, stderr: `hello: already running (pid ${pid})\n` });
    expect(await run([...prog(), "stop", ...opts])).toMatchObject({ code: 0, stdout: `stopped hello (pid ${pid})\n` });
    expect(alive(pid)).toBe(false);
    expect(existsSync(pidFile)).toBe(false);
    expect(readFileSync(log, "utf8")).toContain("shutdown: SIGTERM");
    expect(await fetch(`http://127.0.0.1:${port}/`).then(() => "answered", () => "refused")).toBe("refused");
  }, 60_000);

  test("a port in use: start fails with the daemon's own error and leaves nothing", async () => {
    const port = await freePort();
    const blocker = Bun.serve({ hostname: "127.0.0.1", port, fetch: () => new Response("taken") });
    try {
      const pidFile = join(dir, `busy-${label.replace(/\W/g, "")}.pid`);
      const r = await run([...prog(), "start", "--port", String(port), "--pid-file", pidFile]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`hello: failed to start: init hook "listen" failed:`);
      expect(r.stderr).toMatch(/EADDRINUSE|in use/i);
      expect(existsSync(pidFile)).toBe(false);
    } finally {
      blocker.stop(true);
    }
  }, 60_000);
});
