/**
 * Loggers for hooks: consola (core build, so importing creates nothing) with
 * one reporter that writes each line synchronously to fd 2. Synchronous
 * matters: a daemon's last lines before process.exit must not be lost, and
 * fd 2 follows the log file when it is reopened.
 */
import { fstatSync, writeSync } from "node:fs";
import { errorText } from "./errors.ts";
import { createConsola, LogLevels, type ConsolaInstance, type ConsolaReporter, type LogObject } from "consola/core";
import type { LogLevel, LogTarget } from "./argv.ts";
import type { SyslogFacility } from "./syslog.ts";
import type { Mode } from "./types.ts";

export type Logger = ConsolaInstance;

/**
 * util.format's output without loading node:util (about 1.7 ms at start):
 * strings as they are, anything else through Bun.inspect on one line. A
 * format string (`%s`, `%d`…) still goes to util.format, loaded then.
 */
export function format(args: unknown[]): string {
  if (typeof args[0] === "string" && /%[sdifjoOc%]/.test(args[0])) {
    return (require("node:util") as typeof import("node:util")).formatWithOptions({ colors: false, breakLength: Infinity }, ...args);
  }
  return args.map((a) => (typeof a === "string" ? a : Bun.inspect(a, { colors: false, compact: true }))).join(" ");
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
  const byType = PRIORITY[obj.type];
  if (byType !== undefined) return byType;
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

function reporter(timestamps: boolean, journal: boolean): ConsolaReporter {
  return {
    log(obj: LogObject) {
      let text: string;
      try {
        text = format(obj.args);
      } catch {
        // An argument that cannot be shown (a Proxy that throws on every trap) must not make logging throw.
        text = obj.args.map((a) => errorText(a)).join(" ");
      }
      const tag = obj.tag ? ` [${obj.tag}]` : "";
      let line: string;
      if (journal) {
        // journald stamps, colours and names each entry itself; each line of
        // a multi-line message (a stack) is an entry, so each gets the prefix.
        const prefix = `<${priorityOf(obj)}>`;
        line = `${text.split("\n").map((l) => `${prefix}${l}`).join("\n")}\n`;
      } else {
        const when = timestamps ? `${obj.date.toISOString()} ` : "";
        line = `${when}[${obj.type}]${tag} ${text}\n`;
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
 * colour. A detached daemon logging to syslog also writes to fd 2 until it
 * is ready, so the launcher shows its startup lines as before. Level:
 * `o.level`, else CONSOLA_LEVEL, else info.
 */
export function createLogger(name: string, mode: Mode, o: LoggingOptions = {}): DaemonLogger {
  const env = Number.parseInt(process.env.CONSOLA_LEVEL ?? "", 10);
  const level = o.level !== undefined ? LEVELS[o.level] : Number.isNaN(env) ? LogLevels.info : env;
  const journal = stderrIsJournal();
  const fd2 = reporter(mode === "daemon" && !journal, journal);
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
      syslog = s.createSyslogReporter({ ident: name, socket, ...(o.syslog?.facility === undefined ? {} : { facility: o.syslog.facility }) });
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
