/**
 * Least privilege (issue 9): a daemon started by root binds what needs root
 * in init, then drops to `user` on every thread, verified from outside in
 * /proc/PID/task/*\/status; the PID file and the log file keep working after
 * the drop; every failure exits non-zero naming the step, leaving nothing.
 * Root only (CI is root): only root can switch users.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { parseArgv, checkAppArgs } from "../src/argv.ts";
import { alive, cleanupProcesses, forOtherUsers, pidsMentioning, run, startedPid, tempDir, track, waitFor } from "./helpers.ts";

cleanupProcesses();

const isRoot = process.getuid?.() === 0;
const NOBODY = 65534;
const haveUnshare = Bun.which("unshare") !== null && Bun.which("setpriv") !== null;

describe("--user / --group on the command line", () => {
  test("launch commands take --user and --group; stop/status/reload take --user (to find the default PID file) but not --group", () => {
    expect(parseArgv(["start", "--user", "nobody", "--group", "nogroup"]).cli).toMatchObject({ user: "nobody", group: "nogroup" });
    expect(parseArgv(["stop", "--user", "nobody"]).cli.user).toBe("nobody");
    expect(() => parseArgv(["stop", "--group", "nogroup"])).toThrow(/--group is not an option of "stop"/);
    expect(() => checkAppArgs({ user: { type: "string" } })).toThrow(/collides with the CLI's own --user/);
  });
});

describe.skipIf(!isRoot)("as root, dropping to nobody", () => {
  // The daemon runs as nobody after the drop: its bun and sources must be nobody's to read.
  const others = forOtherUsers();
  const APP = others.fixture("test/fixtures/priv-app.ts");
  const dir = tempDir("bd-priv-");
  chmodSync(dir, 0o755);
  const tag = `bdpriv${process.pid}`;
  let n = 0;
  const names: string[] = [];
  const fresh = () => {
    const name = `${tag}-${++n}`;
    names.push(name);
    return name;
  };
  afterAll(() => {
    for (const name of names) rmSync(`/run/${name}`, { recursive: true, force: true });
  });

  /** A free port below 1024 (only root may bind it): what the init hook needs root for. */
  const usedPorts = new Set<number>();
  function lowPort(): number {
    for (let p = 700 + (process.pid % 200); ; p = p >= 999 ? 700 : p + 1) {
      if (usedPorts.has(p)) continue;
      try {
        const s = Bun.listen({ hostname: "127.0.0.1", port: p, socket: { data() {} } });
        s.stop(true);
        usedPorts.add(p);
        return p;
      } catch {}
    }
  }

  async function cli(args: string[], env: Record<string, string> = {}) {
    const r = await run([others.bun, APP, ...args], { env, cwd: others.root, timeoutMs: 60_000 });
    track(startedPid(r.stdout));
    return r;
  }

  const tasks = (pid: number) => readdirSync(`/proc/${pid}/task`).map((t) => readFileSync(`/proc/${pid}/task/${t}/status`, "utf8"));
  const field = (status: string, k: string) => new RegExp(`^${k}:\\s*(.*)$`, "m").exec(status)?.[1]?.trim();

  /** Nothing of this daemon left: no process naming it, and the given files gone. */
  const nothingLeft = (needle: string, ...files: string[]) => {
    expect(pidsMentioning(needle)).toEqual([]);
    for (const f of files) expect(existsSync(f)).toBe(false);
  };

  test("init binds a port < 1024 as root, the daemon serves on it as nobody; every thread has nobody's ids, no caps, NoNewPrivs; setuid(0) is EPERM; stop as root leaves no PID file", async () => {
    const name = fresh();
    const port = lowPort();
    const env = { PRIV_NAME: name, PRIV_PORT: String(port) };
    const r = await cli(["start", "--user", "nobody"], env);
    expect(r.stderr).toContain("dropped privileges to nobody");
    expect(r.code).toBe(0);
    const pid = startedPid(r.stdout)!;
    // The default PID file moved into a runtime directory nobody owns, 0755.
    const pidFile = `/run/${name}/${name}.pid`;
    expect(readFileSync(pidFile, "utf8").trim()).toBe(String(pid));
    const st = statSync(`/run/${name}`);
    expect([st.uid, st.gid, st.mode & 0o7777]).toEqual([NOBODY, NOBODY, 0o755]);

    const all = tasks(pid);
    expect(all.length).toBeGreaterThan(1); // Bun's runtime threads: the trap the drop must cover
    for (const s of all) {
      expect(field(s, "Uid")!.split(/\s+/)).toEqual(Array(4).fill(String(NOBODY)));
      expect(field(s, "Gid")!.split(/\s+/)).toEqual(Array(4).fill(String(NOBODY)));
      expect(field(s, "Groups")).toBe(String(NOBODY));
      expect(field(s, "NoNewPrivs")).toBe("1");
      expect(field(s, "CapEff")).toBe("0000000000000000");
      expect(field(s, "CapPrm")).toBe("0000000000000000");
    }
    const ids = await (await fetch(`http://127.0.0.1:${port}/ids`)).json();
    expect(ids).toEqual({ uid: NOBODY, euid: NOBODY, gid: NOBODY, groups: [NOBODY] });
    expect(await (await fetch(`http://127.0.0.1:${port}/setuid`)).text()).toContain("EPERM");

    const s = await cli(["stop", "--user", "nobody"], env);
    expect(s.stderr).toBe("");
    expect(s.code).toBe(0);
    expect(alive(pid)).toBe(false);
    expect(existsSync(pidFile)).toBe(false);
  }, 60_000);

  test("config user: the log file is created owned by nobody, and SIGUSR1 after logrotate's rename reopens a new one nobody owns; rlimits: core 0, nofile as set", async () => {
    const name = fresh();
    const port = lowPort();
    const logDir = join(dir, `logs-${n}`);
    mkdirSync(logDir, { mode: 0o755 });
    // As logrotate's `create` needs it: the daemon's user creates the new file.
    chownSync(logDir, NOBODY, NOBODY);
    const log = join(logDir, "app.log");
    const env = { PRIV_NAME: name, PRIV_PORT: String(port), PRIV_USER: "nobody", PRIV_NOFILE: "777" };
    const r = await cli(["start", "--log-file", log], env);
    expect(r.stderr).toContain("dropped privileges to nobody");
    expect(r.code).toBe(0);
    const pid = startedPid(r.stdout)!;
    expect(statSync(log).uid).toBe(NOBODY);
    const limits = readFileSync(`/proc/${pid}/limits`, "utf8");
    expect(limits).toMatch(/^Max core file size\s+0\s+0\s/m);
    expect(limits).toMatch(/^Max open files\s+777\s+777\s/m);

    await fetch(`http://127.0.0.1:${port}/say?m=before-rotate`);
    expect(await waitFor(() => readFileSync(log, "utf8").includes("before-rotate"))).toBe(true);
    renameSync(log, `${log}.1`);
    process.kill(pid, "SIGUSR1");
    expect(await waitFor(() => existsSync(log) && readFileSync(log, "utf8").includes("log file reopened"))).toBe(true);
    await fetch(`http://127.0.0.1:${port}/say?m=after-rotate`);
    expect(await waitFor(() => readFileSync(log, "utf8").includes("after-rotate"))).toBe(true);
    expect(statSync(log).uid).toBe(NOBODY);
    expect(readFileSync(`${log}.1`, "utf8")).not.toContain("after-rotate");

    const s = await cli(["stop"], env);
    expect(s.code).toBe(0);
    expect(existsSync(`/run/${name}/${name}.pid`)).toBe(false);
  }, 60_000);

  test("ctx.dropPrivileges() in init drops at once (binding < 1024 then fails), a second call does nothing", async () => {
    const name = fresh();
    const port = lowPort();
    const r = await cli(["start", "--user", "nobody"], { PRIV_NAME: name, PRIV_PORT: String(port), PRIV_EARLY: "1" });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("dropped privileges to nobody");
    expect(r.stderr.match(/dropped privileges/g)).toHaveLength(1);
    expect(r.stderr).toContain(`${name}: failed to start: init hook "init" failed: permission denied 127.0.0.1:${port}`);
    nothingLeft(name, `/run/${name}/${name}.pid`);
  }, 60_000);

  describe("failures: exit non-zero naming the step, nothing left running", () => {
    test("an unknown user", async () => {
      const name = fresh();
      const r = await cli(["start", "--user", "no-such-user-bd"], { PRIV_NAME: name });
      expect(r.code).toBe(1);
      expect(r.stderr).toBe(`${name}: drop privileges: resolve user: unknown user "no-such-user-bd"\n`);
      nothingLeft(name, `/run/${name}`);
    }, 30_000);

    test("an unknown group", async () => {
      const name = fresh();
      const r = await cli(["start", "--user", "nobody", "--group", "no-such-group-bd"], { PRIV_NAME: name });
      expect(r.code).toBe(1);
      expect(r.stderr).toBe(`${name}: drop privileges: resolve group: unknown group "no-such-group-bd"\n`);
      nothingLeft(name, `/run/${name}`);
    }, 30_000);

    test("a chroot directory that does not exist", async () => {
      const name = fresh();
      const missing = join(dir, "no-such-root");
      const r = await cli(["start", "--user", "nobody"], { PRIV_NAME: name, PRIV_CHROOT: missing });
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`${name}: drop privileges: chroot: stat ${missing} failed: ENOENT`);
      nothingLeft(name, `/run/${name}`);
    }, 30_000);

    test.skipIf(!haveUnshare)("a non-root launcher asking for another user", async () => {
      const name = fresh();
      const pidFile = join(dir, `${name}.pid`);
      chmodSync(dir, 0o777);
      try {
        const r = await run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", others.bun, APP, "start", "--user", "root", "--pid-file", pidFile], {
          env: { PRIV_NAME: name },
          cwd: others.root,
        });
        expect(r.code).toBe(1);
        expect(r.stderr).toBe(`${name}: drop privileges to root: this process runs as uid ${NOBODY}, not root, so it cannot become uid 0 (EPERM): start it as root\n`);
        nothingLeft(name, pidFile);
      } finally {
        chmodSync(dir, 0o755);
      }
    }, 30_000);

    test("a failed verification in the daemon (a chroot without /proc): PRIVILEGES naming the step, the launcher prints it, the daemon is gone and so is its PID file inside the root", async () => {
      const name = fresh();
      const root = join(dir, `bare-root-${n}`);
      mkdirSync(root, { mode: 0o755 });
      const pidFile = join(root, "run", name, `${name}.pid`);
      const r = await cli(["start", "--user", "nobody"], { PRIV_NAME: name, PRIV_CHROOT: root });
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`${name}: failed to start: drop privileges to nobody: verify (with chroot, the directory needs /proc mounted inside): scandir /proc/self/task failed: ENOENT`);
      nothingLeft(name, pidFile);
    }, 30_000);

    test("with chroot, a PID file or a log file outside the root is refused before anything starts, naming a path that works", async () => {
      const name = fresh();
      const root = join(dir, `out-root-${n}`);
      mkdirSync(root, { mode: 0o755 });
      const pidFile = join(dir, `${name}.pid`);
      let r = await cli(["start", "--user", "nobody", "--pid-file", pidFile], { PRIV_NAME: name, PRIV_CHROOT: root });
      expect(r.code).toBe(1);
      expect(r.stderr).toBe(`${name}: drop privileges: chroot: the PID file ${pidFile} is outside the chroot ${root}: after the chroot the daemon could not remove it on stop; put it inside, e.g. --pid-file ${join(root, "run", `${name}.pid`)}\n`);
      nothingLeft(name, pidFile);
      const log = join(dir, `${name}.log`);
      r = await cli(["start", "--user", "nobody", "--log-file", log], { PRIV_NAME: name, PRIV_CHROOT: root });
      expect(r.code).toBe(1);
      expect(r.stderr).toBe(`${name}: drop privileges: chroot: the log file ${log} is outside the chroot ${root}: after the chroot the daemon could not reopen it after logrotate; put it inside, e.g. --log-file ${join(root, "var/log", `${name}.log`)}\n`);
      nothingLeft(name, log, join(root, "run", name, `${name}.pid`));
    }, 30_000);
  });

  // The documented recipe: a private mount namespace gives the root its own /proc.
  test.skipIf(!haveUnshare)("chroot example: a root with /proc mounted; the daemon serves from inside it as nobody, reopens its log inside the root on SIGUSR1, and stop removes its PID file there", async () => {
    const name = fresh();
    const port = lowPort();
    const root = join(dir, `root-${n}`);
    mkdirSync(join(root, "proc"), { recursive: true, mode: 0o755 });
    mkdirSync(join(root, "var/log"), { recursive: true, mode: 0o755 });
    chmodSync(root, 0o755);
    // As logrotate's `create` needs it: the daemon's user creates the next log file.
    chownSync(join(root, "var/log"), NOBODY, NOBODY);
    const env = { PRIV_NAME: name, PRIV_PORT: String(port), PRIV_CHROOT: root };
    const log = join(root, "var/log", `${name}.log`);
    const r = await run(
      ["unshare", "--mount", "--propagation", "private", "sh", "-c", `mount -t proc proc "$1/proc" && shift && exec "$@"`, "sh", root, others.bun, APP, "start", "--user", "nobody", "--log-file", log],
      { env, cwd: others.root },
    );
    track(startedPid(r.stdout));
    expect(r.stderr).toContain(`dropped privileges to nobody (uid ${NOBODY}, gid ${NOBODY}, groups ${NOBODY}), chroot ${root}`);
    expect(r.code).toBe(0);
    const pid = startedPid(r.stdout)!;
    const { readlinkSync } = await import("node:fs");
    expect(readlinkSync(`/proc/${pid}/root`)).toBe(root);
    expect(readlinkSync(`/proc/${pid}/cwd`)).toBe(root); // chdir("/") inside it: no way out through the cwd
    expect(((await (await fetch(`http://127.0.0.1:${port}/ids`)).json()) as { uid: number }).uid).toBe(NOBODY);
    // The default PID file is root's default inside the root, in a directory nobody owns.
    const pidFile = join(root, "run", name, `${name}.pid`);
    expect(readFileSync(pidFile, "utf8").trim()).toBe(String(pid));
    expect(statSync(join(root, "run", name)).uid).toBe(NOBODY);

    // logrotate: rename, then SIGUSR1; the daemon (nobody, inside the root) creates the new file.
    renameSync(log, `${log}.1`);
    process.kill(pid, "SIGUSR1");
    expect(await waitFor(() => existsSync(log) && readFileSync(log, "utf8").includes("log file reopened"), 10_000)).toBe(true);
    await fetch(`http://127.0.0.1:${port}/say?m=after-rotate-${name}`);
    expect(await waitFor(() => readFileSync(log, "utf8").includes(`after-rotate-${name}`), 10_000)).toBe(true);
    expect(statSync(log).uid).toBe(NOBODY);
    expect(readFileSync(`${log}.1`, "utf8")).not.toContain(`after-rotate-${name}`);

    const s = await cli(["stop", "--user", "nobody"], env);
    expect(s.stderr).toBe("");
    expect(s.code).toBe(0);
    expect(alive(pid)).toBe(false);
    expect(existsSync(pidFile)).toBe(false);
  }, 60_000);
});
