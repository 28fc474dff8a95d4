/**
 * A private rsyslogd for tests: its own config, sockets and output file in
 * a temporary directory (never /dev/log, never the system's rsyslog).
 */
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { alive, track, waitFor } from "./helpers.ts";

export const RSYSLOGD = ["/usr/sbin/rsyslogd", "/sbin/rsyslogd"].find((p) => existsSync(p)) ?? Bun.which("rsyslogd") ?? undefined;
export const why = RSYSLOGD ? "" : " (skipped: rsyslogd is not installed)";

/**
 * The rsyslog configuration: two imuxsock sockets, log.sock with imuxsock's
 * default parser for local sockets (the one /dev/log gets on a stock
 * rsyslog, RFC 3164 only) and log5424.sock with the regular parser chain
 * (RFC 5424 and 3164); every message to out.log as one line of
 * "severity facility tag message". omfile flushes at the end of each batch.
 */
export function rsyslogConf(dir: string): string {
  return `global(workDirectory="${dir}" maxMessageSize="8k")
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket="${dir}/log.sock" CreatePath="on" RateLimit.Interval="0")
input(type="imuxsock" Socket="${dir}/log5424.sock" CreatePath="on" RateLimit.Interval="0" UseSpecialParser="off")
template(name="bdLine" type="string" string="%syslogseverity-text% %syslogfacility-text% %syslogtag%%msg:::sp-if-no-1st-sp%%msg:::drop-last-lf%\\n")
*.* action(type="omfile" file="${dir}/out.log" template="bdLine" flushOnTXEnd="on")
`;
}

/** A socket file's identity: a restarted rsyslogd unlinks the old file and binds a new one. */
export function fileId(path: string): string | undefined {
  try {
    const st = statSync(path, { bigint: true });
    return `${st.ino}:${st.ctimeNs}`;
  } catch {
    return undefined;
  }
}

export interface Rsyslog {
  dir: string;
  sock: string;
  sock5424: string;
  pid: number;
  /** The lines of out.log so far. */
  lines(): string[];
  /** Start another rsyslogd on the same config and sockets (after this one was stopped). */
  restart(): Promise<Rsyslog>;
}

let starts = 0;
/** Start an rsyslogd in `dir` (default: a new directory under `root`), once its sockets are bound. */
export async function rsyslog(root: string, dir = mkdtempSync(join(root, "r-"))): Promise<Rsyslog> {
  const conf = join(dir, "rsyslog.conf");
  if (!existsSync(conf)) writeFileSync(conf, rsyslogConf(dir));
  const sock = join(dir, "log.sock");
  const sock5424 = join(dir, "log5424.sock");
  const before = [fileId(sock), fileId(sock5424)];
  const n = ++starts;
  // A pid file of its own per start: one left by a killed rsyslogd would stop the next.
  const err = openSync(join(dir, `rsyslogd${n}.err`), "a");
  const p = Bun.spawn([RSYSLOGD!, "-n", "-f", conf, "-i", join(dir, `rsyslogd${n}.pid`)], { stdin: "ignore", stdout: err, stderr: err });
  closeSync(err);
  track(p.pid);
  const bound = await waitFor(() => !alive(p.pid) || [sock, sock5424].every((s, i) => fileId(s) !== undefined && fileId(s) !== before[i]), 20_000);
  if (!bound || !alive(p.pid)) throw new Error(`rsyslogd did not bind its sockets: ${readFileSync(join(dir, `rsyslogd${n}.err`), "utf8")}`);
  const out = join(dir, "out.log");
  return {
    dir,
    sock,
    sock5424,
    pid: p.pid,
    lines: () => (existsSync(out) ? readFileSync(out, "utf8").split("\n").filter(Boolean) : []),
    restart: () => rsyslog(root, dir),
  };
}

