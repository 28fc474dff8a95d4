/**
 * Socket activation, contract item 2: listenFds() reads LISTEN_PID,
 * LISTEN_FDS and LISTEN_FDNAMES as sd_listen_fds_with_names(3) does, marks
 * the fds close-on-exec and takes the variables out of the environment;
 * examples/hello.ts serves HTTP on an activated socket (systemd-socket-activate).
 * The .socket-unit case runs under a real systemd in test/systemd-unit.test.ts.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { closeSync, openSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { BUN, cleanupProcesses, HELLO, ROOT, run, tempDir, track, waitFor } from "./helpers.ts";

cleanupProcesses();
const dir = tempDir("bd-listen-");
const PROBE = join(ROOT, "test/fixtures/listen-probe.ts");

/**
 * Run the probe with fds 3.. open on `files`, and LISTEN_* set as given;
 * `LISTEN_PID: "self"` becomes the probe's own pid (a shell sets it, then
 * execs bun in the same pid).
 */
async function probe(env: Record<string, string>, files = 0): Promise<any> {
  const fds = Array.from({ length: files }, (_, i) => openSync(join(dir, `f${i}`), "w"));
  const self = env.LISTEN_PID === "self";
  const vars = Object.fromEntries(Object.entries(env).filter(([k]) => !(self && k === "LISTEN_PID")));
  const p = Bun.spawn(["sh", "-c", `${self ? "export LISTEN_PID=$$; " : ""}exec "$@"`, "sh", BUN, PROBE], {
    env: { ...process.env, ...vars },
    stdio: ["ignore", "pipe", "pipe", ...fds],
  });
  track(p.pid);
  const [out, err] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  for (const fd of fds) closeSync(fd);
  if (!out.trim()) throw new Error(`probe printed nothing: ${err}`);
  return JSON.parse(out);
}

test("activated: the passed fds with their names, close-on-exec, the variables gone from env and children; a second call repeats", async () => {
  const r = await probe({ LISTEN_PID: "self", LISTEN_FDS: "2", LISTEN_FDNAMES: "http:admin" }, 2);
  expect(r.first).toEqual([{ fd: 3, name: "http" }, { fd: 4, name: "admin" }]);
  expect(r.second).toEqual(r.first);
  expect(r.cloexec).toEqual([true, true]);
  expect(r.env).toEqual([]);
  expect(r.child).toBe("");
}, 30_000);

test("no LISTEN_FDNAMES: every name is \"unknown\"", async () => {
  const r = await probe({ LISTEN_PID: "self", LISTEN_FDS: "1" }, 1);
  expect(r.first).toEqual([{ fd: 3, name: "unknown" }]);
}, 30_000);

test("not for this process (LISTEN_PID another pid) or not activated: [], and the variables are removed all the same", async () => {
  const other = await probe({ LISTEN_PID: "1", LISTEN_FDS: "1", LISTEN_FDNAMES: "http" }, 1);
  expect(other).toMatchObject({ first: [], env: [], child: "" });
  const none = await probe({});
  expect(none).toMatchObject({ first: [], env: [] });
}, 30_000);

test("malformed variables or an fd that is not open: a LISTEN_FDS DaemonError saying which", async () => {
  expect(await probe({ LISTEN_PID: "self", LISTEN_FDS: "two" }, 1)).toEqual({ error: "LISTEN_FDS", message: 'socket activation: LISTEN_FDS is not a count: "two"' });
  expect(await probe({ LISTEN_PID: "self", LISTEN_FDS: "2", LISTEN_FDNAMES: "http" }, 2)).toEqual({
    error: "LISTEN_FDS",
    message: 'socket activation: LISTEN_FDNAMES names 1 sockets ("http") but LISTEN_FDS says 2',
  });
  const r = await probe({ LISTEN_PID: "self", LISTEN_FDS: "60" }, 1);
  expect(r.error).toBe("LISTEN_FDS");
  expect(r.message).toMatch(/^socket activation: LISTEN_FDS passes fd \d+ \("unknown"\) but fcntl\(F_GETFD\/F_SETFD\) on it failed: EBADF$/);
}, 30_000);

const activate = Bun.which("systemd-socket-activate");
const BIN = join(dir, "hello-bin");
beforeAll(async () => {
  if (!activate) return;
  const b = await run([BUN, "build", "--compile", "--splitting", "--format=esm", HELLO, "--outfile", BIN], { timeoutMs: 120_000 });
  if (b.code !== 0) throw new Error(`bun build --compile failed: ${b.stderr}`);
}, 120_000);
afterAll(() => rmSync(BIN, { force: true }));

for (const style of ["bun run", "compiled"] as const) {
  test.skipIf(!activate)(`${style}: examples/hello.ts under systemd-socket-activate serves on the passed socket, not on --port`, async () => {
    const free = () =>
      new Promise<number>((resolve) => {
        const s = createServer().listen(0, "127.0.0.1", () => {
          const p = (s.address() as { port: number }).port;
          s.close(() => resolve(p));
        });
      });
    const port = await free();
    const unused = await free();
    const pidFile = join(dir, `hello-activated-${style === "bun run" ? "run" : "bin"}.pid`);
    const program = style === "bun run" ? [BUN, HELLO] : [BIN];
    const sa = Bun.spawn([activate!, "-l", `127.0.0.1:${port}`, "--fdname=http", ...program, "run", "--port", String(unused), "--pid-file", pidFile], { stdout: "ignore", stderr: "pipe" });
    track(sa.pid);
    const stderr = new Response(sa.stderr).text();
    const get = (p: number) => fetch(`http://127.0.0.1:${p}/`).then((r) => r.text()).catch(() => "");
    expect(await waitFor(async () => (await get(port)).startsWith("hello from"))).toBe(true);
    // systemd-socket-activate execs the daemon in its own pid: that pid answers, and names itself in the PID file.
    expect(await get(port)).toBe(`hello from ${sa.pid}\n`);
    expect(readFileSync(pidFile, "utf8")).toBe(`${sa.pid}\n`);
    expect(await get(unused)).toBe("");
    sa.kill("SIGTERM");
    expect(await sa.exited).toBe(0);
    expect(await stderr).toContain("init: serving on the activated socket (fd 3, http)");
  }, 30_000);
}
