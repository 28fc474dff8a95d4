/**
 * Loggers for hooks: consola (core build, so importing creates nothing) with
 * one reporter that writes each line synchronously to fd 2. Synchronous
 * matters: a daemon's last lines before process.exit must not be lost, and
 * fd 2 follows the log file when it is reopened.
 */
import { writeSync } from "node:fs";
import { formatWithOptions } from "node:util";
import { createConsola, LogLevels, type ConsolaInstance, type ConsolaReporter, type LogObject } from "consola/core";

export type Logger = ConsolaInstance;

function reporter(timestamps: boolean): ConsolaReporter {
  return {
    log(obj: LogObject) {
      const text = formatWithOptions({ colors: false, breakLength: Infinity }, ...obj.args);
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
 * A logger tagged with the daemon's name. Timestamps in daemon mode (the
 * log file has no other clock); none in the foreground, where a terminal or
 * journald adds its own. Level from CONSOLA_LEVEL, default info.
 */
export function createLogger(name: string, timestamps: boolean): Logger {
  const env = Number.parseInt(process.env.CONSOLA_LEVEL ?? "", 10);
  const level = Number.isNaN(env) ? LogLevels.info : env;
  return createConsola({ level, reporters: [reporter(timestamps)] }).withTag(name);
}
