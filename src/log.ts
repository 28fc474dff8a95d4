/**
 * Loggers for hooks: consola (core build, so importing creates nothing) with
 * one reporter that writes each line synchronously to fd 2. Synchronous
 * matters: a daemon's last lines before process.exit must not be lost, and
 * fd 2 follows the log file when it is reopened.
 */
import { fstatSync, writeSync } from "node:fs";
import { errorText } from "./errors.ts";
import { createConsola, LogLevels, type ConsolaInstance, type ConsolaReporter, type LogObject } from "consola/core";

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

/**
 * A logger tagged with the daemon's name. Timestamps in daemon mode (the
 * log file has no other clock); none in the foreground, where a terminal or
 * journald adds its own. When fd 2 is journald's stream (JOURNAL_STREAM),
 * lines are `<N>message`: a syslog priority, no timestamp, no tag (journald
 * records the process), no colour. Checked once: a daemon's fd 2 is never
 * the journal (it moves from the startup pipe to the log file).
 * Level from CONSOLA_LEVEL, default info.
 */
export function createLogger(name: string, timestamps: boolean): Logger {
  const env = Number.parseInt(process.env.CONSOLA_LEVEL ?? "", 10);
  const level = Number.isNaN(env) ? LogLevels.info : env;
  const journal = stderrIsJournal();
  return createConsola({ level, reporters: [reporter(timestamps && !journal, journal)] }).withTag(name);
}
