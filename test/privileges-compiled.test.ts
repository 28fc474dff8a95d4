/**
 * The drop in a compiled binary (`bun build --compile`), and the control
 * commands run AS the daemon's user (issue 9). A compiled binary re-executes
 * itself to detach and carries its sources in its own file system: the drop
 * must still reach every thread. After setuid the kernel marks the daemon
 * non-dumpable (its /proc files stay root's), yet status/reload/stop run as
 * nobody must still verify it through the PID file's lock and act on it.
 * Root only (CI is root): only root can switch users.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { alive, BUN, cleanupProcesses, ROOT, run, startedPid, tempDir, track, waitFor } from "./helpers.ts";

cleanupProcesses();

const isRoot = process.getuid?.() === 0;
const haveSetpriv = Bun.which("setpriv") !== null;
if (!isRoot) console.warn("skipping the compiled-binary privilege tests: only root can drop to another user (CI runs as root)");
else if (!haveSetpriv) console.warn("skipping the run-as-nobody control tests: setpriv (util-linux) is missing");
const NOBODY = "65534";

describe.skipIf(!isRoot)("a compiled binary, started as root with --user nobody", () => {
  // A directory nobody may enter: the binary runs as nobody after the drop, from there.
  const dir = tempDir("bd-privc-");
  chmodSync(dir, 0o755);
  const BIN = join(dir, "priv");
  const tag = `bdprivc${process.pid}`;
  let n = 0;
  const names: string[] = [];
  const fresh = () => {
    const name = `${tag}-${++n}`;
    names.push(name);
    return { name, pidFile: `/run/${name}/${name}.pid` };
  };

  beforeAll(async () => {
    const r = await run([BUN, "build", "--compile", join(ROOT, "test/fixtures/priv-app.ts"), "--outfile", BIN], { timeoutMs: 120_000 });
    if (r.code !== 0) throw new Error(`bun build --compile failed (${r.code}): ${r.stderr}`);
    chmodSync(BIN, 0o755);
  }, 120_000);
  afterAll(() => {
    for (const name of names) rmSync(`/run/${name}`, { recursive: true, force: true });
  });

  /** The binary, as root or (prefix) as nobody; cwd the directory nobody may enter. */
  async function bin(args: string[], name: string, prefix: string[] = []) {
    const r = await run([...prefix, BIN, ...args], { env: { PRIV_NAME: name }, cwd: dir, timeoutMs: 60_000 });
    track(startedPid(r.stdout));
    return r;
  }
  const asNobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"];

  const tasks = (pid: number) => readdirSync(`/proc/${pid}/task`).map((t) => readFileSync(`/proc/${pid}/task/${t}/status`, "utf8"));
  const field = (status: string, k: string) => new RegExp(`^${k}:\\s*(.*)$`, "m").exec(status)?.[1]?.trim();

  async function startDropped(name: string, pidFile: string): Promise<number> {
    const r = await bin(["start", "--user", "nobody"], name);
    expect(r.stderr).toContain("dropped privileges to nobody");
    expect(r.code).toBe(0);
    const pid = startedPid(r.stdout)!;
    expect(readFileSync(pidFile, "utf8").trim()).toBe(String(pid));
    // Really the compiled binary, not bun running a script.
    expect(readlinkSync(`/proc/${pid}/exe`)).toBe(BIN);
    return pid;
  }

  test("every thread has nobody's ids and NoNewPrivs 1; stop (as root) leaves no PID file", async () => {
    const { name, pidFile } = fresh();
    const pid = await startDropped(name, pidFile);
    const all = tasks(pid);
    expect(all.length).toBeGreaterThan(1);
    for (const s of all) {
      expect(field(s, "Uid")!.split(/\s+/)).toEqual(Array(4).fill(NOBODY));
      expect(field(s, "Gid")!.split(/\s+/)).toEqual(Array(4).fill(NOBODY));
      expect(field(s, "Groups")).toBe(NOBODY);
      expect(field(s, "NoNewPrivs")).toBe("1");
      expect(field(s, "CapEff")).toBe("0000000000000000");
    }
    const s = await bin(["stop", "--user", "nobody"], name);
    expect(s.stderr).toBe("");
    expect(s.code).toBe(0);
    expect(alive(pid)).toBe(false);
    expect(existsSync(pidFile)).toBe(false);
  }, 60_000);

  test.skipIf(!haveSetpriv)("status, reload and stop run as nobody (setpriv) against the dropped daemon: running 0, reload 0, stop 0 and the PID file gone", async () => {
    const { name, pidFile } = fresh();
    const pid = await startDropped(name, pidFile);
    // The kernel made the daemon non-dumpable at its setuid: its /proc files stay root's.
    // (so nobody cannot look at its fds) and the control commands go by the PID file's lock.
    expect(readFileSync(`/proc/${pid}/status`, "utf8")).toMatch(/^Uid:\s+65534\s/m);
    expect(statSync(`/proc/${pid}/fd`).uid).toBe(0);
    const st = await bin(["status", "--pid-file", pidFile], name, asNobody);
    expect(st.stdout).toContain(`${name} is running (pid ${pid}`);
    expect(st.code).toBe(0);
    // Without --pid-file, --user finds the same /run/NAME/ default as root's start used.
    const byDefault = await bin(["status", "--user", "nobody"], name, asNobody);
    expect(byDefault.stdout).toContain(`${name} is running (pid ${pid}`);
    expect(byDefault.code).toBe(0);
    const rl = await bin(["reload", "--pid-file", pidFile], name, asNobody);
    expect(rl.stdout).toContain(`reloaded ${name} (pid ${pid})`);
    expect(rl.code).toBe(0);
    expect(alive(pid)).toBe(true);
    const sp = await bin(["stop", "--pid-file", pidFile], name, asNobody);
    expect(sp.stdout).toContain(`stopped ${name} (pid ${pid})`);
    expect(sp.code).toBe(0);
    expect(await waitFor(() => !alive(pid))).toBe(true);
    expect(existsSync(pidFile)).toBe(false);
    // And status then says so, as nobody: LSB 3, not running.
    const after = await bin(["status", "--pid-file", pidFile], name, asNobody);
    expect(after.code).toBe(3);
  }, 60_000);
});
