/**
 * --help text: plain lines, no colour codes (they end up in pipes, logs and
 * man-page generators), built from the same tables the parser reads.
 */
import type { ArgDef, ArgsDef } from "citty";
import { BUILTINS, COMMANDS, type Command } from "./argv.ts";

const SUMMARY: Record<Command, string> = {
  run: "run in the foreground (logs to stderr); --daemon detaches like start",
  start: "detach, wait until ready, print the pid; non-zero with the daemon's error",
  stop: "SIGTERM the daemon and wait until it has exited",
  status: "state (starting, running, reloading, stopping), pid, uptime, config, last reload; exit 0 running or starting, 3 not running, 1 stale PID file, 4 cannot tell (not a PID file, unverifiable lock)",
  reload: "SIGHUP the running daemon and wait for the outcome: exit 0 reloaded, 1 failed (with the daemon's error), 7 not running",
  upgrade: "SIGUSR2: start the program as it is on disk now on the same listeners (ctx.serve); the old one drains once the new one is ready. Exit 0 upgraded (the old pid has exited), 1 failed (the old one still serves) or already in progress, 7 not running",
  restart: "stop, then start",
  check: "read and validate the config file, as nginx -t: print config OK or every problem (file:line: key: message); exit 0 or 1",
  unit: "print a systemd unit for this daemon (Type=notify; --type forking); the app's options given here go into ExecStart",
};

export interface HelpInfo {
  name: string;
  description?: string;
  version?: string;
  args?: ArgsDef;
}

function rows(list: Array<[string, string]>): string[] {
  const width = Math.min(30, Math.max(...list.map(([l]) => l.length)));
  return list.map(([l, d]) => `  ${l.padEnd(width)}  ${d}`);
}

function appRow(name: string, def: ArgDef): [string, string] {
  const d = def as { type?: string; alias?: string | string[]; description?: string; default?: unknown; options?: string[]; valueHint?: string; required?: boolean };
  if (d.type === "positional") return [`<${name}>`, `${d.description ?? ""}${d.required ? " (required)" : ""}`];
  const aliases = d.alias === undefined ? [] : Array.isArray(d.alias) ? d.alias : [d.alias];
  const flags = [...aliases.map((a) => (a.length === 1 ? `-${a}` : `--${a}`)), `--${name}`].join(", ");
  const value = d.type === "boolean" ? "" : d.type === "enum" ? ` <${(d.options ?? []).join("|")}>` : ` <${d.valueHint ?? name}>`;
  const extra = [d.required ? "required" : "", d.default !== undefined ? `default: ${String(d.default)}` : ""].filter(Boolean).join(", ");
  return [`${flags}${value}`, `${d.description ?? ""}${extra ? ` (${extra})` : ""}`];
}

/** The help for the daemon (no command) or for one command. */
export function helpText(info: HelpInfo, command?: Command): string {
  const app = Object.entries(info.args ?? {});
  const positionals = app.filter(([, d]) => (d as { type?: string }).type === "positional");
  const options = app.filter(([, d]) => (d as { type?: string }).type !== "positional");
  const launching = command === undefined || command === "run" || command === "start" || command === "restart" || command === "unit";
  const pos = launching ? positionals.map(([n]) => ` <${n}>`).join("") : "";
  const lines: string[] = [];
  if (command === undefined) {
    lines.push(`${info.name}${info.version ? ` ${info.version}` : ""}${info.description ? ` - ${info.description}` : ""}`, "");
    lines.push(`Usage: ${info.name} [command] [options]${pos}`, "", "Commands:");
    lines.push(...rows(COMMANDS.map((c) => [c, `${SUMMARY[c]}${c === "run" ? " (the default)" : ""}`])));
  } else {
    lines.push(`${info.name} ${command}: ${SUMMARY[command]}`, "", `Usage: ${info.name} ${command} [options]${pos}`);
  }
  const own = Object.entries(BUILTINS)
    .filter(([, b]) => command === undefined || b.for.includes(command))
    .map(([n, b]): [string, string] => [`${b.alias ? `-${b.alias}, ` : ""}--${n}${b.kind === "boolean" ? "" : b.hint ? ` <${b.hint}>` : b.kind === "string" ? " <path>" : b.kind === "ms" ? " <ms>" : b.kind === "count" ? " <n>" : " <seconds>"}`, `${b.description}${command === undefined && b.for.length < COMMANDS.length ? ` [${b.for.join(", ")}]` : ""}`]);
  lines.push("", "Options:", ...rows(own));
  if (launching && (options.length || positionals.length)) {
    lines.push("", `Options of ${info.name}${command === undefined ? " [run, start, restart, unit]" : ""}:`, ...rows([...positionals, ...options].map(([n, d]) => appRow(n, d))));
  }
  lines.push("", "Options go before or after the command word. Exit status 2: bad usage.");
  return `${lines.join("\n")}\n`;
}
