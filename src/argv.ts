/**
 * The one argv parser: the launcher, the control commands and the daemon
 * stage all read the command line through parseArgv(), so an option means
 * the same thing wherever it stands (before or after the command word) and
 * in every process that reads it. Strict: unknown options, missing values,
 * extra words and loose numbers are usage errors (exit 2), never ignored.
 */
import type { ArgDef, ArgsDef } from "citty";
import { DaemonError } from "./errors.ts";

export const COMMANDS = ["run", "start", "stop", "status", "reload", "upgrade", "restart", "check", "unit"] as const;
export type Command = (typeof COMMANDS)[number];

type Kind = "string" | "boolean" | "ms" | "seconds" | "count";

interface Builtin {
  kind: Kind;
  /** Commands that accept the option. */
  for: readonly Command[];
  description: string;
  alias?: string;
  /** What --help shows for the value, when not the kind's own word. */
  hint?: string;
}

const LAUNCH: readonly Command[] = ["run", "start", "restart"];
const STOPPING: readonly Command[] = ["stop", "restart"];
/** Commands that take the app's own options: `unit` writes them into ExecStart. */
const WITH_APP: readonly Command[] = [...LAUNCH, "unit"];
/** Every command that finds a daemon through its PID file (all but check). */
const LOCATING: readonly Command[] = COMMANDS.filter((c) => c !== "check");
/** What `unit --type` accepts. */
export const UNIT_TYPES = ["notify", "forking"] as const;
/** What `--log-level` accepts, in any case (a config file may say `INFO`). */
export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
/** What `--log-target` accepts. */
export const LOG_TARGETS = ["file", "syslog", "stderr", "none"] as const;
export type LogTarget = (typeof LOG_TARGETS)[number];

/** The CLI's own options. App options may not reuse these names or aliases. */
export const BUILTINS: Record<string, Builtin> = {
  "pid-file": { kind: "string", for: LOCATING, description: "PID file path (default: /run/<name>.pid as root, else $XDG_RUNTIME_DIR/<name>.pid, else /tmp/<name>-<uid>.pid)" },
  "log-file": { kind: "string", for: WITH_APP, description: "daemon mode: append stdout/stderr here, reopened on SIGUSR1 (default: /dev/null)" },
  "ready-timeout": { kind: "ms", for: WITH_APP, description: "ms start waits for readiness before stopping the daemon; 0 waits for ever (default 30000)" },
  // Every command: with --user the default PID file moves to /run/<name>/, so stop/status/reload need it to find it.
  // unit: User=/Group= and the same option in ExecStart, so the daemon verifies what systemd made it.
  user: { kind: "string", for: LOCATING, hint: "name|uid", description: "after init, drop to this user (its groups, then its gid, then its uid, on every thread); unit: User= (systemd starts the daemon as that user); for the other commands: where the default PID file is" },
  group: { kind: "string", for: WITH_APP, hint: "name|gid", description: "with --user: the group to drop to (default: the user's primary group); unit: Group=" },
  // Every command: the file may set pid_file (and log_file, log_level, user, group), which all of them need.
  config: { kind: "string", for: COMMANDS, hint: "path", description: "the config file (default: the daemon's config.file); its pid_file, log_file, log_level, user and group apply unless an option overrides them" },
  "log-level": { kind: "string", for: WITH_APP, hint: LOG_LEVELS.join("|"), description: "log lines of this severity and above, any case (default: the config's log_level, else info)" },
  "log-target": { kind: "string", for: WITH_APP, hint: LOG_TARGETS.join("|"), description: "where log lines go (default: stderr in the foreground; detached: the log file if given, else syslog, else nowhere)" },
  "log-format": { kind: "string", for: WITH_APP, hint: "text|json", description: "one line per event: text, or a JSON object (time, level, name, pid, msg, err) (default text)" },
  "shutdown-delay": { kind: "ms", for: WITH_APP, description: "ms between a stop signal and the shutdown hooks: not ready, still serving (default 0; 5000 under Kubernetes)" },
  "health-port": { kind: "string", for: WITH_APP, hint: "port", description: "serve GET /livez and GET /readyz on this port, for HTTP probes" },
  workers: { kind: "string", for: WITH_APP, hint: "N|auto", description: "run N worker processes on the ctx.serve listeners under a primary that loads no app; auto: one per CPU (default: none, one process)" },
  // run only: start's launcher waits for readiness itself.
  "ready-fd": { kind: "string", for: ["run"], hint: "N", description: "write a newline to fd N once ready, then close it (s6 notification-fd, dinit pipefd, OpenRC notify=fd)" },
  "ready-fd-env": { kind: "string", for: ["run"], hint: "VAR", description: "as --ready-fd, the fd number in $VAR (dinit pipevar), which is then removed from the environment" },
  daemon: { kind: "boolean", for: ["run"], description: "detach, as the start command does" },
  timeout: { kind: "seconds", for: [...STOPPING, "reload", "upgrade"], description: "stop: seconds to wait for the daemon to exit; reload: for the reload's outcome; upgrade: for the new process to be ready and the old one to exit (default 30; upgrade 60)" },
  "no-wait": { kind: "boolean", for: ["reload", "upgrade"], description: "reload: send SIGHUP and exit, without waiting for the outcome; upgrade: exit once the new process is ready, without waiting for the old one to drain" },
  json: { kind: "boolean", for: ["status"], description: "status: one JSON object on stdout, for scripts" },
  ready: { kind: "boolean", for: ["status"], description: "status: exit 0 only while the daemon is running (not starting or stopping): a readiness probe" },
  kill: { kind: "boolean", for: STOPPING, description: "SIGKILL the daemon if it is still alive at the timeout" },
  type: { kind: "string", for: ["unit"], hint: UNIT_TYPES.join("|"), description: "unit: Type=notify (ExecStart=... run) or Type=forking (PIDFile=, ExecStart=... start) (default notify)" },
  "shutdown-hooks": { kind: "count", for: ["unit"], description: "unit: shutdown hooks the app registers, for TimeoutStopSec (default: those registered without loading the app)" },
  help: { kind: "boolean", for: COMMANDS, alias: "h", description: "show this help" },
  version: { kind: "boolean", for: COMMANDS, alias: "v", description: "print the version" },
};

/** Largest accepted --ready-timeout, in ms: what a timer can wait (24.8 days). */
export const MAX_MS = 2 ** 31 - 1;
/** Largest accepted --timeout, in seconds (the same bound). */
export const MAX_SECONDS = Math.floor(MAX_MS / 1000);

/** What the CLI's own options say; absent when not given. */
export interface CliOptions {
  pidFile?: string;
  logFile?: string;
  readyTimeout?: number;
  /** run/start/restart: the user to drop to after init. */
  user?: string;
  /** run/start/restart: the group to drop to. */
  group?: string;
  daemon: boolean;
  /** stop/restart: seconds. */
  timeout?: number;
  kill: boolean;
  /** The config file, when given. */
  config?: string;
  logLevel?: LogLevel;
  logTarget?: LogTarget;
  logFormat?: "text" | "json";
  shutdownDelay?: number;
  healthPort?: number;
  /** --workers: a count, or "auto". */
  workers?: number | "auto";
  readyFd?: number;
  readyFdEnv?: string;
  /** reload: wait for the outcome (false with --no-wait). */
  wait: boolean;
  /** status --json. */
  json: boolean;
  /** status --ready. */
  ready: boolean;
  /** unit: the Type= to write. */
  type?: (typeof UNIT_TYPES)[number];
  /** unit: how many shutdown hooks to budget TimeoutStopSec for. */
  shutdownHooks?: number;
  help: boolean;
  version: boolean;
}

export interface ParsedArgv {
  /** The command word, or "run" when none was given. */
  command: Command;
  /** Whether the command word was written (`--help` shows the command's help only then). */
  explicit: boolean;
  cli: CliOptions;
  /** The app's own options (kebab-case and camelCase keys, as citty gives them) and `_`, its positionals. */
  app: Record<string, unknown> & { _: string[] };
  /**
   * The app's options and positionals as given, in long form (`-p 8080`
   * becomes `--port 8080`), without defaults: what `unit` puts in ExecStart.
   */
  appArgv: string[];
}

const usage = (message: string) => new DaemonError("USAGE", message, { exitCode: 2 });

const camel = (s: string) => s.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());

const aliasesOf = (def: ArgDef): string[] => {
  const a = (def as { alias?: string | string[] }).alias;
  return a === undefined ? [] : Array.isArray(a) ? a : [a];
};

const NAME_RE = /^[A-Za-z][A-Za-z0-9_-]*$/;

/**
 * Check an app's `args` against the CLI's own names, once, in defineDaemon():
 * a collision would make one of the two unreachable (an app `-h` alias would
 * print help; an app `timeout` would be set by `restart --timeout`).
 */
export function checkAppArgs(args: ArgsDef | undefined): void {
  if (args === undefined) return;
  if (typeof args !== "object" || args === null) throw new DaemonError("USAGE", "defineDaemon: args must be an object of citty argument definitions");
  const taken = new Map<string, string>();
  for (const [name, b] of Object.entries(BUILTINS)) {
    taken.set(name, `the CLI's own --${name}`);
    taken.set(camel(name), `the CLI's own --${name}`);
    if (b.alias) taken.set(b.alias, `the CLI's own -${b.alias} (--${name})`);
  }
  for (const c of COMMANDS) taken.set(c, `the command "${c}"`);
  taken.set("_", "the positionals list");
  for (const [name, def] of Object.entries(args)) {
    const type = (def as { type?: string }).type ?? "string";
    if (!["string", "boolean", "enum", "positional"].includes(type)) {
      throw new DaemonError("USAGE", `defineDaemon: app argument "${name}" has type "${type}"; use string, boolean, enum or positional`);
    }
    if (!NAME_RE.test(name)) throw new DaemonError("USAGE", `defineDaemon: app argument name ${JSON.stringify(name)} must start with a letter and use letters, digits, '-' or '_'`);
    const names = [...new Set(type === "positional" ? [name, camel(name)] : [name, camel(name), ...aliasesOf(def)])];
    for (const n of names) {
      if (!/^[A-Za-z0-9][A-Za-z0-9_-]*$/.test(n)) throw new DaemonError("USAGE", `defineDaemon: app argument "${name}" has an unusable alias ${JSON.stringify(n)}`);
      const clash = taken.get(n) ?? (n.startsWith("no-") || /^no[A-Z]/.test(n) ? "the --no-<flag> negation" : undefined);
      if (clash) throw new DaemonError("USAGE", `defineDaemon: app argument "${name}"${n === name ? "" : ` (as "${n}")`} collides with ${clash}; rename it`);
      taken.set(n, `app argument "${name}"`);
    }
  }
}

interface Spec {
  /** Long name as written after "--". */
  name: string;
  kind: Kind | "enum";
  builtin?: Builtin;
  app?: ArgDef;
}

/** Largest accepted count (--shutdown-hooks). */
const MAX_COUNT = 10_000;

function number(raw: string, flag: string, kind: "ms" | "seconds" | "count"): number {
  // Decimal digits only: no hex, exponents, signs, blanks or Infinity.
  const re = kind === "seconds" ? /^\d+(\.\d{1,3})?$/ : /^\d+$/;
  const max = kind === "ms" ? MAX_MS : kind === "count" ? MAX_COUNT : MAX_SECONDS;
  const n = Number(raw);
  if (!re.test(raw) || !(n <= max)) {
    const what = kind === "ms" ? "a whole number of milliseconds" : kind === "count" ? "a whole number" : "a number of seconds (digits, up to 3 decimals)";
    throw usage(`${flag} takes ${what} from 0 to ${max}, not ${JSON.stringify(raw)}`);
  }
  return n;
}

/** Most workers one primary starts. */
export const MAX_WORKERS = 1024;

/** --workers / DaemonConfig.workers: a whole number from 1 to MAX_WORKERS, or "auto" (one per CPU); throws USAGE naming `what`. */
export function workerCount(raw: unknown, what: string): number | "auto" {
  if (raw === "auto") return "auto";
  const n = typeof raw === "number" ? raw : typeof raw === "string" && /^\d+$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isInteger(n) || n < 1 || n > MAX_WORKERS) throw usage(`${what} takes a number of workers from 1 to ${MAX_WORKERS}, or auto (one per CPU), not ${JSON.stringify(raw)}`);
  return n;
}

/** A log level in any case (`INFO` as a config file may write it); throws USAGE naming `what`. */
export function logLevel(raw: string, what: string): LogLevel {
  const v = raw.toLowerCase();
  if (!(LOG_LEVELS as readonly string[]).includes(v)) throw usage(`${what} takes one of ${LOG_LEVELS.join(", ")} (any case), not ${JSON.stringify(raw)}`);
  return v as LogLevel;
}

/**
 * Parse a daemon's command line. Throws DaemonError USAGE (exit code 2)
 * with one line saying what is wrong.
 */
export function parseArgv(argv: readonly string[], appArgs: ArgsDef = {}): ParsedArgv {
  const long = new Map<string, Spec>();
  const short = new Map<string, Spec>();
  for (const [name, b] of Object.entries(BUILTINS)) {
    const s: Spec = { name, kind: b.kind, builtin: b };
    long.set(name, s);
    if (b.alias) short.set(b.alias, s);
  }
  const positionals: Array<[string, ArgDef]> = [];
  for (const [name, def] of Object.entries(appArgs)) {
    const type = (def as { type?: string }).type ?? "string";
    if (type === "positional") {
      positionals.push([name, def]);
      continue;
    }
    const s: Spec = { name, kind: type === "boolean" ? "boolean" : type === "enum" ? "enum" : "string", app: def };
    long.set(name, s);
    for (const a of aliasesOf(def)) (a.length === 1 ? short : long).set(a, s);
  }

  let command: Command | undefined;
  const given = new Map<Spec, { value: string | boolean; as: string }>();
  const words: string[] = [];
  let onlyWords = false;

  for (let i = 0; i < argv.length; i++) {
    const tok = argv[i]!;
    if (onlyWords || tok === "-" || !tok.startsWith("-") || /^-\d/.test(tok)) {
      if (command === undefined && !onlyWords && (COMMANDS as readonly string[]).includes(tok)) command = tok as Command;
      else if (command === undefined && positionals.length === 0) {
        throw usage(`unknown command ${JSON.stringify(tok)}; commands: ${COMMANDS.join(", ")}. Run with --help for usage`);
      } else words.push(tok);
      continue;
    }
    if (tok === "--") {
      onlyWords = true;
      continue;
    }
    const isLong = tok.startsWith("--");
    const eq = tok.indexOf("=");
    const key = tok.slice(isLong ? 2 : 1, eq < 0 ? undefined : eq);
    const inline = eq < 0 ? undefined : tok.slice(eq + 1);
    let spec = (isLong ? long : short).get(key);
    let negated = false;
    if (!spec && isLong && key.startsWith("no-")) {
      const base = long.get(key.slice(3));
      if (base?.kind === "boolean" && base.app) {
        spec = base;
        negated = true;
      }
    }
    if (!spec) throw usage(`unknown option ${isLong ? "--" : "-"}${key}. Run with --help for usage`);
    if (given.has(spec)) throw usage(`${tok.split("=")[0]} is given twice; give it once`);
    if (spec.kind === "boolean") {
      if (inline !== undefined) throw usage(`${tok.slice(0, eq)} takes no value (got ${JSON.stringify(inline)})`);
      given.set(spec, { value: !negated, as: tok });
      continue;
    }
    let value = inline;
    if (value === undefined) {
      const next = argv[i + 1];
      // A following option is not a value: `--pid-file --kill` is a missing value, not a file named "--kill".
      if (next === undefined || (next.startsWith("-") && next !== "-" && !/^-\d/.test(next))) {
        throw usage(`${tok} needs a value`);
      }
      value = next;
      i++;
    }
    const flag = isLong ? `--${spec.name}` : tok.split("=")[0]!;
    if (value === "") throw usage(`${flag} needs a non-empty value`);
    given.set(spec, { value, as: flag });
  }

  const cmd = command ?? "run";
  const cli: CliOptions = { daemon: false, kill: false, help: false, version: false, wait: true, json: false, ready: false };
  const app: Record<string, unknown> & { _: string[] } = { _: [] };
  const launching = (WITH_APP as readonly string[]).includes(cmd);
  const appArgv: string[] = [];
  const helpOrVersion = [...given.keys()].some((s) => s.name === "help" || s.name === "version");

  for (const [spec, { value, as }] of given) {
    if (spec.builtin) {
      if (!spec.builtin.for.includes(cmd)) {
        throw usage(`${as.split("=")[0]} is not an option of ${command ? `"${cmd}"` : "run (no command given)"}; it goes with ${spec.builtin.for.join(", ")}`);
      }
      const v = value as string;
      switch (spec.name) {
        case "pid-file": cli.pidFile = v; break;
        case "log-file": cli.logFile = v; break;
        case "user": cli.user = v; break;
        case "group": cli.group = v; break;
        case "ready-timeout": cli.readyTimeout = number(v, "--ready-timeout", "ms"); break;
        case "timeout": cli.timeout = number(v, "--timeout", "seconds"); break;
        case "daemon": cli.daemon = value as boolean; break;
        case "kill": cli.kill = value as boolean; break;
        case "help": cli.help = true; break;
        case "version": cli.version = true; break;
        case "type":
          if (!(UNIT_TYPES as readonly string[]).includes(v)) throw usage(`--type takes one of ${UNIT_TYPES.join(", ")}, not ${JSON.stringify(v)}`);
          cli.type = v as CliOptions["type"];
          break;
        case "shutdown-hooks": cli.shutdownHooks = number(v, "--shutdown-hooks", "count"); break;
        case "config": cli.config = v; break;
        case "log-level": cli.logLevel = logLevel(v, "--log-level"); break;
        case "log-target":
          if (!(LOG_TARGETS as readonly string[]).includes(v)) throw usage(`--log-target takes one of ${LOG_TARGETS.join(", ")}, not ${JSON.stringify(v)}`);
          cli.logTarget = v as LogTarget;
          break;
        case "no-wait": cli.wait = !(value as boolean); break;
        case "log-format":
          if (v !== "text" && v !== "json") throw usage(`--log-format takes text or json, not ${JSON.stringify(v)}`);
          cli.logFormat = v;
          break;
        case "shutdown-delay": cli.shutdownDelay = number(v, "--shutdown-delay", "ms"); break;
        case "health-port": {
          const port = Number(v);
          if (!/^\d{1,5}$/.test(v) || port < 1 || port > 65535) throw usage(`--health-port takes a TCP port from 1 to 65535, not ${JSON.stringify(v)}`);
          cli.healthPort = port;
          break;
        }
        case "workers": cli.workers = workerCount(v, "--workers"); break;
        case "ready-fd":
          if (!/^\d{1,9}$/.test(v)) throw usage(`--ready-fd takes an fd number, not ${JSON.stringify(v)}`);
          cli.readyFd = Number(v);
          break;
        case "ready-fd-env":
          if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(v)) throw usage(`--ready-fd-env takes a variable name, not ${JSON.stringify(v)}`);
          cli.readyFdEnv = v;
          break;
        case "json": cli.json = value as boolean; break;
        case "ready": cli.ready = value as boolean; break;
      }
      continue;
    }
    if (!launching) {
      const own = Object.entries(BUILTINS).filter(([n, b]) => b.for.includes(cmd) && n !== "help" && n !== "version").map(([n]) => `--${n}`);
      throw usage(`${as.split("=")[0]} is an option of the daemon; "${cmd}" takes only ${own.join(", ")}`);
    }
    const def = spec.app!;
    if (spec.kind === "enum") {
      const options = ((def as { options?: string[] }).options ?? []).map(String);
      if (!options.includes(value as string)) throw usage(`--${spec.name} takes one of ${options.join(", ")}, not ${JSON.stringify(value)}`);
    }
    app[spec.name] = value;
    if (typeof value === "boolean") appArgv.push(value ? `--${spec.name}` : `--no-${spec.name}`);
    else if (value.startsWith("-")) appArgv.push(`--${spec.name}=${value}`);
    else appArgv.push(`--${spec.name}`, value);
  }

  if (!launching && words.length > 0) throw usage(`"${cmd}" takes no arguments (got ${JSON.stringify(words[0])})`);
  if (launching) {
    if (words.length > positionals.length) {
      throw usage(`unexpected argument ${JSON.stringify(words[positionals.length])}${positionals.length ? "" : ` after "${cmd}"`}. Run with --help for usage`);
    }
    app._ = words;
    if (words.some((w) => w.startsWith("-"))) appArgv.push("--");
    appArgv.push(...words);
    positionals.forEach(([name, def], i) => {
      if (words[i] !== undefined) app[name] = words[i];
      else if (def.default !== undefined) app[name] = def.default;
    });
    for (const [name, def] of Object.entries(appArgs)) {
      if (app[name] === undefined && def.default !== undefined) app[name] = def.default;
      if (app[name] === undefined && (def as { required?: boolean }).required && !helpOrVersion) {
        throw usage(`${(def as { type?: string }).type === "positional" ? `<${name}>` : `--${name}`} is required`);
      }
      if (app[name] !== undefined && camel(name) !== name) app[camel(name)] = app[name];
    }
  }
  return { command: cmd, explicit: command !== undefined, cli, app, appArgv };
}
