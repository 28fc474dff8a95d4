/**
 * Under systemd. Type=notify: READY=1 once init is done, RELOADING=1/READY=1
 * around a reload, STOPPING=1 at shutdown, sent to $NOTIFY_SOCKET (a path
 * or an abstract "@name"). The receiver is a real AF_UNIX datagram socket
 * (python3: Bun has none).
 */
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { BUN, cleanupProcesses, FIXTURE, notifyReceiver, tempDir, track, waitFor } from "./helpers.ts";

cleanupProcesses();
const dir = tempDir();
const python = Bun.which("python3");

for (const kind of ["path", "abstract"] as const) {
  test.skipIf(!python)(`sd_notify to a ${kind} socket: READY, RELOADING, STOPPING`, async () => {
    const rx = await notifyReceiver(dir, kind);
    const addr = rx.address;
    const d = Bun.spawn([BUN, "run", FIXTURE, "run", "--pid-file", join(dir, `${kind}.pid`)], {
      env: { ...process.env, NOTIFY_SOCKET: addr },
      stdout: "ignore",
      stderr: "ignore",
    });
    track(d.pid);
    // The STATUS=-only datagrams (which hook runs) are checked exactly in test/notify.test.ts.
    const msgs = () => rx.msgs().filter((m) => !/^STATUS=[^|]*$/.test(m));
    expect(await waitFor(() => msgs().length >= 1)).toBe(true);
    expect(msgs()[0]).toBe(`READY=1|MAINPID=${d.pid}|STATUS=running`);
    d.kill("SIGHUP");
    expect(await waitFor(() => msgs().length >= 3)).toBe(true);
    d.kill("SIGTERM");
    expect(await d.exited).toBe(0);
    expect(await waitFor(() => msgs().length >= 4)).toBe(true);
    expect(msgs().map((m) => m.replace(/MONOTONIC_USEC=\d+/, "MONOTONIC_USEC=N"))).toEqual([
      `READY=1|MAINPID=${d.pid}|STATUS=running`, "RELOADING=1|MONOTONIC_USEC=N|STATUS=reloading", "READY=1|STATUS=running", "STOPPING=1|STATUS=stopping (SIGTERM)",
    ]);
  }, 30_000);
}

const activate = Bun.which("systemd-socket-activate");
test.skipIf(!activate)("socket activation: systemd-socket-activate's listener is adopted in run mode", async () => {
  const { createServer, connect } = await import("node:net");
  const port = await new Promise<number>((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
  const pidFile = join(dir, "activated.pid");
  const sa = Bun.spawn([activate!, "-l", `127.0.0.1:${port}`, BUN, "run", join(import.meta.dir, "fixtures/activated.ts"), "run", "--pid-file", pidFile], {
    stdout: "ignore",
    stderr: "pipe",
  });
  track(sa.pid);
  const stderr = new Response(sa.stderr).text();
  const ask = () =>
    new Promise<string>((resolve, reject) => {
      let data = "";
      const c = connect(port, "127.0.0.1");
      c.on("data", (d) => (data += d));
      c.on("end", () => resolve(data));
      c.on("error", reject);
    });
  expect(await waitFor(async () => (await ask().catch(() => "")).startsWith("adopted by"))).toBe(true);
  // systemd-socket-activate execs the daemon in its own pid: it is the one that answers.
  expect(await ask()).toBe(`adopted by ${sa.pid}\n`);
  expect(readFileSync(pidFile, "utf8")).toBe(`${sa.pid}\n`);
  sa.kill("SIGTERM");
  expect(await sa.exited).toBe(0);
  expect(await stderr).toContain("[info] [activated] ready");
}, 30_000);
