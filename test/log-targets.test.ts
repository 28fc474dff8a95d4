/**
 * Issue 10 part 6 from outside: a detached daemon without a log file logs
 * to syslog (a real rsyslogd on a private socket), at the level the command
 * line, the config file or a reload says; --log-target overrides.
 */
import { describe, expect, test } from "bun:test";
import { chmodSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { alive, BUN, cleanupProcesses, freePort, ROOT, run, startedPid, tempDir, track, waitFor } from "./helpers.ts";
import { RSYSLOGD, rsyslog, why } from "./rsyslog.ts";

cleanupProcesses();
const APP = join(ROOT, "test/fixtures/config-app.ts");
const dir = tempDir("bd-logt-");
chmodSync(dir, 0o755);
let n = 0;

function daemon(socket: string, level = "INFO") {
  n++;
  const name = `logt${process.pid}-${n}`;
  const port = freePort();
  const conf = join(dir, `${name}.conf`);
  const pidFile = join(dir, `${name}.pid`);
  const write = (lvl: string) => writeFileSync(conf, `port=${port}\nlog_level=${lvl}\npid_file=${pidFile}\n`);
  write(level);
  const env = { CFG_NAME: name, CFG_SYSLOG: socket };
  return {
    name, port, conf, pidFile, write,
    async cli(args: string[]) {
      const r = await run([BUN, APP, ...args], { env, timeoutMs: 60_000 });
      track(startedPid(r.stdout));
      return r;
    },
    say: (level: string, m: string) => fetch(`http://127.0.0.1:${port}/log?level=${level}&m=${encodeURIComponent(m)}`),
  };
}

describe.skipIf(!RSYSLOGD)(`detached, no log file: syslog${why}`, () => {
  test("lines reach rsyslog tagged name[pid] with their severity, at log_level from the file; --log-level wins; a reload's log_level applies", async () => {
    const r = await rsyslog(dir);
    const d = daemon(r.sock);
    const s = await d.cli(["start", "--config", d.conf]);
    expect(s.stderr).toBe("");
    expect(s.code).toBe(0);
    const pid = startedPid(s.stdout)!;
    const tag = `${d.name}[${pid}]:`;
    await d.say("error", "e-line");
    await d.say("warn", "w-line");
    await d.say("info", "i-line");
    await d.say("debug", "d-hidden");
    expect(await waitFor(() => r.lines().some((l) => l.includes("i-line")), 10_000)).toBe(true);
    const mine = () => r.lines().filter((l) => l.includes(tag));
    expect(mine()).toContain(`err daemon ${tag} e-line`);
    expect(mine()).toContain(`warning daemon ${tag} w-line`);
    expect(mine()).toContain(`info daemon ${tag} i-line`);
    expect(mine().some((l) => l.includes("ready (pid"))).toBe(true);
    // The reload's log_level=debug lets debug lines through.
    d.write("debug");
    expect((await d.cli(["reload", "--config", d.conf])).code).toBe(0);
    await d.say("debug", "d-shown");
    expect(await waitFor(() => mine().includes(`debug daemon ${tag} d-shown`), 10_000)).toBe(true);
    expect(mine().some((l) => l.includes("d-hidden"))).toBe(false);

    // The receiver restarts: lines after it arrive (and the daemon never noticed).
    process.kill(r.pid, "SIGKILL");
    expect(await waitFor(() => !alive(r.pid), 10_000)).toBe(true);
    const r2 = await r.restart();
    await d.say("info", "after-restart");
    expect(await waitFor(() => r2.lines().some((l) => l.includes(`${tag} after-restart`)), 10_000)).toBe(true);
    expect((await d.cli(["stop", "--config", d.conf])).code).toBe(0);

    // --log-level error on the command line outranks the file's debug.
    const s2 = await d.cli(["start", "--config", d.conf, "--log-level", "ERROR"]);
    expect(s2.code).toBe(0);
    const tag2 = `${d.name}[${startedPid(s2.stdout)}]:`;
    await d.say("info", "i-suppressed");
    await d.say("error", "e-passes");
    expect(await waitFor(() => r2.lines().some((l) => l.includes(`${tag2} e-passes`)), 10_000)).toBe(true);
    expect(r2.lines().some((l) => l.includes("i-suppressed"))).toBe(false);
    expect((await d.cli(["stop", "--config", d.conf])).code).toBe(0);
    process.kill(r2.pid, "SIGTERM");
  }, 60_000);

  test("--log-target none sends nothing; with a log file the lines go to the file, not to syslog", async () => {
    const r = await rsyslog(dir);
    const d = daemon(r.sock);
    const s = await d.cli(["start", "--config", d.conf, "--log-target", "none"]);
    expect(s.code).toBe(0);
    await d.say("error", "none-line");
    expect((await d.cli(["stop", "--config", d.conf])).code).toBe(0);
    const log = join(dir, `${d.name}.log`);
    const s2 = await d.cli(["start", "--config", d.conf, "--log-file", log]);
    expect(s2.code).toBe(0);
    await d.say("warn", "file-line");
    expect(await waitFor(() => existsSync(log) && readFileSync(log, "utf8").includes("file-line"), 10_000)).toBe(true);
    expect((await d.cli(["stop", "--config", d.conf])).code).toBe(0);
    await Bun.sleep(200);
    expect(r.lines().some((l) => l.includes("none-line") || l.includes("file-line"))).toBe(false);
    process.kill(r.pid, "SIGTERM");
  }, 60_000);
});

describe("log targets without a receiver", () => {
  test("no syslog socket: the daemon starts and runs, its lines go nowhere; --log-target file without a log file is a usage error", async () => {
    const d = daemon(join(dir, "no-such.sock"));
    const s = await d.cli(["start", "--config", d.conf]);
    expect(s).toMatchObject({ code: 0, stderr: "" });
    expect((await d.say("error", "into-the-void")).status).toBe(200);
    expect((await d.cli(["stop", "--config", d.conf])).code).toBe(0);
    const u = await d.cli(["start", "--config", d.conf, "--log-target", "file"]);
    expect(u.code).toBe(2);
    expect(u.stderr).toBe(`${d.name}: --log-target file needs a log file: give --log-file (or log_file in the config)\n`);
  }, 60_000);

  test("the foreground logs to stderr", async () => {
    const d = daemon(join(dir, "no-such.sock"));
    const p = Bun.spawn([BUN, APP, "run", "--config", d.conf], { env: { ...process.env, CFG_NAME: d.name }, stdout: "pipe", stderr: "pipe" });
    track(p.pid);
    let err = "";
    const reader = (async () => {
      for await (const c of p.stderr) err += new TextDecoder().decode(c);
    })();
    expect(await waitFor(() => err.includes("ready (pid"), 10_000)).toBe(true);
    p.kill("SIGTERM");
    await p.exited;
    await reader;
    expect(err).toContain(`[info] [${d.name}] ready (pid`);
  }, 30_000);
});
