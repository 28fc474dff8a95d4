/**
 * The `unit` command: a systemd service unit for this daemon, printed as a
 * careful admin would write it, from what the daemon knows about itself
 * (its executable, runtime flags, timeouts, hooks) without loading the app.
 */
import { dirname, isAbsolute, resolve } from "node:path";
import type { CliOptions } from "./argv.ts";
import { checkEnv } from "./environment.ts";
import { DaemonError } from "./errors.ts";
import { defaultPidFile } from "./paths.ts";
import { runtimeFlags } from "./runtime-flags.ts";
import type { DaemonConfig } from "./types.ts";

export interface UnitInput {
  config: DaemonConfig;
  cli: CliOptions;
  /** The app's options as given to `unit`, in long form: they go into ExecStart. */
  appArgv: readonly string[];
  /** Shutdown hooks registered without loading the app (config, daemon.on(), onShutdown() in the entry). */
  registeredShutdownHooks: number;
  /** Where warnings go (stderr); the unit itself is the return value. */
  warn(line: string): void;
}

/**
 * One ExecStart= word, as systemd.service(5) splits command lines: `%` is a
 * specifier and `$` a variable there, so both are doubled; a word with
 * blanks, quotes, backslashes or `;` is double-quoted with C escapes.
 */
export function execWord(word: string): string {
  const s = word.replace(/%/g, "%%").replace(/\$/g, "$$$$");
  if (/^[A-Za-z0-9_@%$+=:,./-]+$/.test(s)) return s;
  const escaped = s.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n").replace(/\t/g, "\\t").replace(/\r/g, "\\r");
  return `"${escaped}"`;
}

/** A value for a setting that takes free text (Description=): one line, `%` doubled. */
const text = (s: string) => s.replace(/[\r\n]+/g, " ").replace(/%/g, "%%");

const seconds = (ms: number) => Math.ceil(ms / 1000);

/**
 * One Environment= assignment: systemd expands specifiers there (`%` is
 * doubled) but not variables (`$` stays); an assignment with blanks, quotes,
 * backslashes or control characters is double-quoted with C escapes.
 */
export function envWord(name: string, value: string): string {
  const s = `${name}=${value}`.replace(/%/g, "%%");
  if (/^[A-Za-z0-9_@%$+=:,./-]+$/.test(s)) return s;
  const escaped = s.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n").replace(/\t/g, "\\t").replace(/\r/g, "\\r");
  return `"${escaped}"`;
}

/** A User=/Group= value: a name or an id as systemd accepts it, nothing to quote. */
function account(what: "user" | "group", v: string | number): string {
  const s = String(v);
  if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]*\$?$/.test(s)) throw new DaemonError("USAGE", `unit: ${what} ${JSON.stringify(s)} is not a name or id systemd's ${what === "user" ? "User" : "Group"}= takes`, { exitCode: 2 });
  return s;
}

/** The program that runs this daemon: the compiled binary, or bun + kept runtime flags + the script. */
export function programWords(): string[] {
  const exe = process.execPath;
  if (!isAbsolute(exe)) throw new DaemonError("USAGE", `unit: the executable path ${JSON.stringify(exe)} is not absolute; run unit from an installed binary or bun`);
  // A compiled binary's main module lives in its own embedded file system.
  if (Bun.main.startsWith("/$bunfs/")) return [exe];
  return [exe, ...runtimeFlags(process.execArgv), resolve(Bun.main)];
}

/** The unit text for `unit` (ends with a newline). */
export function unitText(u: UnitInput): string {
  const { config, cli } = u;
  const name = config.name;
  const type = cli.type ?? "notify";
  const forking = type === "forking";
  if (cli.logFile !== undefined && !forking) {
    throw new DaemonError("USAGE", "unit: --log-file goes with --type forking; under Type=notify the daemon runs in the foreground and the journal takes its output", { exitCode: 2 });
  }

  let hooks = u.registeredShutdownHooks;
  let hooksFrom = "registered in the entry";
  if (cli.shutdownHooks !== undefined) {
    hooks = cli.shutdownHooks;
    hooksFrom = "--shutdown-hooks";
  } else if (config.app) {
    // The app module registers its own hooks, and unit must not load it
    // (it may open databases, read secrets, bind ports at import).
    u.warn(`${name}: unit: TimeoutStopSec counts the ${hooks} shutdown hook${hooks === 1 ? "" : "s"} registered without loading the app; if the app module registers more, pass --shutdown-hooks N`);
  }
  const shutdownTimeout = config.shutdownTimeout ?? 10_000;
  // The bound the daemon itself gives its shutdown (lifecycle.ts): each hook
  // shutdownTimeout, plus one for an init hook a stop interrupts, plus 1 s to exit.
  const stopMs = shutdownTimeout * (hooks + 1) + 1000;
  const readyTimeout = cli.readyTimeout ?? config.readyTimeout ?? 30_000;

  // As the launcher resolves them (cli.ts): --user alone means that user's primary group.
  const user = cli.user ?? config.user;
  const group = cli.group ?? (cli.user === undefined ? config.group : undefined);
  if (group !== undefined && user === undefined) throw new DaemonError("USAGE", "unit: group is set without user; give user too", { exitCode: 2 });

  const argv = [...programWords(), forking ? "start" : "run"];
  const pidFile = cli.pidFile ?? config.pidFile;
  // systemd's system manager runs the daemon as root: its default PID file
  // is /run/NAME.pid, whoever prints the unit. Under User= it is
  // /run/NAME/NAME.pid, as for root dropping to a user, in a directory
  // systemd creates owned by the user (RuntimeDirectory=); always passed then,
  // since the daemon, not root, would look in $XDG_RUNTIME_DIR or /tmp.
  // With a chroot, only root can enter it: no User=, the daemon drops
  // itself after init (as under `start`), and its PID file is root's
  // default inside the root (paths.ts), which it computes alike.
  const chroot = config.chroot;
  const systemdUser = chroot === undefined ? user : undefined;
  const runtimeDir = systemdUser !== undefined && pidFile === undefined;
  const defaultPid = chroot === undefined ? (runtimeDir ? `/run/${name}/${name}.pid` : `/run/${name}.pid`) : defaultPidFile(name, user !== undefined, chroot);
  const pidPath = resolve(pidFile ?? defaultPid);
  if (forking || pidFile !== undefined || runtimeDir) argv.push("--pid-file", pidPath);
  // Given to unit only: the daemon gets it too, finds itself already that
  // user, skips the drop and verifies every thread (and sets no_new_privs).
  if (cli.user !== undefined) argv.push("--user", cli.user);
  if (cli.group !== undefined) argv.push("--group", cli.group);
  if (cli.logFile !== undefined) argv.push("--log-file", resolve(cli.logFile));
  if (cli.config !== undefined) argv.push("--config", resolve(cli.config));
  if (cli.logLevel !== undefined) argv.push("--log-level", cli.logLevel);
  if (cli.logTarget !== undefined) argv.push("--log-target", cli.logTarget);
  if (cli.logFormat !== undefined) argv.push("--log-format", cli.logFormat);
  if (cli.shutdownDelay !== undefined) argv.push("--shutdown-delay", String(cli.shutdownDelay));
  if (cli.healthPort !== undefined) argv.push("--health-port", String(cli.healthPort));
  if (cli.workers !== undefined) argv.push("--workers", String(cli.workers));
  if (forking && cli.readyTimeout !== undefined) argv.push("--ready-timeout", String(cli.readyTimeout));
  argv.push(...u.appArgv);

  const startLine = forking
    ? // start waits readyTimeout, then stops a late daemon (up to its shutdown budget) before it exits.
      readyTimeout === 0 ? "infinity" : String(seconds(readyTimeout + stopMs))
    : readyTimeout === 0 ? "infinity" : String(seconds(readyTimeout));
  const lines = [
    `# ${name}.service, printed by \`${name} unit${forking ? " --type forking" : ""}\` (bun-daemon).`,
    `# Install: save as /etc/systemd/system/${name}.service, then systemctl daemon-reload && systemctl enable --now ${name}`,
    "[Unit]",
    `Description=${text(config.description ? `${name}: ${config.description}` : name)}`,
    "After=network.target",
    "",
    "[Service]",
    ...(forking
      ? [
          "# start detaches and exits once the daemon is ready; systemd follows the pid in PIDFile=.",
          "Type=forking",
          `PIDFile=${pidPath}`,
        ]
      : [
          "# The daemon runs in the foreground and sends READY=1 once its init hooks are done.",
          "Type=notify",
          "# upgrade (SIGUSR2) starts a new process that sends MAINPID= and READY=1 before the old one exits: it is not the main pid yet.",
          "NotifyAccess=all",
          "# ctx.serve's listeners wait in systemd's fd store across a restart: connections queue instead of being refused.",
          "FileDescriptorStoreMax=16",
        ]),
    ...(chroot === undefined || user === undefined
      ? []
      : [`# chroot ${chroot}: systemd starts the daemon as root; after its init hooks it enters the root and drops to ${user} itself (under User= it could not chroot).`]),
    ...(systemdUser === undefined
      ? []
      : [
          `# systemd starts the daemon as ${user}: init hooks run unprivileged (a port below 1024: a .socket unit, listenFds()); the daemon's own drop finds it done and only verifies every thread and sets no_new_privs.`,
          `User=${account("user", systemdUser)}`,
          ...(group === undefined ? [] : [`Group=${account("group", group)}`]),
          ...(runtimeDir ? [`# ${dirname(pidPath)}/ for the PID file, created by systemd owned by ${user}, removed at stop.`, `RuntimeDirectory=${name}`] : []),
        ]),
    ...envLines(config.env),
    `ExecStart=${argv.map(execWord).join(" ")}`,
    "# SIGHUP runs the reload hooks.",
    "ExecReload=/bin/kill -HUP $MAINPID",
    `# readyTimeout ${readyTimeout} ms${forking ? `, plus the shutdown budget below for a daemon that was late` : ""}; an init hook may ask for more with ctx.extendTimeout().`,
    `TimeoutStartSec=${startLine}`,
    `# shutdownTimeout ${shutdownTimeout} ms x (${hooks} shutdown hook${hooks === 1 ? "" : "s"} ${hooksFrom} + 1 for an interrupted init hook) + 1 s to exit.`,
    `TimeoutStopSec=${seconds(stopMs)}`,
    "# SIGTERM to the daemon alone: its shutdown hooks end what it started; whatever is left gets SIGKILL.",
    "KillMode=mixed",
    "Restart=on-failure",
    "RestartSec=1",
    `SyslogIdentifier=${name}`,
    ...(config.umask === undefined ? [] : [`UMask=${config.umask.toString(8).padStart(4, "0")}`]),
    "",
    "[Install]",
    "WantedBy=multi-user.target",
  ];
  return `${lines.join("\n")}\n`;
}

/**
 * `env: { keep, set }` as systemd says it: the service gets exactly these
 * (plus what systemd sets itself), as the detached daemon would.
 */
function envLines(value: unknown): string[] {
  const env = checkEnv(value);
  if (env === "inherit") return [];
  const set = Object.entries(env.set ?? {});
  return [
    "# env: systemd's own environment is already clean (not the shell's that ran systemctl); the service gets only these, and what systemd sets (PATH, LANG, HOME/USER with User=, NOTIFY_SOCKET).",
    ...(env.keep.length === 0 ? [] : [`PassEnvironment=${env.keep.join(" ")}`]),
    ...set.map(([k, v]) => `Environment=${envWord(k, v)}`),
  ];
}
