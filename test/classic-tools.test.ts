/**
 * Classic init tools with our PID file, contract item 6: Debian's
 * start-stop-daemon starts (`--exec BUN -- app.ts start --pid-file P`),
 * queries (`--status`) and stops (`--stop --retry TERM/10/KILL/5`) a daemon;
 * logrotate's `create` + `postrotate kill -USR1` rotates a log under load
 * with no line lost or duplicated. Both are the real Debian programs.
 */
import { expect, test } from "bun:test";
import { chmodSync, existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { alive, BUN, cleanupProcesses, ROOT, run, startedPid, tempDir, track, waitFor } from "./helpers.ts";

cleanupProcesses();
const dir = tempDir("bd-classic-");
chmodSync(dir, 0o755); // logrotate refuses a log directory others may write to; 0755 is what /var/log is
const APP = join(ROOT, "test/fixtures/unit-app.ts");
const ssd = Bun.which("start-stop-daemon") ?? (existsSync("/sbin/start-stop-daemon") ? "/sbin/start-stop-daemon" : undefined);
const logrotate = Bun.which("logrotate") ?? (existsSync("/usr/sbin/logrotate") ? "/usr/sbin/logrotate" : undefined);
const events = (out: string) => (existsSync(out) ? readFileSync(out, "utf8").split("\n").filter(Boolean) : []);

test.skipIf(!ssd)("start-stop-daemon: --start, --status, --stop --retry TERM/10/KILL/5 with our PID file", async () => {
  const pidFile = join(dir, "ssd.pid");
  const out = join(dir, "ssd.events");
  const common = ["--pidfile", pidFile, "--exec", BUN];
  const start = await run([ssd!, "--start", ...common, "--", APP, "start", "--pid-file", pidFile, "--out", out]);
  const pid = track(startedPid(start.stdout))!;
  expect(start).toMatchObject({ code: 0, stdout: `started unit-app (pid ${pid})\n` });
  expect(readFileSync(pidFile, "utf8")).toBe(`${pid}\n`);
  // --status: 0 running (LSB), with the process start-stop-daemon found through the PID file and --exec.
  expect((await run([ssd!, "--status", ...common])).code).toBe(0);
  // Already running: start-stop-daemon says so itself (exit 1) and starts nothing.
  const twice = await run([ssd!, "--start", ...common, "--", APP, "start", "--pid-file", pidFile, "--out", out]);
  expect(twice.code).toBe(1);
  expect(twice.stdout).toContain("already running");
  expect(events(out)).toEqual([`init ${pid} null`, `ready ${pid}`]);
  const stop = await run([ssd!, "--stop", ...common, "--retry", "TERM/10/KILL/5"]);
  expect(stop.code).toBe(0);
  expect(alive(pid)).toBe(false);
  // SIGTERM sufficed: the shutdown hooks ran and the daemon removed its PID file itself.
  expect(events(out).at(-1)).toBe(`shutdown ${pid} SIGTERM`);
  expect(existsSync(pidFile)).toBe(false);
  expect((await run([ssd!, "--status", ...common])).code).toBe(3);
  expect((await run([ssd!, "--stop", ...common, "--retry", "TERM/10/KILL/5"])).code).toBe(1); // nothing to stop
}, 60_000);

test.skipIf(!logrotate)("logrotate create + postrotate kill -USR1: under load, no line lost or duplicated", async () => {
  const pidFile = join(dir, "spam.pid");
  const log = join(dir, "spam.log");
  const state = join(dir, "logrotate.state");
  const conf = join(dir, "logrotate.conf");
  writeFileSync(conf, `${log} {\n  create 0644\n  rotate 20\n  missingok\n  postrotate\n    kill -USR1 "$(cat ${pidFile})"\n  endscript\n}\n`);
  const r = await run([BUN, APP, "start", "--pid-file", pidFile, "--log-file", log, "--spam"]);
  const pid = track(startedPid(r.stdout))!;
  expect(r.code).toBe(0);
  const lines = () => (existsSync(log) ? readFileSync(log, "utf8").split("\n").filter((l) => l.startsWith("line ")).length : 0);
  const rotations = 8;
  const perFile = 20_000;
  for (let i = 1; i <= rotations; i++) {
    // Each rotation happens while lines pour in: the new file has some before the next one.
    expect(await waitFor(() => lines() >= perFile, 30_000)).toBe(true);
    const lr = await run([logrotate!, "-f", "-s", state, conf]);
    expect(lr).toMatchObject({ code: 0, stderr: "" });
    expect(existsSync(`${log}.${i}`)).toBe(true);
  }
  expect(await waitFor(() => lines() >= perFile, 30_000)).toBe(true);
  expect((await run([BUN, APP, "stop", "--pid-file", pidFile])).code).toBe(0);
  expect(alive(pid)).toBe(false);
  // Oldest first: spam.log.5 ... spam.log.1, then spam.log.
  const files = readdirSync(dir).filter((f) => f.startsWith("spam.log")).sort((a, b) => Number(b.split(".")[2] ?? 0) - Number(a.split(".")[2] ?? 0));
  expect(files).toHaveLength(rotations + 1);
  const all = files.flatMap((f) => readFileSync(join(dir, f), "utf8").split("\n").filter((l) => l.startsWith("line ") || l.startsWith("total ")));
  const total = Number(all.at(-1)!.split(" ")[1]);
  expect(all.at(-1)).toBe(`total ${total}`);
  const numbers = all.slice(0, -1).map((l) => Number(l.split(" ")[1]));
  expect(numbers.length).toBe(total);
  // Every line once, in order: none lost at a reopen, none written twice.
  expect(numbers.every((v, i) => v === i)).toBe(true);
  // Every rotated file got lines of its own (the daemon really wrote through each rotation).
  for (const f of files) expect(readFileSync(join(dir, f), "utf8")).toContain("line ");
}, 120_000);
