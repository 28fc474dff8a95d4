/**
 * Issue 10 part 6: the syslog reporter (src/syslog.ts) against a real
 * rsyslogd on a private socket (never /dev/log): severities, facility, tag,
 * one datagram an event (issue 12 item 6: a stack is one record), JSON
 * messages, RFC 5424, the 8 KiB cut, a receiver that is killed and
 * restarted, one that stops reading (a full queue), and none at all.
 * The exact bytes of a datagram are checked with the python3 receiver of
 * test/helpers.ts.
 */
import { describe, expect, test } from "bun:test";
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { syslogAvailable } from "../src/syslog.ts";
import { alive, BUN, cleanupProcesses, notifyReceiver, ROOT, tempDir, track, waitFor } from "./helpers.ts";
import { fileId, RSYSLOGD, rsyslog, why, type Rsyslog } from "./rsyslog.ts";
const python = Bun.which("python3");

cleanupProcesses();
const root = tempDir("bd-syslog-");
const FIXTURE = join(ROOT, "test/fixtures/syslog-logger.ts");
async function stop(pid: number, signal: "SIGKILL" | "SIGTERM"): Promise<void> {
  process.kill(pid, signal);
  expect(await waitFor(() => !alive(pid), 20_000)).toBe(true);
}

interface Fixture {
  proc: Subprocess<"pipe", "pipe", "pipe">;
  pid: number;
  /** Send one command; resolves once the fixture printed "sent" for it. */
  cmd(line: string): Promise<void>;
  /** Send `exit`; resolves to the exit code and what it wrote to stderr. */
  exit(): Promise<{ code: number; stderr: string }>;
}

async function fixture(socket: string, ...args: string[]): Promise<Fixture> {
  return fixtureWith({}, socket, ...args);
}

async function fixtureWith(env: Record<string, string>, socket: string, ...args: string[]): Promise<Fixture> {
  const proc = Bun.spawn([BUN, FIXTURE, socket, "--ident", "bd-syslog-test", ...args], {
    env: { ...process.env, ...env },
    stdin: "pipe",
    stdout: "pipe",
    stderr: "pipe",
  });
  track(proc.pid);
  let out = "";
  const stderr = new Response(proc.stderr).text();
  void (async () => {
    const dec = new TextDecoder();
    for await (const chunk of proc.stdout) out += dec.decode(chunk, { stream: true });
  })();
  let asked = 0;
  const sent = () => out.split("\n").filter((l) => l === "sent").length;
  return {
    proc,
    pid: proc.pid,
    async cmd(line) {
      asked++;
      proc.stdin.write(`${line}\n`);
      await proc.stdin.flush();
      const ok = await waitFor(() => sent() >= asked || !alive(proc.pid), 30_000);
      if (!ok || sent() < asked) throw new Error(`fixture did not answer ${JSON.stringify(line)}; stdout: ${out}; stderr: ${await stderr}`);
    },
    async exit() {
      proc.stdin.write("exit\n");
      await proc.stdin.flush();
      const code = await proc.exited;
      return { code, stderr: await stderr };
    },
  };
}

const TAG = (pid: number) => `bd-syslog-test[${pid}]:`;
/** Our lines (rsyslogd's own, if any, left out). */
const ours = (r: Rsyslog, pid: number) => r.lines().filter((l) => l.includes(`bd-syslog-test[${pid}]`));

describe("through rsyslogd", () => {
  test.skipIf(!RSYSLOGD)(`severity per consola type, facility daemon, tag ident[pid]: (RFC 3164 on a stock imuxsock socket)${why}`, async () => {
    const r = await rsyslog(root);
    const f = await fixture(r.sock, "--level", "4");
    for (const c of ["error e1", "warn w1", "info i1", "debug d1", "log l1"]) await f.cmd(c);
    expect(await waitFor(() => ours(r, f.pid).length >= 5, 20_000)).toBe(true);
    const t = TAG(f.pid);
    expect(ours(r, f.pid)).toEqual([`err daemon ${t} e1`, `warning daemon ${t} w1`, `info daemon ${t} i1`, `debug daemon ${t} d1`, `notice daemon ${t} l1`]);
    expect(await f.exit()).toEqual({ code: 0, stderr: "" });

    // At consola's default level (info) a debug line is never sent: the line after it arrives, it does not.
    const g = await fixture(r.sock, "--facility", "local3");
    await g.cmd("debug hidden");
    await g.cmd("info shown");
    expect(await waitFor(() => ours(r, g.pid).length >= 1, 20_000)).toBe(true);
    expect(ours(r, g.pid)).toEqual([`info local3 ${TAG(g.pid)} shown`]);
    expect(await g.exit()).toEqual({ code: 0, stderr: "" });
  }, 60_000);

  test.skipIf(!RSYSLOGD)(`one datagram per event: a multi-line message and a stack trace are one record each, line breaks shown as \\n; a consola sub-tag${why}`, async () => {
    const r = await rsyslog(root);
    const f = await fixture(r.sock);
    await f.cmd("multi m");
    await f.cmd("stack boom");
    await f.cmd("tagged t1");
    await f.cmd("info last");
    expect(await waitFor(() => ours(r, f.pid).at(-1)?.endsWith(" last") === true, 20_000)).toBe(true);
    const t = TAG(f.pid);
    const got = ours(r, f.pid);
    expect(got).toHaveLength(4);
    expect(got[0]).toBe(`info daemon ${t} m 1\\nm 2\\nm 3`);
    expect(got[1]).toStartWith(`err daemon ${t} Error: boom\\n    at `);
    expect(got[1]).toContain("syslog-logger.ts");
    expect(got.slice(2)).toEqual([`info daemon ${t} [sub] t1`, `info daemon ${t} last`]);
    // Every line the receiver got is one whole datagram: nothing came in without the tag.
    expect(r.lines().filter((l) => !l.includes("[") && !l.includes("rsyslogd"))).toEqual([]);
    expect(await f.exit()).toEqual({ code: 0, stderr: "" });
  }, 60_000);

  test.skipIf(!RSYSLOGD)(`logFormat json: the message is one JSON object a record, cut inside its strings to fit 8 KiB; the drop count is an object too${why}`, async () => {
    const dir = mkdtempSync(join(root, "json-"));
    // Started before its receiver: two lines are dropped and counted.
    const f = await fixture(join(dir, "log.sock"), "--log-format", "json");
    await f.cmd("info early 1");
    await f.cmd("info early 2");
    const r = await rsyslog(root, dir);
    for (const c of ["multi m", "stack boom", "tagged t1", "long 9000", "longerror 5000", "info last"]) await f.cmd(c);
    expect(await waitFor(() => ours(r, f.pid).at(-1)?.endsWith('"msg":"last"}') === true, 20_000)).toBe(true);
    const t = TAG(f.pid);
    const got = ours(r, f.pid);
    expect(got.map((l) => l.slice(0, l.indexOf(t) + t.length))).toEqual(["warning", "info", "err", "info", "info", "err", "info"].map((s) => `${s} daemon ${t}`));
    const recs = got.map((l) => JSON.parse(l.slice(l.indexOf(t) + t.length + 1)));
    for (const rec of recs) {
      expect(rec.name).toBe("bd-syslog-test");
      expect(rec.pid).toBe(f.pid);
      expect(rec.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    }
    const [warning, multi, stack, tagged, long, longError, last] = recs;
    expect(warning).toMatchObject({ level: "warn", msg: "syslog: 2 lines dropped while the receiver was unavailable" });
    expect(multi).toMatchObject({ level: "info", msg: "m 1\nm 2\nm 3" });
    expect(stack.level).toBe("error");
    expect(stack.msg).toBe("boom");
    expect(stack.err.message).toBe("boom");
    expect(stack.err.stack).toStartWith("Error: boom\n    at ");
    expect(stack.err.stack).toContain("syslog-logger.ts");
    expect(tagged).toMatchObject({ tag: "sub", msg: "t1" });
    expect(long.msg).toMatch(/^long:x+\.\.\.\[truncated\]$/);
    expect(longError.msg).toMatch(/^e+\.\.\.\[truncated\]$/);
    expect(longError.err.message).toBe("e".repeat(5000));
    expect(longError.err.stack).toBe("...[truncated]");
    for (const l of [got[4]!, got[5]!]) {
      // "<PRI>Mmm dd hh:mm:ss " (20 bytes) + tag + " " + the object: at most 8192 bytes, and not cut much shorter.
      const size = 20 + t.length + 1 + Buffer.byteLength(l.slice(l.indexOf(t) + t.length + 1));
      expect(size).toBeLessThanOrEqual(8192);
      expect(size).toBeGreaterThan(8100);
    }
    expect(last.msg).toBe("last");
    expect(await f.exit()).toEqual({ code: 0, stderr: "" });
  }, 60_000);

  test.skipIf(!RSYSLOGD)(`a line longer than 8 KiB is cut, with a marker, before rsyslog would cut it; one that fits arrives whole${why}`, async () => {
    const r = await rsyslog(root);
    const f = await fixture(r.sock);
    await f.cmd("long 9000");
    await f.cmd("long 8000");
    expect(await waitFor(() => ours(r, f.pid).length >= 2, 20_000)).toBe(true);
    const [cut, whole] = ours(r, f.pid) as [string, string];
    expect(cut).toMatch(new RegExp(`^info daemon ${TAG(f.pid).replace(/[[\]]/g, "\\$&")} long:x+\\.\\.\\.\\[truncated\\]$`));
    // The datagram is at most 8192 bytes: "<30>Mmm dd hh:mm:ss " (20) + tag + " " + text.
    const text = cut.slice(cut.indexOf(": ") + 2);
    expect(20 + TAG(f.pid).length + 1 + text.length).toBeLessThanOrEqual(8192);
    expect(20 + TAG(f.pid).length + 1 + text.length).toBeGreaterThan(8150);
    expect(whole).toBe(`info daemon ${TAG(f.pid)} long:${"x".repeat(8000)}:end`);
    expect(await f.exit()).toEqual({ code: 0, stderr: "" });
  }, 60_000);

  test.skipIf(!RSYSLOGD)(`RFC 5424 is accepted by rsyslog's regular parser, and RFC 3164 too${why}`, async () => {
    const r = await rsyslog(root);
    const f = await fixture(r.sock5424, "--format", "rfc5424", "--level", "4");
    for (const c of ["error e1", "warn w1", "info i1", "debug d1", "multi m"]) await f.cmd(c);
    expect(await waitFor(() => ours(r, f.pid).length >= 5, 20_000)).toBe(true);
    // rsyslog makes the tag from APP-NAME and PROCID (no colon): it parsed the header as 5424, not as text.
    const t = `bd-syslog-test[${f.pid}]`;
    expect(ours(r, f.pid)).toEqual([`err daemon ${t} e1`, `warning daemon ${t} w1`, `info daemon ${t} i1`, `debug daemon ${t} d1`, `info daemon ${t} m 1\\nm 2\\nm 3`]);
    expect(await f.exit()).toEqual({ code: 0, stderr: "" });

    const g = await fixture(r.sock5424);
    await g.cmd("warn w2");
    expect(await waitFor(() => ours(r, g.pid).length >= 1, 20_000)).toBe(true);
    expect(ours(r, g.pid)).toEqual([`warning daemon ${TAG(g.pid)} w2`]);
    expect(await g.exit()).toEqual({ code: 0, stderr: "" });
  }, 60_000);

  for (const signal of ["SIGKILL", "SIGTERM"] as const) {
    test.skipIf(!RSYSLOGD)(`rsyslogd stopped by ${signal} and started again on the same socket: only the lines sent while it was down are lost, and counted${why}`, async () => {
      const r = await rsyslog(root);
      const f = await fixture(r.sock);
      await f.cmd("info before");
      expect(await waitFor(() => ours(r, f.pid).length >= 1, 20_000)).toBe(true);
      await stop(r.pid, signal);
      // SIGKILL leaves the socket file behind (ECONNREFUSED); SIGTERM removes it (ENOENT).
      expect(existsSync(r.sock)).toBe(signal === "SIGKILL");
      for (const c of ["info down 1", "error down 2", "multi down"]) await f.cmd(c);
      const r2 = await r.restart();
      for (const c of ["info after 1", "warn after 2", "info after 3"]) await f.cmd(c);
      expect(await waitFor(() => ours(r2, f.pid).at(-1)?.endsWith("after 3") === true, 20_000)).toBe(true);
      const t = TAG(f.pid);
      expect(ours(r2, f.pid)).toEqual([
        `info daemon ${t} before`,
        // 3 lines: "down 1", "down 2" and "multi down" (one record, though three lines of text).
        `warning daemon ${t} syslog: 3 lines dropped while the receiver was unavailable`,
        `info daemon ${t} after 1`,
        `warning daemon ${t} after 2`,
        `info daemon ${t} after 3`,
      ]);
      expect(alive(f.pid)).toBe(true);
      expect(await f.exit()).toEqual({ code: 0, stderr: "" });
    }, 60_000);
  }

  test.skipIf(!RSYSLOGD)(`a receiver that stops reading (SIGSTOP): lines beyond its full queue are dropped without blocking, then counted${why}`, async () => {
    const r = await rsyslog(root);
    const f = await fixture(r.sock);
    await f.cmd("info before");
    expect(await waitFor(() => ours(r, f.pid).length >= 1, 20_000)).toBe(true);
    process.kill(r.pid, "SIGSTOP");
    const N = 3000; // well past net.unix.max_dgram_qlen (512 by default) and the socket buffer
    try {
      // Had a send blocked on the full queue, the fixture would never print "sent".
      await f.cmd(`burst ${N} q`);
    } finally {
      process.kill(r.pid, "SIGCONT");
    }
    // The queue drains once rsyslogd runs again; the first line after that gets through, preceded by the count.
    let resumed = 0;
    for (; resumed < 100; ) {
      await f.cmd(`info resumed ${++resumed}`);
      if (await waitFor(() => ours(r, f.pid).some((l) => / resumed \d+$/.test(l)), 1000)) break;
    }
    await f.cmd("info final");
    expect(await waitFor(() => ours(r, f.pid).at(-1)?.endsWith(" final") === true, 20_000)).toBe(true);
    const got = ours(r, f.pid).map((l) => l.slice(l.indexOf(": ") + 2));
    expect(got[0]).toBe("before");
    const q = got.filter((l) => /^q \d+$/.test(l));
    // What got in is the first lines of the burst, in order; the rest were refused.
    expect(q.length).toBeGreaterThan(0);
    expect(q.length).toBeLessThan(N);
    expect(q).toEqual(Array.from({ length: q.length }, (_, i) => `q ${i + 1}`));
    // One count, or more when the drained queue filled again after the first one went out (then at most one a second).
    const warnings = got.filter((l) => l.startsWith("syslog: "));
    expect(warnings.length).toBeGreaterThan(0);
    const counts = warnings.map((w) => Number(/^syslog: (\d+) lines dropped while the receiver was unavailable$/.exec(w)?.[1]));
    for (const c of counts) expect(c).toBeGreaterThan(0);
    const dropped = counts.reduce((a, b) => a + b, 0);
    const firstResumed = got.findIndex((l) => l.startsWith("resumed "));
    expect(got[firstResumed - 1]).toStartWith("syslog: ");
    const resumedGot = got.filter((l) => l.startsWith("resumed ")).length;
    // Every line is accounted for: received, or counted in the warning.
    expect(q.length + dropped + resumedGot).toBe(N + resumed);
    expect(got.at(-1)).toBe("final");
    expect(await f.exit()).toEqual({ code: 0, stderr: "" });
  }, 120_000);

  test.skipIf(!RSYSLOGD)(`started before any receiver: the lines before it are counted, the first one after it arrives${why}`, async () => {
    const dir = mkdtempSync(join(root, "late-"));
    const f = await fixture(join(dir, "log.sock"));
    await f.cmd("info early 1");
    await f.cmd("info early 2");
    const r = await rsyslog(root, dir);
    await f.cmd("info late");
    expect(await waitFor(() => ours(r, f.pid).length >= 2, 20_000)).toBe(true);
    const t = TAG(f.pid);
    expect(ours(r, f.pid)).toEqual([`warning daemon ${t} syslog: 2 lines dropped while the receiver was unavailable`, `info daemon ${t} late`]);
    expect(await f.exit()).toEqual({ code: 0, stderr: "" });
  }, 60_000);

  test.skipIf(!RSYSLOGD)(`syslogAvailable: true while rsyslogd is bound; false once it is killed (stale socket file), for a regular file, a directory, a missing path${why}`, async () => {
    const r = await rsyslog(root);
    expect(syslogAvailable(r.sock)).toBe(true);
    expect(syslogAvailable(r.sock5424)).toBe(true);
    await stop(r.pid, "SIGKILL");
    expect(existsSync(r.sock)).toBe(true);
    expect(syslogAvailable(r.sock)).toBe(false);
    writeFileSync(join(r.dir, "plain"), "");
    expect(syslogAvailable(join(r.dir, "plain"))).toBe(false);
    expect(syslogAvailable(r.dir)).toBe(false);
    expect(syslogAvailable(join(r.dir, "missing", "log.sock"))).toBe(false);
    expect(syslogAvailable("")).toBe(false);
    expect(syslogAvailable(`/${"x".repeat(200)}`)).toBe(false);
  }, 60_000);
});

test("importing src/syslog.ts opens nothing and loads no FFI; an unusable option is a USAGE error", async () => {
  const code = `
const fs = require("fs");
const look = () => ({ fds: fs.readdirSync("/proc/self/fd").length, ffi: fs.readFileSync("/proc/self/maps", "utf8").split("\\n").filter((l) => /tcc|ffi/i.test(l)).length });
await import(${JSON.stringify(join(ROOT, "test/fixtures/empty.ts"))});
const before = look();
const m = await import(${JSON.stringify(join(ROOT, "src/syslog.ts"))});
const after = look();
const errors = [{ ident: " " }, { ident: "a", facility: "bogus" }, { ident: "a", format: "rfc9999" }].map((o) => { try { m.createSyslogReporter(o); return "none"; } catch (e) { return e.code; } });
console.log(JSON.stringify({ before, after, exports: Object.keys(m).sort(), errors }));
`;
  const p = Bun.spawnSync([BUN, "-e", code], { stderr: "pipe" });
  expect(p.stderr.toString()).toBe("");
  const r = JSON.parse(p.stdout.toString());
  expect(r.after).toEqual(r.before);
  expect(r.exports).toEqual(["SYSLOG_FACILITIES", "createSyslogReporter", "syslogAvailable"]);
  expect(r.errors).toEqual(["USAGE", "USAGE", "USAGE"]);
}, 30_000);

describe("without a receiver", () => {
  for (const kind of ["missing path", "regular file", "stale socket"] as const) {
    test(`${kind}: the logger neither crashes nor hangs, and writes nothing to stderr`, async () => {
      const dir = mkdtempSync(join(root, "none-"));
      let socket = join(dir, "missing", "log.sock");
      if (kind === "regular file") writeFileSync((socket = join(dir, "file")), "");
      if (kind === "stale socket") {
        // A socket file nobody is bound to, as a killed syslog daemon leaves it.
        const s = Bun.spawnSync([BUN, "-e", `require("node:net").createServer().listen(${JSON.stringify(join(dir, "stale"))}, () => process.kill(process.pid, "SIGKILL"))`]);
        expect(s.exitCode === 0 || s.signalCode === "SIGKILL").toBe(true);
        socket = join(dir, "stale");
        expect(existsSync(socket)).toBe(true);
      }
      expect(syslogAvailable(socket)).toBe(false);
      const f = await fixture(socket, "--level", "4");
      for (const c of ["error e", "warn w", "info i", "debug d", "multi m", "stack s", "long 20000", "burst 2000 b", "close", "info after close"]) await f.cmd(c);
      expect(await f.exit()).toEqual({ code: 0, stderr: "" });
    }, 60_000);
  }
});

describe.skipIf(!python)(`the datagrams themselves${python ? "" : " (skipped: python3, the raw receiver, is missing)"}`, () => {
  test("RFC 3164 as glibc sends it: <PRI>Mmm dd hh:mm:ss ident[pid]: text, in local time; RFC 5424 with an ISO timestamp, host and pid", async () => {
    const dir = mkdtempSync(join(root, "raw-"));
    const rx = await notifyReceiver(dir, "path");
    // A fixed offset without daylight saving: the local time is UTC + 14 h.
    const f = await fixtureWith({ TZ: "Etc/GMT-14" }, rx.address);
    await f.cmd("error e1");
    await f.cmd("info a b");
    const g = await fixture(rx.address, "--format", "rfc5424", "--facility", "local7");
    await g.cmd("warn w1");
    expect(await waitFor(() => rx.msgs().length >= 3, 20_000)).toBe(true);
    const j = await fixture(rx.address, "--log-format", "json");
    await j.cmd("info a b");
    expect(await waitFor(() => rx.msgs().length >= 4, 20_000)).toBe(true);
    const [m1, m2, m3, m4] = rx.msgs() as [string, string, string, string];
    // JSON: the same header, then the object right after "ident[pid]: ".
    const mj = new RegExp(`^<30>[A-Z][a-z]{2} [ 1-3]\\d \\d\\d:\\d\\d:\\d\\d bd-syslog-test\\[${j.pid}\\]: (\\{.*\\})$`).exec(m4);
    expect(mj).not.toBeNull();
    const rec = JSON.parse(mj![1]!);
    expect(rec).toEqual({ time: rec.time, level: "info", name: "bd-syslog-test", pid: j.pid, msg: "a b" });
    expect(Object.keys(rec)).toEqual(["time", "level", "name", "pid", "msg"]);
    const re = new RegExp(`^<27>([A-Z][a-z]{2}) ([ 1-3]\\d) (\\d\\d):(\\d\\d):(\\d\\d) bd-syslog-test\\[${f.pid}\\]: e1$`);
    const m = re.exec(m1);
    expect(m).not.toBeNull();
    expect(m2).toBe(m1.replace(/^<27>/, "<30>").replace(/e1$/, "a b"));
    // Not a timing threshold: a stamp in UTC instead of local time is 14 hours off.
    const now = new Date(Date.now() + 14 * 3600_000);
    const months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    // The stamp has no year: the nearest of last, this and next year (a test at New Year).
    const off = Math.min(...[-1, 0, 1].map((y) => Math.abs(Date.UTC(now.getUTCFullYear() + y, months.indexOf(m![1]!), Number(m![2]), Number(m![3]), Number(m![4]), Number(m![5])) - now.getTime())));
    expect(off).toBeLessThan(10 * 60_000);
    const host = (require("node:os") as typeof import("node:os")).hostname();
    const m5 = new RegExp(`^<188>1 (\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z) ${host.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")} bd-syslog-test ${g.pid} - - w1$`).exec(m3);
    expect(m5).not.toBeNull();
    expect(Math.abs(Date.parse(m5![1]!) - Date.now())).toBeLessThan(10 * 60_000);
    expect(await f.exit()).toEqual({ code: 0, stderr: "" });
    expect(await g.exit()).toEqual({ code: 0, stderr: "" });
    expect(await j.exit()).toEqual({ code: 0, stderr: "" });
  }, 60_000);
});
