/**
 * Loggers for hooks: consola (core build, so importing creates nothing) with
 * one reporter that writes each line synchronously to fd 2. Synchronous
 * matters: a daemon's last lines before process.exit must not be lost, and
 * fd 2 follows the log file when it is reopened.
 */
import { writeSync } from "node:fs";
import { formatWithOptions } from "node:util";
import { errorText } from "./errors.ts";
import { createConsola, LogLevels, type ConsolaInstance, type ConsolaReporter, type LogObject } from "consola/core";

export type Logger = ConsolaInstance;

function reporter(timestamps: boolean): ConsolaReporter {
  return {
    log(obj: LogObject) {
      let text: string;
      try {
        text = formatWithOptions({ colors: false, breakLength: Infinity }, ...obj.args);
      } catch {
        // An argument that cannot be shown (a Proxy that throws on every trap) must not make logging throw.
        text = obj.args.map((a) => errorText(a)).join(" ");
      }
      const tag = obj.tag ? ` [${obj.tag}]` : "";
      const when = timestamps ? `${obj.date.toISOString()} ` : "";
      const line = `${when}[${obj.type}]${tag} ${text}\n`;
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
 * journald adds its own. Level from CONSOLA_LEVEL, default info.
 */
export function createLogger(name: string, timestamps: boolean): Logger {
  const env = Number.parseInt(process.env.CONSOLA_LEVEL ?? "", 10);
  const level = Number.isNaN(env) ? LogLevels.info : env;
  return createConsola({ level, reporters: [reporter(timestamps)] }).withTag(name);
}
