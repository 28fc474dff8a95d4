/**
 * A consola reporter that sends each event to syslog (/dev/log) as glibc's
 * syslog(3) does: one datagram an event on a connected AF_UNIX socket. It
 * never blocks and never throws: an event the receiver cannot take is
 * dropped and counted, and the count is reported once the receiver takes
 * lines again.
 *
 * Nothing runs at import; the FFI module loads with the first socket.
 */
import { statSync } from "node:fs";
import type { ConsolaReporter, LogObject } from "consola/core";
import { DaemonError, errorText } from "./errors.ts";
import { jsonRecord, jsonText, messageText, oneLine, priorityOf, subTag, type JsonRecord, type LogFormat } from "./log.ts";

let ffiModule: typeof import("./ffi.ts") | undefined;
const ffi = (): typeof import("./ffi.ts") => (ffiModule ??= require("./ffi.ts") as typeof import("./ffi.ts"));

/** syslog facility numbers, as <syslog.h> names them (glibc's facilitynames). */
export const SYSLOG_FACILITIES = {
  kern: 0,
  user: 1,
  mail: 2,
  daemon: 3,
  auth: 4,
  syslog: 5,
  lpr: 6,
  news: 7,
  uucp: 8,
  cron: 9,
  authpriv: 10,
  ftp: 11,
  local0: 16,
  local1: 17,
  local2: 18,
  local3: 19,
  local4: 20,
  local5: 21,
  local6: 22,
  local7: 23,
} as const;

export type SyslogFacility = keyof typeof SYSLOG_FACILITIES;

export interface SyslogOptions {
  /**
   * The name every line is tagged with (`ident[pid]:`), usually the
   * daemon's name. Characters a syslog parser would split on (whitespace,
   * control characters, `[`, `]`, `:`, non-ASCII) become `_`; cut to 48
   * characters (RFC 5424's APP-NAME limit). Required.
   */
  ident: string;
  /** The facility lines are filed under. Default `"daemon"` (3). */
  facility?: SyslogFacility;
  /** The syslog socket: a path, or `@name` for the abstract namespace. Default `"/dev/log"`. */
  socket?: string;
  /**
   * The header. Default `"rfc3164"`: `<PRI>Mmm dd hh:mm:ss ident[pid]: text`,
   * what glibc's syslog(3) sends, and what both journald and rsyslog read
   * from /dev/log. `"rfc5424"`: `<PRI>1 TIMESTAMP HOSTNAME ident PID - - text`;
   * journald does not parse it, and rsyslog's imuxsock only with
   * `UseSpecialParser="off"` (its default parser for local sockets reads 3164).
   */
  format?: "rfc3164" | "rfc5424";
  /**
   * The message after the header. Default `"text"`: `[tag] message` with
   * src/log.ts oneLine()'s escapes (a line feed shown as `\n`). `"json"`:
   * the JSON object of src/log.ts jsonRecord() (time, level, name = ident
   * as given, pid, msg, err…), still after the header.
   */
  logFormat?: LogFormat;
}

/** A consola reporter with the socket it holds; `close()` lets it go. */
export interface SyslogReporter extends ConsolaReporter {
  /**
   * Close the socket (idempotent). A line logged afterwards connects again,
   * as syslog(3) after closelog(3) does.
   */
  close(): void;
}

/** rsyslog's default maxMessageSize; imuxsock reads at most this much of a datagram. */
const MAX_DATAGRAM = 8192;
const CUT_MARK = "...[truncated]";
/** How long after a failed connect the next attempt waits, unless the socket file was re-created. */
const RETRY_MS = 1000;
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

const two = (n: number) => String(n).padStart(2, "0");

/** printusascii without the characters syslog parsers split a tag on. */
function cleanName(s: string, max: number): string {
  return s.replace(/[^\x21-\x7e]|[[\]:]/g, "_").slice(0, max);
}

/** The socket file's identity (inode and ctime), so a re-created socket is noticed without connecting; "" when there is no file to watch. */
function socketFileId(path: string): string {
  if (path.startsWith("@")) return "";
  try {
    const st = statSync(path, { bigint: true, throwIfNoEntry: false });
    return st ? `${st.dev}:${st.ino}:${st.ctimeNs}` : "absent";
  } catch {
    return "unreadable";
  }
}

/**
 * errno of a send that means the receiver went away or our fd is no longer
 * its socket: reconnect. (A restarted rsyslog binds a new socket at the same
 * path; the old connection then answers ECONNREFUSED once, ENOTCONN after.)
 */
function receiverGone(e: number): boolean {
  const f = ffi();
  return e === f.ECONNREFUSED || e === f.ENOTCONN || e === f.ENOENT || e === f.EBADF || e === f.ENOTSOCK || e === f.ECONNRESET || e === f.EPIPE;
}

/**
 * Whether a datagram socket can be connected to `socket` now: false when
 * there is no such file, nobody is bound to it, it is a stream socket, or it
 * may not be written. Never throws.
 */
export function syslogAvailable(socket = "/dev/log"): boolean {
  try {
    const f = ffi();
    const fd = f.connectDatagram(socket);
    if (fd < 0) return false;
    f.closeFd(fd);
    return true;
  } catch {
    return false;
  }
}

/**
 * A consola reporter that sends each log call to syslog as one datagram,
 * one record: a multi-line message or a stack trace stays one line (text:
 * line feeds shown as `\n`; json: the object), with the severity from the
 * log type (src/log.ts priorityOf: error → err, warn → warning, info →
 * info, debug → debug…). The socket is connected here, when the reporter
 * is created, and reused.
 *
 * It never throws and never waits. A full receiver queue (EAGAIN) drops the
 * line. A receiver that went away (ECONNREFUSED, ENOTCONN, ENOENT, EBADF) is
 * reconnected at once and the line sent again; if that fails the line is
 * dropped, and the next connect is tried on a later line, at most once a
 * second, or at once when the socket file has been re-created (a restarted
 * receiver). The first line that gets through after drops is preceded by
 * `syslog: N lines dropped while the receiver was unavailable` (severity
 * warning; a JSON object in json); while the queue keeps overflowing, that
 * count goes out at most once a second, and no dropped line goes uncounted.
 *
 * Lines longer than 8 KiB (the datagram, header included: rsyslog's default
 * maxMessageSize) are cut and end in `...[truncated]`; in json the stack,
 * then msg, then the error's message are cut instead, so that the object
 * stays whole. A consola tag other than `ident` is shown as `[tag] ` before
 * the text (json: `"tag"`). Throws DaemonError USAGE for an empty ident, an
 * unknown facility, format or logFormat.
 */
export function createSyslogReporter(opts: SyslogOptions): SyslogReporter {
  const ident = cleanName(typeof opts?.ident === "string" ? opts.ident.trim() : "", 48);
  if (!ident) throw new DaemonError("USAGE", "syslog: ident must be a non-empty name (the tag of each line, e.g. the daemon's name)");
  const facilityName = opts.facility ?? "daemon";
  const facility = Object.hasOwn(SYSLOG_FACILITIES, facilityName) ? SYSLOG_FACILITIES[facilityName] : undefined;
  if (facility === undefined) {
    throw new DaemonError("USAGE", `syslog: unknown facility ${JSON.stringify(facilityName)}; use one of ${Object.keys(SYSLOG_FACILITIES).join(", ")}`);
  }
  const style = opts.format ?? "rfc3164";
  if (style !== "rfc3164" && style !== "rfc5424") throw new DaemonError("USAGE", `syslog: unknown format ${JSON.stringify(style)}; use "rfc3164" or "rfc5424"`);
  const body = opts.logFormat ?? "text";
  if (body !== "text" && body !== "json") throw new DaemonError("USAGE", `syslog: unknown logFormat ${JSON.stringify(body)}; use "text" or "json"`);
  const name = opts.ident.trim();
  const socket = opts.socket ?? "/dev/log";
  const host = style === "rfc5424" ? cleanName((require("node:os") as typeof import("node:os")).hostname(), 255) || "-" : "";

  const encoder = new TextEncoder();
  const buf = new Uint8Array(MAX_DATAGRAM);
  let fd = -1;
  let dropped = 0;
  let retryAt = 0;
  let failedFileId = "";
  // When the next "lines dropped" warning may go out: at once after a
  // (re)connect, else at most once a second, so that a receiver that keeps
  // falling behind gets one count a second, not one per line that fits.
  let warnAt = 0;

  const header = (severity: number, date: Date): string => {
    const pri = facility * 8 + severity;
    if (style === "rfc5424") return `<${pri}>1 ${date.toISOString()} ${host} ${ident} ${process.pid} - - `;
    // glibc: strftime "%h %e %T" in local time (the day padded with a space).
    const stamp = `${MONTHS[date.getMonth()]} ${String(date.getDate()).padStart(2, " ")} ${two(date.getHours())}:${two(date.getMinutes())}:${two(date.getSeconds())}`;
    return `<${pri}>${stamp} ${ident}[${process.pid}]: `;
  };

  /** Encode into the shared buffer, cut to MAX_DATAGRAM at a character boundary; the byte length. */
  const encode = (head: string, text: string): number => {
    const whole = head + text;
    const r = encoder.encodeInto(whole, buf);
    if (r.read === whole.length) return r.written;
    const mark = encoder.encode(CUT_MARK);
    const cut = encoder.encodeInto(whole, buf.subarray(0, MAX_DATAGRAM - mark.length));
    buf.set(mark, cut.written);
    return cut.written + mark.length;
  };

  /**
   * A JSON body that fits the datagram after `head`: the longest texts cut
   * (stack, msg, the error's message, in that order), each ending in the
   * mark. Removing n characters removes at least n bytes, so one cut per
   * field is enough; what still does not fit is cut by encode() (a name
   * longer than the datagram).
   */
  const fitJson = (head: string, rec: JsonRecord): string => {
    let text = jsonText(rec);
    const fields: [Record<string, unknown>, string][] = [];
    if (rec.err) fields.push([rec.err as unknown as Record<string, unknown>, "stack"]);
    fields.push([rec as unknown as Record<string, unknown>, "msg"]);
    if (rec.err) fields.push([rec.err as unknown as Record<string, unknown>, "message"]);
    for (const [holder, key] of fields) {
      const over = Buffer.byteLength(head) + Buffer.byteLength(text) - MAX_DATAGRAM;
      if (over <= 0) break;
      const s = holder[key];
      if (typeof s !== "string" || s.length <= CUT_MARK.length) continue;
      let keep = Math.max(0, s.length - over - CUT_MARK.length);
      // Not half a surrogate pair.
      if (keep > 0 && /[\ud800-\udbff]/.test(s[keep - 1]!)) keep--;
      holder[key] = s.slice(0, keep) + CUT_MARK;
      text = jsonText(rec);
    }
    return text;
  };

  /** Forget the socket; an fd that is already closed (EBADF) or reused (ENOTSOCK) is not ours to close. */
  const disconnect = (closeIt: boolean) => {
    if (fd >= 0 && closeIt) ffi().closeFd(fd);
    fd = -1;
  };

  const connect = (force: boolean): boolean => {
    if (fd >= 0) return true;
    if (!force && performance.now() < retryAt && socketFileId(socket) === failedFileId) return false;
    const r = ffi().connectDatagram(socket);
    if (r >= 0) {
      fd = r;
      warnAt = 0;
      return true;
    }
    retryAt = performance.now() + RETRY_MS;
    failedFileId = socketFileId(socket);
    return false;
  };

  /** One datagram of `len` bytes from buf: true when sent. A receiver gone away is reconnected once. */
  const transmit = (len: number): boolean => {
    const f = ffi();
    let e = f.sendDatagram(fd, buf.subarray(0, len));
    if (e === 0) return true;
    if (!receiverGone(e)) return false; // EAGAIN (queue full), ENOBUFS…: this line only
    disconnect(e !== f.EBADF && e !== f.ENOTSOCK);
    if (!connect(true)) return false;
    e = f.sendDatagram(fd, buf.subarray(0, len));
    if (e === 0) return true;
    if (receiverGone(e)) {
      disconnect(e !== f.EBADF && e !== f.ENOTSOCK);
      retryAt = performance.now() + RETRY_MS;
      failedFileId = socketFileId(socket);
    }
    return false;
  };

  /** The datagram of one event in buf: its length. */
  const render = (head: string, message: string | JsonRecord): number => encode(head, typeof message === "string" ? message : fitJson(head, message));

  const sendLine = (severity: number, date: Date, message: string | JsonRecord): void => {
    if (!connect(false)) {
      dropped++;
      return;
    }
    if (dropped > 0 && performance.now() >= warnAt) {
      const now = new Date();
      const warning = `syslog: ${dropped} lines dropped while the receiver was unavailable`;
      const len = render(header(4, now), body === "json" ? jsonRecord({ type: "warn", level: 1, tag: "", args: [warning], date: now }, name) : warning);
      if (!transmit(len)) {
        dropped++;
        return;
      }
      dropped = 0;
      warnAt = performance.now() + RETRY_MS;
    }
    if (!transmit(render(header(severity, date), message))) dropped++;
  };

  // Connected now, as openlog(LOG_NDELAY) does: a daemon that chroots or
  // drops privileges afterwards keeps the socket it had.
  try {
    connect(true);
  } catch {}

  return {
    log(obj: LogObject) {
      let message: string | JsonRecord;
      let severity = 6;
      let date = new Date();
      try {
        severity = priorityOf(obj);
        if (obj.date instanceof Date && !Number.isNaN(obj.date.getTime())) date = obj.date;
        if (body === "json") {
          message = jsonRecord(obj, name);
        } else {
          const tag = subTag(obj.tag, name);
          message = oneLine(`${tag ? `[${tag}] ` : ""}${messageText(obj.args)}`);
        }
      } catch {
        const text = "(a log line that could not be formatted)";
        message = body === "json" ? { time: new Date().toISOString(), level: "error", name, pid: process.pid, msg: text } : text;
      }
      try {
        sendLine(severity, date, message);
      } catch {
        // libc could not be loaded, or the like: logging must never fail the caller.
        dropped++;
      }
    },
    close() {
      try {
        disconnect(true);
      } catch {}
    },
  };
}
