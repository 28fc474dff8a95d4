/**
 * Loggers for hooks: consola (core build, so importing creates nothing) with
 * one reporter that writes each event synchronously to fd 2, as one line of
 * text or JSON. Synchronous matters: a daemon's last lines before
 * process.exit must not be lost, and fd 2 follows the log file when it is
 * reopened.
 */
import { fstatSync, writeSync } from "node:fs";
import { DaemonError, errorText } from "./errors.ts";
import { createConsola, LogLevels, type ConsolaInstance, type ConsolaReporter, type LogObject } from "consola/core";
import type { LogLevel, LogTarget } from "./argv.ts";
import type { SyslogFacility } from "./syslog.ts";
import type { Mode } from "./types.ts";

export type Logger = ConsolaInstance;

/** The shapes of a log line: `text` (`[info] [name] message`, the default) or `json` (one object a line). */
export const LOG_FORMATS = ["text", "json"] as const;
/** One of LOG_FORMATS. */
export type LogFormat = (typeof LOG_FORMATS)[number];

/** Whether a value is an Error; false for a Proxy whose traps throw. */
function isError(a: unknown): a is Error {
  try {
    return a instanceof Error;
  } catch {
    return false;
  }
}

/** An error's stack (which starts with its name and message), else `Name: message`. Never throws. */
function stackOf(err: Error): string {
  try {
    const s = err.stack;
    if (typeof s === "string" && s !== "") return s;
  } catch {}
  let name = "Error";
  try {
    if (typeof err.name === "string" && err.name !== "") name = err.name;
  } catch {}
  return `${name}: ${errorText(err)}`;
}

/**
 * One argument as util.format shows it, without loading node:util: a
 * string as it is, an Error as its stack (Bun.inspect would add a source
 * excerpt), anything else through Bun.inspect on one line.
 */
function show(a: unknown): string {
  if (typeof a === "string") return a;
  if (isError(a)) return stackOf(a);
  return Bun.inspect(a, { colors: false, compact: true });
}

/** Whether the first argument is a util.format format string. */
const hasDirective = (a: unknown): a is string => typeof a === "string" && /%[sdifjoOc%]/.test(a);

/**
 * util.format's output without loading node:util (about 1.7 ms at start):
 * see show(). A format string (`%s`, `%d`…) still goes to util.format,
 * loaded then. Throws what an argument throws (a toString that throws).
 */
export function format(args: unknown[]): string {
  if (hasDirective(args[0])) {
    return (require("node:util") as typeof import("node:util")).formatWithOptions({ colors: false, breakLength: Infinity }, ...args);
  }
  return args.map(show).join(" ");
}

/**
 * The text of a log call's arguments, never throwing: format(), else each
 * argument on its own (one that cannot be shown, a Proxy that throws on
 * every trap or a toString that throws, is named, not shown). Trailing line
 * breaks are dropped: they would show as a dangling `\n`.
 */
export function messageText(args: unknown): string {
  const list = Array.isArray(args) ? args : [];
  let text: string;
  try {
    text = format(list);
  } catch {
    text = list
      .map((a) => {
        try {
          return show(a);
        } catch {
          return errorText(a);
        }
      })
      .join(" ");
  }
  return text.replace(/[\r\n]+$/, "");
}

const NAMED_ESCAPES: Record<string, string> = { "\n": "\\n", "\r": "\\r" };

/**
 * One line of text, whatever the message holds: a line feed becomes the two
 * characters `\n`, a carriage return `\r`, every other control character
 * (C0 but the tab, DEL, C1; ESC among them, so no colour escape gets
 * through) `\xHH`, and the Unicode line and paragraph separators
 * `\u2028`/`\u2029`. Backslashes stay as they are: the text format is for
 * people; `json` is the one to parse.
 */
export function oneLine(text: string): string {
  return text.replace(/[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]/g, (c) => {
    const named = NAMED_ESCAPES[c];
    if (named) return named;
    const code = c.charCodeAt(0);
    return code < 0x100 ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u${code.toString(16)}`;
  });
}

/** A consola tag without the daemon's own name: "" for the logger itself, "sub" for `.withTag("sub")`. */
export function subTag(tag: unknown, name: string): string {
  if (typeof tag !== "string" || tag === "" || tag === name) return "";
  return tag.startsWith(`${name}:`) ? tag.slice(name.length + 1) : tag;
}

/** An Error in a JSON log record. `code` only when the error has a string one (a DaemonError's, an errno name). */
export interface JsonError {
  message: string;
  stack: string;
  code?: string;
}

/** One event as the `json` format writes it. */
export interface JsonRecord {
  time: string;
  level: string;
  name: string;
  pid: number;
  tag?: string;
  msg: string;
  err?: JsonError;
}

/**
 * The JSON record of one log call: time (ISO 8601, UTC), level (consola's
 * type: info, warn, error, debug, log, success…), the daemon's name, pid,
 * the sub-tag if any, msg and, when an argument is an Error, err (the
 * first such argument). msg is then the other arguments, or the error's
 * message when there are none; with a format string (`%s`), the error's
 * message takes its place among the arguments. Never throws.
 */
export function jsonRecord(obj: LogObject, name: string): JsonRecord {
  let time: string;
  try {
    time = (obj.date instanceof Date && !Number.isNaN(obj.date.getTime()) ? obj.date : new Date()).toISOString();
  } catch {
    time = new Date().toISOString();
  }
  const level = typeof obj.type === "string" && (obj.type as string) !== "" ? obj.type : "log";
  const tag = subTag(obj.tag, name);
  const head = { time, level, name, pid: process.pid, ...(tag ? { tag } : {}) };
  const args: unknown[] = Array.isArray(obj.args) ? obj.args : [];
  const i = args.findIndex(isError);
  if (i < 0) return { ...head, msg: messageText(args) };
  const err = args[i] as Error;
  let message: string;
  try {
    message = typeof err.message === "string" ? err.message : errorText(err);
  } catch {
    message = errorText(err);
  }
  const e: JsonError = { message, stack: stackOf(err) };
  try {
    const code = (err as { code?: unknown }).code;
    if (typeof code === "string" && code !== "") e.code = code;
  } catch {}
  const rest = hasDirective(args[0]) ? args.map((a, j) => (j === i ? message : a)) : args.filter((_, j) => j !== i);
  return { ...head, msg: rest.length > 0 ? messageText(rest) : message || errorText(err), err: e };
}

/**
 * A JSON record as one line (no line feed at the end). JSON.stringify
 * escapes control characters but leaves DEL, C1 and U+2028/U+2029 raw:
 * they are escaped too, which is safe as they can only be inside strings.
 */
export function jsonText(rec: JsonRecord): string {
  return JSON.stringify(rec).replace(/[\x7f-\x9f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

/**
 * syslog priorities (sd-daemon.h's SD_ERR style `<3>` prefixes) for
 * consola's types: `journalctl -p err` shows fatal, error and fail lines.
 */
const PRIORITY: Record<string, number> = {
  fatal: 2,
  error: 3,
  fail: 3,
  warn: 4,
  log: 5,
  info: 6,
  success: 6,
  ready: 6,
  start: 6,
  box: 6,
  debug: 7,
  trace: 7,
  verbose: 7,
};

/** The `<N>` priority of a log line: by consola type, else by its numeric level. */
export function priorityOf(obj: Pick<LogObject, "type" | "level">): number {
  if (typeof obj.type === "string" && Object.hasOwn(PRIORITY, obj.type)) return PRIORITY[obj.type]!;
  const level = typeof obj.level === "number" ? obj.level : 3;
  return level <= 0 ? 3 : level === 1 ? 4 : level === 2 ? 5 : level === 3 ? 6 : 7;
}

/**
 * Whether fd 2 is the stream systemd connected to journald: JOURNAL_STREAM
 * ("<device>:<inode>", systemd.exec(5)) names fd 2 itself. Comparing the
 * inode matters: a program that redirected its stderr elsewhere, or a child
 * that merely inherited the variable, is not talking to journald on fd 2.
 */
export function stderrIsJournal(): boolean {
  const stream = process.env.JOURNAL_STREAM;
  if (!stream || !/^\d+:\d+$/.test(stream)) return false;
  try {
    const st = fstatSync(2, { bigint: true });
    return stream === `${st.dev}:${st.ino}`;
  } catch {
    return false;
  }
}

/**
 * The fd 2 reporter: one write per event, whatever the event holds. Text:
 * `[time ][type] [tag] message` with oneLine()'s escapes; journald:
 * `<N>message` (journald stamps and names each entry itself, and reads the
 * priority from the prefix). JSON: jsonText()'s line, after `<N>` under
 * journald too, so `journalctl -p err` still selects by severity while
 * MESSAGE= holds the whole object.
 */
function reporter(name: string, fmt: LogFormat, timestamps: boolean, journal: boolean): ConsolaReporter {
  return {
    log(obj: LogObject) {
      let line: string;
      try {
        const prefix = journal ? `<${priorityOf(obj)}>` : "";
        if (fmt === "json") {
          line = `${prefix}${jsonText(jsonRecord(obj, name))}\n`;
        } else if (journal) {
          line = `${prefix}${oneLine(messageText(obj.args))}\n`;
        } else {
          const when = timestamps && obj.date instanceof Date && !Number.isNaN(obj.date.getTime()) ? `${obj.date.toISOString()} ` : "";
          const tag = typeof obj.tag === "string" && obj.tag !== "" ? ` [${obj.tag}]` : "";
          line = `${when}${oneLine(`[${obj.type}]${tag} ${messageText(obj.args)}`)}\n`;
        }
      } catch {
        line = fmt === "json" ? `${JSON.stringify({ time: new Date().toISOString(), level: "error", name, pid: process.pid, msg: "(a log call that could not be formatted)" })}\n` : "[error] (a log call that could not be formatted)\n";
      }
      try {
        writeSync(2, line);
      } catch {
        // stderr closed: nowhere left to say it.
      }
    },
  };
}

/**
 * A failed write through process.stdout/stderr (a full disk under the log
 * file: ENOSPC; a closed pipe: EPIPE) is not thrown to the writer: it comes
 * back later as an 'error' event on the stream, which unhandled becomes an
 * uncaught exception and would stop the daemon. Output is never worth the
 * daemon: drop what cannot be written and say so, once per errno (console.*
 * and this logger already drop such writes by themselves).
 */
export function keepOutputErrorsHarmless(log: Logger): void {
  for (const [name, stream] of [["stdout", process.stdout], ["stderr", process.stderr]] as const) {
    let said: string | undefined;
    stream.on("error", (err: NodeJS.ErrnoException) => {
      const code = typeof err?.code === "string" ? err.code : "error";
      if (said === code) return;
      said = code;
      log.warn(`cannot write to ${name} (${code}); dropping that output`);
    });
  }
}

/** Where the logging goes and how much of it (the CLI resolves these from flags, config file and defineDaemon). */
export interface LoggingOptions {
  level?: LogLevel;
  target?: LogTarget;
  /** The daemon's log file (daemon mode: fd 2 is that file once ready). */
  logFile?: string;
  syslog?: { socket?: string; facility?: SyslogFacility };
  /**
   * The shape of each line, on fd 2 and in syslog's message: `"text"`
   * (default) or `"json"` (one object a line: time, level, name, pid, msg,
   * err with message and stack when an Error was logged, tag for a
   * sub-logger). Either way one event is one line: a multi-line message or a
   * stack is escaped, never split.
   */
  format?: LogFormat;
}

/** A daemon's logger and what the lifecycle may change about it. */
export interface DaemonLogger {
  log: Logger;
  /** Where lines go: "stderr" (fd 2: a terminal, journald, or the log file once detached), "file", "syslog", "none". */
  target: LogTarget;
  /** Why the target is not the one asked for or expected, for one debug line; undefined when it is. */
  note?: string;
  /** Detached, at ready: fd 2 (the launcher's pipe until then) stops getting a copy of the syslog lines. */
  ready(): void;
  /** A new level (a reload's log_level). */
  setLevel(level: LogLevel): void;
}

/** consola's numeric levels for ours. */
export const LEVELS: Record<LogLevel, number> = { error: 0, warn: 1, info: 3, debug: 4 };

/**
 * A logger tagged with the daemon's name, writing where `o.target` says.
 * Default: stderr in the foreground; detached, the log file when there is
 * one, else syslog when its socket answers, else fd 2 (/dev/null once
 * ready). Timestamps on fd 2 when detached (the log file has no other
 * clock); none in the foreground, where a terminal or journald adds its own.
 * When fd 2 is journald's stream (JOURNAL_STREAM), lines are `<N>message`:
 * a syslog priority, no timestamp, no tag (journald records the process), no
 * colour; with `o.format` json, `<N>` then the object. Every event is one
 * line (see LoggingOptions.format). A detached daemon logging to syslog
 * also writes to fd 2 until it is ready, so the launcher shows its startup
 * lines as before. Level: `o.level`, else CONSOLA_LEVEL, else info. Format:
 * `o.format`, else text; another value is a DaemonError USAGE.
 */
export function createLogger(name: string, mode: Mode, o: LoggingOptions = {}): DaemonLogger {
  const env = Number.parseInt(process.env.CONSOLA_LEVEL ?? "", 10);
  const level = o.level !== undefined ? LEVELS[o.level] : Number.isNaN(env) ? LogLevels.info : env;
  const fmt = o.format ?? "text";
  if (!(LOG_FORMATS as readonly string[]).includes(fmt)) {
    throw new DaemonError("USAGE", `log format must be one of ${LOG_FORMATS.join(", ")}, not ${JSON.stringify(fmt)}`, { exitCode: 2 });
  }
  const journal = stderrIsJournal();
  const fd2 = reporter(name, fmt, mode === "daemon" && !journal, journal);
  const socket = o.syslog?.socket ?? "/dev/log";
  let target: LogTarget = o.target ?? (mode === "foreground" ? "stderr" : o.logFile !== undefined ? "file" : "syslog");
  let note: string | undefined;
  let syslog: ConsolaReporter | undefined;
  if (target === "syslog") {
    // Loaded only when logging to syslog.
    const s = require("./syslog.ts") as typeof import("./syslog.ts");
    if (o.target === undefined && !s.syslogAvailable(socket)) {
      target = "stderr";
      note = `no syslog socket answers at ${socket}: log lines go to ${mode === "daemon" ? "/dev/null once ready (give --log-file)" : "stderr"}`;
    } else {
      syslog = s.createSyslogReporter({ ident: name, socket, logFormat: fmt, ...(o.syslog?.facility === undefined ? {} : { facility: o.syslog.facility }) });
    }
  }
  const reporters = target === "none" ? [] : syslog ? (mode === "daemon" ? [fd2, syslog] : [syslog]) : [fd2];
  const log = createConsola({ level, reporters }).withTag(name);
  return {
    log,
    target,
    ...(note === undefined ? {} : { note }),
    ready() {
      if (syslog && mode === "daemon") log.setReporters([syslog]);
    },
    setLevel(l) {
      log.level = LEVELS[l];
    },
  };
}
