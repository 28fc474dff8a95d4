/**
 * 10. Logging (issue 10): lines per second of the syslog reporter into a
 * real rsyslogd on a private socket, beside the file path (the daemon's fd 2
 * reporter with fd 2 a file on disk), and what rsyslog actually received.
 */
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import {
  BARE, BUN, FIXTURES, ROOT, Samples, alive, childEnv, fmt, interleave, lines, num, runsOf, stopChild, summarize, table, timed, tmpFile, tracked,
  type Options, type Section, type Step,
} from "../harness.ts";

const PROBE = join(FIXTURES, "log-probe.ts");
/** Lines timed per probe process (after 100 uncounted ones). */
const LINES = 20_000;
const RSYSLOGD = ["/usr/sbin/rsyslogd", "/sbin/rsyslogd"].find((p) => existsSync(p)) ?? Bun.which("rsyslogd") ?? undefined;

/**
 * test/rsyslog.ts's configuration, copied: two imuxsock sockets (log.sock,
 * imuxsock's parser for local sockets, as /dev/log gets; log5424.sock with
 * the regular chain), no rate limit, every message to out.log as one line
 * of "severity facility tag message", flushed at the end of each batch.
 */
function rsyslogConf(dir: string): string {
  return `global(workDirectory="${dir}" maxMessageSize="8k")
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket="${dir}/log.sock" CreatePath="on" RateLimit.Interval="0")
input(type="imuxsock" Socket="${dir}/log5424.sock" CreatePath="on" RateLimit.Interval="0" UseSpecialParser="off")
template(name="bdLine" type="string" string="%syslogseverity-text% %syslogfacility-text% %syslogtag%%msg:::sp-if-no-1st-sp%%msg:::drop-last-lf%\\n")
*.* action(type="omfile" file="${dir}/out.log" template="bdLine" flushOnTXEnd="on")
`;
}

interface Rsyslog {
  proc: Subprocess;
  sock: string;
  out: string;
  err: string;
}

/** A private rsyslogd in the run's temp dir, once both its sockets are bound. */
async function startRsyslog(bin: string): Promise<Rsyslog> {
  const dir = tmpFile("rsyslog");
  mkdirSync(dir);
  const conf = join(dir, "rsyslog.conf");
  writeFileSync(conf, rsyslogConf(dir));
  const err = join(dir, "rsyslogd.err");
  const fd = openSync(err, "a");
  const proc = Bun.spawn([bin, "-n", "-f", conf, "-i", join(dir, "rsyslogd.pid")], { stdin: "ignore", stdout: fd, stderr: fd });
  closeSync(fd);
  tracked.add(proc.pid);
  const socks = [join(dir, "log.sock"), join(dir, "log5424.sock")];
  const end = performance.now() + 20_000;
  while (!socks.every((s) => existsSync(s))) {
    if (!alive(proc.pid) || performance.now() > end) throw new Error(`rsyslogd did not bind its sockets in ${dir}: ${lines(err).slice(-5).join(" | ")}`);
    await Bun.sleep(5);
  }
  return { proc, sock: socks[0]!, out: join(dir, "out.log"), err };
}

interface Probe {
  sent: number;
  warm: number;
  ms: number;
}

function probe(name: string, env: Record<string, string>, stderr: number | "pipe"): { p: Probe; procMs: number; stderr: string } {
  const clean = { ...childEnv };
  // fd 2 must be the file itself, not journald's stream: the reporter would change its format.
  delete clean.JOURNAL_STREAM;
  delete clean.CONSOLA_LEVEL;
  const t0 = performance.now();
  const r = Bun.spawnSync([BUN, PROBE, name], { cwd: ROOT, env: { ...clean, BENCH_LOG_LINES: String(LINES), ...env }, stdin: "ignore", stdout: "pipe", stderr });
  const procMs = performance.now() - t0;
  const err = r.stderr?.toString() ?? "";
  if (r.exitCode !== 0) throw new Error(`log-probe.ts exited ${r.exitCode ?? r.signalCode}: ${err}`);
  return { p: JSON.parse(r.stdout.toString()) as Probe, procMs, stderr: err };
}

/** out.log from byte `from` on, as lines. */
function readFrom(path: string, from: number): { text: string[]; size: number } {
  if (!existsSync(path)) return { text: [], size: from };
  const size = statSync(path).size;
  const buf = Buffer.alloc(size - from);
  const fd = openSync(path, "r");
  try {
    let got = 0;
    while (got < buf.length) {
      const n = readSync(fd, buf, got, buf.length - got, from + got);
      if (n === 0) break;
      got += n;
    }
  } finally {
    closeSync(fd);
  }
  return { text: buf.toString("utf8").split("\n").filter(Boolean), size };
}

const DROPPED = /^syslog: (\d+) lines dropped while the receiver was unavailable$/;

/** A lines/s table in the report's own layout (harness tables have no lines/s unit). */
function rateTable(title: string, s: Samples, rows: Array<[key: string, label: string]>, reference: string): string {
  const ref = s.median(reference);
  const shown = rows.filter(([k]) => s.get(k).length > 0);
  const counts = [...new Set(shown.map(([k]) => s.get(k).length))].join("/");
  const refLabel = rows.find(([k]) => k === reference)?.[1] ?? reference;
  const head = `**${title}** (lines/s, ${counts} runs each; × = median / median of ${refLabel})\n\n| variant | median | min | max | × |\n|---|--:|--:|--:|--:|`;
  const body = shown.map(([k, label]) => {
    const st = summarize(s.get(k));
    return `| ${label} | ${fmt(Math.round(st.median))} | ${fmt(Math.round(st.min))} | ${fmt(Math.round(st.max))} | ${num(st.median / ref, "×")} |`;
  });
  return [head, ...body].join("\n");
}

/** Section 10: lines/s of the syslog reporter (into a private rsyslogd, when there is one) and of the file path. Rounds: --runs, default 30. */
export async function logThroughput(o: Options): Promise<Section> {
  const notes: string[] = [];
  const rs = RSYSLOGD ? await startRsyslog(RSYSLOGD) : undefined;
  if (!rs) notes.push("No `rsyslogd` (looked for /usr/sbin/rsyslogd, /sbin/rsyslogd, PATH): the syslog variant is skipped; the file path and the bare start still run.");
  let seq = 0;
  let offset = 0;
  const acc = { sent: 0, delivered: 0, dropped: 0, unaccounted: 0, rounds: 0, roundsWithDrops: 0 };

  const steps: Step[] = [
    async (s) => {
      const name = `bdlog${++seq}`;
      // fd 2 of the probe: a new file on disk each run, checked and removed after it.
      const path = tmpFile(`${name}.stderr`);
      const fd = openSync(path, "w");
      let run;
      try {
        run = probe(name, {}, fd);
      } finally {
        closeSync(fd);
      }
      const n = lines(path).length;
      if (n !== run.p.sent + run.p.warm) throw new Error(`log-probe.ts (file): ${path} holds ${n} lines, expected ${run.p.sent + run.p.warm}`);
      rmSync(path, { force: true });
      const { p, procMs } = run;
      s.add("file-ms", p.ms);
      s.add("file-proc", procMs);
      s.add("file-us", (p.ms * 1000) / p.sent);
      s.add("file-lps", (p.sent / p.ms) * 1000);
    },
    async (s) => {
      s.add("bare", timed(BARE).ms);
    },
  ];
  if (rs) {
    steps.unshift(async (s) => {
      const name = `bdlog${++seq}`;
      const { p, stderr } = probe(name, { BENCH_LOG_SOCKET: rs.sock }, "pipe");
      if (stderr) throw new Error(`log-probe.ts (syslog) wrote to stderr: ${stderr}`);
      // Ours: "info daemon NAME[pid]: text" (a drop count is "warning daemon …"). "end" comes last, after any count.
      const tagOf = new RegExp(`^\\S+ daemon ${name}\\[\\d+\\]: (.*)$`);
      let got: string[] = [];
      const end = performance.now() + 20_000;
      for (;;) {
        const r = readFrom(rs.out, offset);
        got = r.text.map((l) => tagOf.exec(l)?.[1]).filter((t): t is string => t !== undefined);
        if (got.at(-1) === "end") {
          offset = r.size;
          break;
        }
        if (performance.now() > end || !alive(rs.proc.pid)) throw new Error(`rsyslogd's out.log has no "end" line from ${name} within 20 s (${got.length} of its lines so far): ${lines(rs.err).slice(-3).join(" | ")}`);
        await Bun.sleep(5);
      }
      const delivered = got.filter((t) => t.startsWith("line ")).length;
      const warm = got.filter((t) => t.startsWith("warm ")).length;
      const dropped = got.reduce((n, t) => n + Number(DROPPED.exec(t)?.[1] ?? 0), 0);
      acc.sent += p.sent + p.warm;
      acc.delivered += delivered + warm;
      acc.dropped += dropped;
      acc.unaccounted += p.sent + p.warm - (delivered + warm + dropped);
      acc.rounds++;
      if (dropped > 0) acc.roundsWithDrops++;
      s.add("syslog-ms", p.ms);
      s.add("syslog-us", (p.ms * 1000) / p.sent);
      s.add("syslog-lps", (p.sent / p.ms) * 1000);
      s.add("syslog-dlps", (delivered / p.ms) * 1000);
      s.add("syslog-share", delivered / p.sent);
    });
  }

  let s: Samples;
  try {
    s = await interleave("logging", runsOf(o), steps);
  } finally {
    if (rs) await stopChild(rs.proc);
  }

  if (rs) {
    notes.push(
      `Syslog: scripts/bench/log-probe.ts with the daemon's logger (src/log.ts createLogger(NAME, "daemon", { target: "syslog" }), then ready(), which leaves only createSyslogReporter's reporter, as in a detached daemon once ready) at a private rsyslogd's log.sock (imuxsock's local-socket parser, as /dev/log gets; test/rsyslog.ts's config: RateLimit.Interval="0", omfile to out.log, flushOnTXEnd). ${fmt(LINES)} lines as fast as the loop goes; lines/s = ${fmt(LINES)} / that loop's time. The reporter never blocks: a send that finds the socket's receive queue full (net.unix.max_dgram_qlen = ${qlen()}) gets EAGAIN and the line is dropped and counted, and the count goes out as "syslog: N lines dropped…" before the next line that gets through (at most once a second; the probe sends one last line 1.1 s after the loop so the final count arrives). "sent/s" counts every log call; "delivered/s" only the lines that arrived in out.log, over the same loop time.`,
      `Accounting over the ${acc.rounds} syslog runs (warm-up round included): ${fmt(acc.sent)} lines logged, ${fmt(acc.delivered)} in out.log (${((acc.delivered / acc.sent) * 100).toFixed(1)} %), ${fmt(acc.dropped)} reported dropped by the reporter; ${acc.unaccounted === 0 ? "every line is in out.log or in a drop count" : `**${fmt(acc.unaccounted)} lines neither arrived nor were counted**`}. ${acc.roundsWithDrops} of ${acc.rounds} runs dropped lines. Median share delivered: ${(summarize(s.get("syslog-share")).median * 100).toFixed(1)} %.`,
    );
  }
  notes.push(
    `File: the same probe with target "stderr": the daemon's fd 2 reporter, one synchronous write(2) of an ISO-timestamped line per call, fd 2 a new regular file on the run's temp dir (${fsType()}; page cache, no fsync), as a detached daemon's --log-file is its fd 2. Every run's file held all ${fmt(LINES + 100)} lines (checked).`,
    "Each probe is a fresh `bun`; 100 uncounted lines and a 50 ms pause come first. Only the timed loop is in the lines/s figures; the bare `bun -e 0` row is the run's machine reference for the loop times.",
  );

  const rates: Array<[string, string]> = [
    ["file-lps", "file: fd 2 reporter, fd 2 a file"],
    ["syslog-lps", "syslog reporter, sent (log calls)"],
    ["syslog-dlps", "syslog reporter, delivered (in out.log)"],
  ];
  return {
    id: "logging",
    title: "10. Log lines per second: syslog vs the file",
    summary: rateTable(`${fmt(LINES)} lines as fast as they go, lines per second`, s, rates, "file-lps"),
    tables: [
      table(`One log line (timed loop / ${fmt(LINES)})`, "µs", s, [
        ["file-us", "file: fd 2 reporter, fd 2 a file"],
        ["syslog-us", "syslog reporter (sent)"],
      ], "file-us"),
      table(`The ${fmt(LINES)}-line loop, and the machine reference`, "ms", s, [
        ["bare", "bare runtime start (`bun -e 0`)"],
        ["file-ms", `file: ${fmt(LINES)} lines (timed loop)`],
        ["syslog-ms", `syslog: ${fmt(LINES)} lines (timed loop)`],
        ["file-proc", "file: whole probe process, spawn to exit"],
      ], "bare"),
    ],
    derived: rs
      ? [
          { label: "syslog sent/s ÷ file lines/s", value: s.median("syslog-lps") / s.median("file-lps"), unit: "×" },
          { label: "syslog delivered/s ÷ file lines/s", value: s.median("syslog-dlps") / s.median("file-lps"), unit: "×" },
          { label: "syslog − file, per line", value: s.median("syslog-us") - s.median("file-us"), unit: "µs" },
        ]
      : [],
    notes,
  };
}

function qlen(): string {
  try {
    return readFileSync("/proc/sys/net/unix/max_dgram_qlen", "utf8").trim();
  } catch {
    return "unknown";
  }
}

/** The temp dir's filesystem type, from /proc/self/mounts (longest mount point that contains it). */
function fsType(): string {
  const dir = tmpFile("probe-fs");
  let best = { at: "", type: "unknown" };
  for (const l of readFileSync("/proc/self/mounts", "utf8").split("\n")) {
    const [, at, type] = l.split(" ");
    if (at && type && (dir === at || dir.startsWith(at.endsWith("/") ? at : `${at}/`)) && at.length > best.at.length) best = { at, type };
  }
  return best.type;
}
