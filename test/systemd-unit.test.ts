/**
 * The unit `unit` prints, installed as printed into a real systemd 252
 * (booted as PID 1 of a private namespace, test/systemd-ns.ts): it starts
 * (activating during a slow init, then active), reloads (the hook runs),
 * stops (inactive, not failed), fails with the init error in its journal,
 * is restarted by the watchdog when its event loop blocks and never when
 * healthy, outlives TimeoutStartSec by ctx.extendTimeout, and is started by
 * a .socket unit on the first connection.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { BUN, cleanupProcesses, forOtherUsers, HELLO, ROOT, run, tempDir, waitFor } from "./helpers.ts";
import { bootSystemd, systemdSkipReason, type Systemd } from "./systemd-ns.ts";

cleanupProcesses();
const dir = tempDir("bd-unit-");
const APP = join(ROOT, "test/fixtures/unit-app.ts");
const skip = systemdSkipReason();
if (skip) console.warn(`skipping the systemd unit tests: ${skip}`);

let sd: Systemd;
let n = 0;
/** A unit name and files of its own, so that tests (and parallel runs) never share one. */
const fresh = (tag: string) => {
  n++;
  const unit = `bd-${tag}-${process.pid}-${n}`;
  return { unit, service: `${unit}.service`, out: join(dir, `${unit}.events`), pidFile: `/run/${unit}.pid` };
};
const events = (out: string) => (existsSync(out) ? readFileSync(out, "utf8").split("\n").filter(Boolean) : []);

/** What `unit` prints for the fixture (or another entry), checked to succeed. */
async function printUnit(args: string[], entry = APP): Promise<string> {
  const r = await run([BUN, entry, "unit", ...args]);
  if (r.code !== 0) throw new Error(`unit failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}

const state = (service: string) => sd.prop(service, "ActiveState");

describe.skipIf(!!skip)("the unit `unit` prints, under a real systemd", () => {
  beforeAll(async () => {
    sd = await bootSystemd();
  }, 60_000);
  afterAll(async () => {
    await sd?.kill();
  });

  test("the boot left the host alone: the /tmp sentinel survives, /dev/log untouched, no distribution unit active", async () => {
    expect(sd.hostIntact()).toEqual({ sentinel: true, devLog: "unchanged" });
    const active = (await sd.systemctl("list-units", "--state=active", "--plain", "--no-legend", "--no-pager")).stdout;
    expect(active).toContain("bare.target");
    for (const unit of ["systemd-tmpfiles", "udev", "journald-dev-log", "logind", "dbus", "getty", "cron", "timesyncd"]) expect(active).not.toContain(unit);
  });

  test("Type=notify as printed: activating during a slow init, then active; reload runs the hook; stop is inactive, not failed", async () => {
    const { service, out, pidFile } = fresh("notify");
    const text = await printUnit(["--pid-file", pidFile, "--out", out, "--init-ms", "3000"]);
    expect(text).toContain("Type=notify\n");
    expect(text).toMatch(/^ExecStart=\/\S+ \S+unit-app\.ts run --pid-file \S+ --out \S+ --init-ms 3000$/m);
    // shutdownTimeout 3000 x (1 shutdown hook + 1) + 1 s.
    expect(text).toContain("TimeoutStopSec=7\n");
    await sd.install(service, text);
    expect((await sd.systemctl("start", "--no-block", service)).code).toBe(0);
    expect(await waitFor(async () => events(out).length > 0)).toBe(true);
    expect(await state(service)).toBe("activating");
    expect(await waitFor(async () => (await state(service)) === "active", 20_000, 100)).toBe(true);
    const pid = Number(await sd.prop(service, "MainPID"));
    expect(events(out)).toEqual([`init ${pid} null`, `ready ${pid}`]);
    expect((await sd.systemctl("reload", service)).code).toBe(0);
    expect(await waitFor(() => events(out).includes(`reload ${pid}`))).toBe(true);
    expect(await state(service)).toBe("active");
    expect((await sd.systemctl("stop", service)).code).toBe(0);
    expect(await state(service)).toBe("inactive");
    expect(await sd.prop(service, "Result")).toBe("success");
    expect(events(out).at(-1)).toBe(`shutdown ${pid} SIGTERM`);
    // Its own PID file (in the namespace's /run) is gone with it.
    expect((await sd.exec(["test", "-e", pidFile])).code).toBe(1);
  }, 60_000);

  test("an ExecStart word with blanks, quotes, $ and % reaches the daemon verbatim", async () => {
    const { service, out, pidFile } = fresh("quote");
    const say = `a "b" c \${HOME} $HOME %n \\ d;`;
    await sd.install(service, await printUnit(["--pid-file", pidFile, "--out", out, "--say", say]));
    expect((await sd.systemctl("start", service)).code).toBe(0);
    const pid = Number(await sd.prop(service, "MainPID"));
    expect(events(out)[0]).toBe(`init ${pid} ${JSON.stringify(say)}`);
    expect((await sd.systemctl("stop", service)).code).toBe(0);
  }, 60_000);

  test("Type=forking as printed (--type forking): PIDFile= names the daemon, reload and stop work", async () => {
    const { service, out, pidFile } = fresh("forking");
    const text = await printUnit(["--type", "forking", "--pid-file", pidFile, "--out", out]);
    expect(text).toContain(`Type=forking\nPIDFile=${pidFile}\n`);
    expect(text).toMatch(/^ExecStart=\S+ \S+ start --pid-file /m);
    await sd.install(service, text);
    expect((await sd.systemctl("start", service)).code).toBe(0);
    expect(await state(service)).toBe("active");
    const pid = Number(await sd.prop(service, "MainPID"));
    expect((await sd.exec(["cat", pidFile])).stdout).toBe(`${pid}\n`);
    expect(events(out)).toEqual([`init ${pid} null`, `ready ${pid}`]);
    expect((await sd.systemctl("reload", service)).code).toBe(0);
    expect(await waitFor(() => events(out).includes(`reload ${pid}`))).toBe(true);
    expect((await sd.systemctl("stop", service)).code).toBe(0);
    expect(await state(service)).toBe("inactive");
    expect(await sd.prop(service, "Result")).toBe("success");
    expect(events(out).at(-1)).toBe(`shutdown ${pid} SIGTERM`);
  }, 60_000);

  test("a throwing init: the unit ends failed, with the error in its journal", async () => {
    const { service, out, pidFile } = fresh("fail");
    await sd.install(service, await printUnit(["--pid-file", pidFile, "--out", out, "--fail"]));
    expect((await sd.systemctl("start", service)).code).not.toBe(0);
    // Restart=on-failure tries again until the start limit; then it stays failed.
    expect(await waitFor(async () => (await state(service)) === "failed", 30_000, 200)).toBe(true);
    expect(await sd.prop(service, "Result")).toBe("exit-code");
    expect(await sd.journal(service)).toContain(`init hook "slowInit" failed: cannot open /etc/unit-app.conf: no such file`);
  }, 60_000);

  test("WatchdogSec=2 + Restart=on-watchdog: a blocked event loop is restarted, a healthy daemon never", async () => {
    const blocked = fresh("wd-blocked");
    const healthy = fresh("wd-healthy");
    const dropIn = "[Service]\nWatchdogSec=2\nRestart=on-watchdog\n";
    await sd.install(blocked.service, await printUnit(["--pid-file", blocked.pidFile, "--out", blocked.out, "--block-after-ms", "500"]));
    await sd.install(`${blocked.service}.d/watchdog.conf`, dropIn);
    await sd.install(healthy.service, await printUnit(["--pid-file", healthy.pidFile, "--out", healthy.out]));
    await sd.install(`${healthy.service}.d/watchdog.conf`, dropIn);
    expect((await sd.systemctl("start", healthy.service)).code).toBe(0);
    const healthyPid = await sd.prop(healthy.service, "MainPID");
    expect((await sd.systemctl("start", blocked.service)).code).toBe(0);
    const firstPid = await sd.prop(blocked.service, "MainPID");
    // Two watchdog restarts of the blocked one: the healthy one has lived through more than two periods meanwhile.
    expect(await waitFor(async () => Number(await sd.prop(blocked.service, "NRestarts")) >= 2, 40_000, 200)).toBe(true);
    expect(await sd.prop(blocked.service, "MainPID")).not.toBe(firstPid);
    expect(events(blocked.out).filter((l) => l.startsWith("blocking ")).length).toBeGreaterThanOrEqual(2);
    expect(await sd.journal(blocked.service)).toContain("Watchdog timeout");
    expect(await sd.prop(healthy.service, "NRestarts")).toBe("0");
    expect(await sd.prop(healthy.service, "MainPID")).toBe(healthyPid);
    expect(await state(healthy.service)).toBe("active");
    for (const u of [blocked.service, healthy.service]) await sd.systemctl("stop", u);
    expect(await sd.prop(healthy.service, "Result")).toBe("success");
  }, 90_000);

  test("TimeoutStartSec=2: a 5 s init that calls ctx.extendTimeout becomes active; one that does not times out", async () => {
    const extended = fresh("extend");
    const plain = fresh("noextend");
    const dropIn = "[Service]\nTimeoutStartSec=2\nRestart=no\n";
    await sd.install(extended.service, await printUnit(["--pid-file", extended.pidFile, "--out", extended.out, "--init-ms", "5000", "--extend-ms", "3000"]));
    await sd.install(`${extended.service}.d/timeout.conf`, dropIn);
    await sd.install(plain.service, await printUnit(["--pid-file", plain.pidFile, "--out", plain.out, "--init-ms", "5000"]));
    await sd.install(`${plain.service}.d/timeout.conf`, dropIn);
    const [a, b] = await Promise.all([sd.systemctl("start", extended.service), sd.systemctl("start", plain.service)]);
    expect(a.code).toBe(0);
    expect(await state(extended.service)).toBe("active");
    expect(b.code).not.toBe(0);
    expect(await state(plain.service)).toBe("failed");
    expect(await sd.prop(plain.service, "Result")).toBe("timeout");
    await sd.systemctl("stop", extended.service);
    expect(await sd.prop(extended.service, "Result")).toBe("success");
  }, 60_000);

  test("a .socket unit starts examples/hello.ts on the first connection, and it serves on the passed socket", async () => {
    const { unit, service, pidFile } = fresh("hello");
    const port = 20000 + ((process.pid * 7 + n * 131) % 20000);
    // The port given to unit is what hello would bind without activation; the socket unit overrides it.
    await sd.install(service, await printUnit(["--pid-file", pidFile, "--shutdown-hooks", "1", "--port", "1"], HELLO));
    await sd.install(`${unit}.socket`, `[Socket]\nListenStream=127.0.0.1:${port}\nFileDescriptorName=http\n`);
    expect((await sd.systemctl("start", `${unit}.socket`)).code).toBe(0);
    expect(await state(service)).toBe("inactive");
    // The namespace shares the host's network: connect from here.
    const body = await (await fetch(`http://127.0.0.1:${port}/`)).text();
    expect(await state(service)).toBe("active");
    const pid = await sd.prop(service, "MainPID");
    expect(body).toBe(`hello from ${pid}\n`);
    expect(await sd.journal(service)).toContain("serving on the activated socket (fd 3, http)");
    expect((await sd.systemctl("stop", service)).code).toBe(0);
    expect(await sd.prop(service, "Result")).toBe("success");
    // The socket stays and starts it again on the next connection.
    const again = await (await fetch(`http://127.0.0.1:${port}/`)).text();
    expect(again).toBe(`hello from ${await sd.prop(service, "MainPID")}\n`);
    for (const u of [`${unit}.socket`, service]) await sd.systemctl("stop", u);
  }, 60_000);

  describe("User= (issue 9)", () => {
    // The service runs as nobody: its bun and sources must be nobody's to read.
    const others = skip ? undefined : forOtherUsers();

    test("--user nobody as printed: active as nobody on every thread, its PID file in the RuntimeDirectory= systemd made nobody's, Environment= as quoted; stop leaves none of it", async () => {
      const { unit, service } = fresh("user");
      // The daemon's name is the unit's: set through Environment=, as the printed unit gives it.
      const env = { keep: [], set: { UNIT_NAME: unit, GREETING: 'a "b" 50%n $HOME' } };
      const r = await run([others!.bun, others!.fixture("test/fixtures/unit-priv-app.ts"), "unit", "--user", "nobody"], { env: { UNIT_NAME: unit, UNIT_ENV: JSON.stringify(env) }, cwd: others!.root });
      expect(r.code).toBe(0);
      const text = r.stdout;
      expect(text).toContain("User=nobody\n");
      expect(text).toContain(`RuntimeDirectory=${unit}\n`);
      await sd.install(service, text);
      expect((await sd.systemctl("start", service)).code).toBe(0);
      expect(await state(service)).toBe("active");
      const pid = await sd.prop(service, "MainPID");
      const inside = async (cmd: string[]) => (await sd.exec(cmd)).stdout;
      const tasks = (await inside(["ls", `/proc/${pid}/task`])).split(/\s+/).filter(Boolean);
      expect(tasks.length).toBeGreaterThan(1);
      for (const t of tasks) {
        const st = await inside(["cat", `/proc/${pid}/task/${t}/status`]);
        expect(/^Uid:\s*(.*)$/m.exec(st)?.[1]?.trim().split(/\s+/)).toEqual(Array(4).fill("65534"));
        expect(/^Gid:\s*(.*)$/m.exec(st)?.[1]?.trim().split(/\s+/)).toEqual(Array(4).fill("65534"));
        expect(/^NoNewPrivs:\s*(.*)$/m.exec(st)?.[1]?.trim()).toBe("1");
      }
      expect((await inside(["cat", `/run/${unit}/${unit}.pid`])).trim()).toBe(pid);
      expect((await inside(["stat", "-c", "%U %a", `/run/${unit}`])).trim()).toBe("nobody 755");
      expect((await inside(["cat", `/proc/${pid}/environ`])).split("\0")).toContain('GREETING=a "b" 50%n $HOME');
      expect((await sd.systemctl("stop", service)).code).toBe(0);
      expect(await state(service)).toBe("inactive");
      expect(await sd.prop(service, "Result")).toBe("success");
      expect((await sd.exec(["test", "-e", `/run/${unit}`])).code).toBe(1);
    }, 60_000);
  });
});
