/**
 * The command line every daemon gets from main(): run, start (--daemon),
 * stop, status, reload, restart. Identical under `bun run` and in a
 * compiled binary; the re-executed daemon stage parses the same argv with
 * the same parser (src/argv.ts), so every process reads an option alike.
 */
import { writeSync } from "node:fs";
import { parseArgv, type CliOptions, type ParsedArgv } from "./argv.ts";
import type { DaemonInternals, RunExtras } from "./daemon.ts";
import { resolveOptions } from "./daemonize.ts";
import { DaemonError } from "./errors.ts";
import { isDaemonStage, RELAY_MARKER } from "./marker.ts";
import type { LibraryConfig } from "./config.ts";
import type { LoggingOptions } from "./log.ts";
import type { PidFileLock } from "./pidfile.ts";
import type { PrivilegeOptions } from "./privileges.ts";
import type { DaemonConfig, PrivilegeConfig } from "./types.ts";

/**
 * The config file's own keys (pid_file, log_file, log_level, user, group),
 * read without the app's schema: every command needs them (stop must find
 * the PID file the config names). Nothing is read without a config option.
 */
function fileKeys(config: DaemonConfig, cli: CliOptions): LibraryConfig {
  if (config.config === undefined) {
    if (cli.config !== undefined) throw new DaemonError("USAGE", `--config: ${config.name} reads no config file (its defineDaemon() has no config option)`, { exitCode: 2 });
    return {};
  }
  // Loaded only by daemons with a config option.
  const { readConfig, libraryKeys } = require("./config.ts") as typeof import("./config.ts");
  const read = readConfig(config.config, cli.config);
  return read ? libraryKeys(read) : {};
}

function options(config: DaemonConfig, cli: CliOptions) {
  const lib = fileKeys(config, cli);
  // Precedence: command line > config file > defineDaemon() > default.
  const pidFile = cli.pidFile ?? lib.pidFile ?? config.pidFile;
  const logFile = cli.logFile ?? lib.logFile ?? config.logFile;
  const logLevel = cli.logLevel ?? lib.logLevel ?? config.logLevel;
  const logTarget = cli.logTarget ?? config.logTarget;
  if (logTarget === "file" && logFile === undefined) throw new DaemonError("USAGE", "--log-target file needs a log file: give --log-file (or log_file in the config)", { exitCode: 2 });
  const resolved = resolveOptions({
    name: config.name,
    ...(pidFile === undefined ? {} : { pidFile }),
    ...(logFile === undefined ? {} : { logFile }),
    readyTimeout: cli.readyTimeout ?? config.readyTimeout ?? 30_000,
    ...(config.umask === undefined ? {} : { umask: config.umask }),
    ...(config.cwd === undefined ? {} : { cwd: config.cwd }),
    ...privilegeConfig(config, cli, lib),
    ...(config.env === undefined ? {} : { env: config.env }),
  });
  const logging: LoggingOptions = {
    ...(logLevel === undefined ? {} : { level: logLevel }),
    ...(logTarget === undefined ? {} : { target: logTarget }),
    ...(resolved.logFile === undefined ? {} : { logFile: resolved.logFile }),
    ...(config.syslog === undefined ? {} : { syslog: config.syslog }),
    ...((cli.logFormat ?? config.logFormat) === undefined ? {} : { format: (cli.logFormat ?? config.logFormat)! }),
  };
  return { ...resolved, logging, cliLogLevel: cli.logLevel !== undefined, lib };
}

/** user/group (the CLI's --user/--group override, then the config file's), chroot, noNewPrivileges, rlimits. */
function privilegeConfig(config: DaemonConfig, cli: CliOptions, lib: LibraryConfig): PrivilegeConfig {
  const user = cli.user ?? lib.user ?? config.user;
  // A user named alone drops to that user's primary group, not to a group named for another user at a lower level.
  const group = cli.group ?? (cli.user !== undefined ? undefined : lib.user !== undefined ? lib.group : (lib.group ?? config.group));
  return {
    ...(user === undefined ? {} : { user }),
    ...(group === undefined ? {} : { group }),
    ...(config.chroot === undefined ? {} : { chroot: config.chroot }),
    ...(config.noNewPrivileges === undefined ? {} : { noNewPrivileges: config.noNewPrivileges }),
    ...(config.rlimits === undefined ? {} : { rlimits: config.rlimits }),
  };
}

type Resolved = ReturnType<typeof options>;

/** What the lifecycle needs besides the hooks: the drop, the logging, the config to load. */
function extras(o: Resolved, config: DaemonConfig, cli: CliOptions): RunExtras {
  const { user, group, chroot, noNewPrivileges, rlimits, logFile } = o;
  const privileges: PrivilegeOptions = {
    ...(logFile === undefined ? {} : { logFile }),
    ...(user === undefined ? {} : { user }),
    ...(group === undefined ? {} : { group }),
    ...(chroot === undefined ? {} : { chroot }),
    ...(noNewPrivileges === undefined ? {} : { noNewPrivileges }),
    ...(rlimits === undefined ? {} : { rlimits }),
  };
  const k8s = process.env.KUBERNETES_SERVICE_HOST !== undefined && process.env.KUBERNETES_SERVICE_HOST !== "";
  const askedDelay = cli.shutdownDelay ?? config.shutdownDelay;
  const port = cli.healthPort ?? config.health?.port;
  const supervision: NonNullable<RunExtras["supervision"]> = {
    shutdownDelay: askedDelay ?? (k8s ? 5000 : 0),
    ...(port === undefined ? {} : { health: { port, ...(config.health?.host === undefined ? {} : { host: config.health.host }) } }),
  };
  const k8sNote = "KUBERNETES_SERVICE_HOST is set: a stop signal first makes the daemon not ready and keeps it serving for 5000 ms (the endpoint is being removed meanwhile); --shutdown-delay sets another";
  return {
    privileges,
    supervision,
    ...(askedDelay === undefined && k8s ? { notices: [{ level: "info" as const, text: k8sNote }] } : {}),
    logging: o.logging,
    ...(config.config === undefined ? {} : { config: { options: config.config, ...(cli.config === undefined ? {} : { explicit: cli.config }), levelFromCli: o.cliLogLevel } }),
  };
}

/**
 * The PID file of a foreground daemon. The default path on a read-only
 * root (a container's readOnlyRootFilesystem: EROFS) or a directory this
 * user may not write (EACCES) falls back to /tmp/NAME.pid, then to none,
 * with one warning: a foreground daemon's supervisor knows its pid anyway.
 * An explicit --pid-file stays fatal.
 */
function foregroundLock(name: string, o: Resolved, acquire: (path: string) => PidFileLock): { lock: PidFileLock; notice?: string } {
  const unwritable = (err: unknown) => err instanceof DaemonError && (err.errnoName === "EROFS" || err.errnoName === "EACCES");
  try {
    return { lock: acquire(o.pidFile) };
  } catch (err) {
    if (!o.pidFileIsDefault || !unwritable(err)) throw err;
    const first = `the default PID file ${o.pidFile} cannot be created (${(err as DaemonError).errnoName})`;
    const fallback = `/tmp/${name}.pid`;
    try {
      return { lock: acquire(fallback), notice: `${first}: using ${fallback}` };
    } catch (err2) {
      if (!unwritable(err2)) throw err2;
      return { lock: { path: "", fd: -1 }, notice: `${first}, nor ${fallback} (${(err2 as DaemonError).errnoName}): running without a PID file (status, stop and reload cannot find this daemon; its supervisor can)` };
    }
  }
}

/** `check`, as `nginx -t`: every problem of the config on stderr, one per line, or `config OK`; no daemon is touched. */
async function check(config: DaemonConfig, cli: CliOptions): Promise<number> {
  if (config.config === undefined) throw new DaemonError("USAGE", `check: ${config.name} reads no config file (its defineDaemon() has no config option)`, { exitCode: 2 });
  const { configProblems, formatProblem, loadConfig } = await import("./config.ts");
  try {
    const c = await loadConfig(config.config, cli.config);
    writeSync(1, `config OK${c.file === undefined ? " (no file: the defaults)" : ` (${c.file})`}\n`);
    return 0;
  } catch (err) {
    const problems = configProblems(err);
    if (!problems) throw err;
    writeSync(2, `${problems.map(formatProblem).join("\n")}\n`);
    return 1;
  }
}

/**
 * Before the PID file is locked or anything forked: an unknown user, a
 * non-root launcher asking for another user or a missing chroot fails here,
 * and the default PID file's runtime directory and the log file are made
 * the user's. Loads nothing when no user or chroot is set.
 */
async function prepare(o: Resolved): Promise<void> {
  if (o.user === undefined && o.chroot === undefined && o.group === undefined) return;
  (await import("./privileges.ts")).prepareLaunch(o);
}

function report(name: string, err: unknown): number {
  let text: string;
  let code = 1;
  try {
    if (err instanceof DaemonError) {
      text = err.message;
      code = err.exitCode;
    } else text = err instanceof Error ? err.message : String(err);
  } catch {
    text = "failed with an error that cannot be shown";
  }
  writeSync(2, `${name}: ${text}\n`);
  return code;
}

/** --workers, else DaemonConfig.workers, resolved ("auto": the CPU count); undefined without workers. */
async function workerCount(config: DaemonConfig, cli: CliOptions): Promise<{ workers: number } | {}> {
  const n = cli.workers ?? config.workers;
  if (n === undefined) return {};
  return { workers: (await import("./workers.ts")).resolveWorkers(n) };
}

/** A worker of a primary: the app's hooks, its drop and config, but none of the supervision (the primary's). */
async function workerStage(config: DaemonConfig, d: DaemonInternals, p: ParsedArgv, o: Resolved, who: import("./worker.ts").WorkerIdentity): Promise<void> {
  const { workerHandle } = await import("./worker.ts");
  const handle = workerHandle(who, { name: config.name, ...(who.mode === "daemon" && o.logFile !== undefined ? { reopen: await logReopener(o) } : {}) });
  try {
    const { supervision: _s, notices: _n, ...x } = extras(o, config, p.cli);
    await d.run(who.mode, p.app, handle.pidFile, handle, { ...x, supervision: { shutdownDelay: 0 }, worker: { id: who.id, count: who.count } });
  } catch (err) {
    handle.fail(err);
    throw err;
  }
}

/** The daemon stage: whatever the launcher's command was (start, restart, --daemon), this process is the daemon. */
async function stage(config: DaemonConfig, d: DaemonInternals, p: ParsedArgv): Promise<void> {
  const o = options(config, p.cli);
  const who = (await import("./worker.ts")).takeWorkerEnv();
  if (who) return workerStage(config, d, p, o, who);
  // Started by `upgrade` (the old daemon's SIGUSR2), or by a launcher.
  const { takeUpgradeEnv, successorHandle } = await import("./upgrade.ts");
  const up = takeUpgradeEnv();
  const handle = up
    ? successorHandle({ name: config.name, pidFile: o.pidFile, ...(up.mode === "daemon" && o.logFile !== undefined ? { reopen: await logReopener(o) } : {}) })
    : (await import("./stage.ts")).enterStage(o, true);
  try {
    const x = { ...extras(o, config, p.cli), readyTimeout: o.readyTimeout, ...(up ? { successor: { pid: up.pid } } : {}), ...(await workerCount(config, p.cli)) };
    await d.run(up?.mode === "foreground" ? "foreground" : "daemon", p.app, handle.pidFile, handle, x);
  } catch (err) {
    handle.fail(err);
    throw err;
  }
}

/** SIGUSR1 in an upgrade's new process: its output is the old one's log file; point it at a fresh one. */
async function logReopener(o: Resolved): Promise<() => boolean> {
  const [{ openLogFile }, { redirectAll }, { fdTarget }, { closeFd }, { accountOf }] = await Promise.all([
    import("./pidfile.ts"), import("./stage.ts"), import("./proc.ts"), import("./ffi.ts"), import("./environment.ts"),
  ]);
  const uid = o.user === undefined ? undefined : accountOf(o.user).uid;
  return () => {
    const fresh = openLogFile(o.logFile!, uid);
    redirectAll(fdTarget(1), fresh);
    closeFd(fresh);
    return true;
  };
}

export async function runCli(config: DaemonConfig, d: DaemonInternals, argv: string[]): Promise<void> {
  const exit = (code: number): never => process.exit(code);
  try {
    // Between an upgrading daemon and its successor (src/upgrade.ts): start it, exit.
    if (process.argv0 === RELAY_MARKER) return (await import("./upgrade.ts")).relay();
    const p = parseArgv(argv, config.args ?? {});
    if (isDaemonStage()) return await stage(config, d, p);
    if (p.cli.help) {
      writeSync(1, (await import("./help.ts")).helpText(config, p.explicit ? p.command : undefined));
      return exit(0);
    }
    if (p.cli.version) {
      writeSync(1, `${config.version ?? "unknown"}\n`);
      return exit(0);
    }
    if (p.command === "check") return exit(await check(config, p.cli));
    let o: Resolved;
    try {
      o = options(config, p.cli);
    } catch (err) {
      // LSB: status says 4 ("unknown") when it cannot tell, and an unreadable config is that.
      if (p.command === "status" && err instanceof DaemonError && err.code === "CONFIG") throw new DaemonError("CONFIG", err.message, { exitCode: 4, cause: err });
      throw err;
    }
    const foreground = async (held?: string): Promise<never> => {
      // Checked before the PID file is taken: a misconfigured supervisor is a usage error (exit 2).
      const fd = p.cli.readyFd ?? config.readyFd;
      const readyFd = fd === undefined && p.cli.readyFdEnv === undefined ? undefined : (await import("./ready-fd.ts")).openReadyFd({ ...(fd === undefined ? {} : { fd }), ...(p.cli.readyFdEnv === undefined ? {} : { env: p.cli.readyFdEnv }) });
      const { lock, notice } = foregroundLock(config.name, o, (await import("./pidfile.ts")).acquirePidFile);
      const x = extras(o, config, p.cli);
      const notices = [...(held ? [{ level: "info" as const, text: held }] : []), ...(notice ? [{ level: "warn" as const, text: notice }] : []), ...(x.notices ?? [])];
      return d.run("foreground", p.app, lock, undefined, { ...x, notices, readyTimeout: o.readyTimeout, supervision: { ...x.supervision!, ...(readyFd ? { readyFd } : {}) }, ...(await workerCount(config, p.cli)) });
    };
    const launch = async (prepared = false): Promise<never> => {
      if (!prepared) await prepare(o);
      // Under a supervisor the process it started is the one it watches: a
      // fork would leave it watching a launcher that exits (and as PID 1 the
      // exit would end the namespace). Decided here, so the launcher path
      // never loads the lifecycle.
      const { supervisor, notDetaching } = await import("./supervisor.ts");
      const sup = supervisor();
      if (sup.kind !== "none") return foreground(notDetaching(sup, p.command === "run" ? "run --daemon" : p.command, o.logFile));
      if (config.readyFd !== undefined) throw new DaemonError("USAGE", "readyFd goes with run (what a supervisor starts): start's launcher waits for readiness itself", { exitCode: 2 });
      return (await import("./launch.ts")).launch(o);
    };
    const control = () => import("./control.ts");
    const stopOpts = { timeout: p.cli.timeout ?? 30, kill: p.cli.kill };
    switch (p.command) {
      case "run":
        if (p.cli.daemon) return void (await launch());
        await prepare(o);
        return void (await foreground());
      case "start":
        return void (await launch());
      case "stop":
        return exit(await (await control()).stop(config.name, o.pidFile, stopOpts));
      case "status":
        return exit(await (await control()).status(config.name, o.pidFile, { json: p.cli.json, ready: p.cli.ready }));
      case "reload":
        return exit(await (await control()).reload(config.name, o.pidFile, { timeout: p.cli.timeout ?? 30, wait: p.cli.wait }));
      case "upgrade":
        return exit(await (await control()).upgrade(config.name, o.pidFile, { timeout: p.cli.timeout ?? 60, wait: p.cli.wait }));
      case "unit": {
        // Never loads the app: its hooks' count comes from what the entry registered.
        const { unitText } = await import("./unit.ts");
        // The config file's own keys count as the daemon's config: User= and PIDFile= must match what it will do.
        const { lib } = o;
        const seen: DaemonConfig = {
          ...config,
          ...(lib.pidFile === undefined ? {} : { pidFile: lib.pidFile }),
          ...(lib.user === undefined ? {} : { user: lib.user, group: lib.group }),
        };
        const text = unitText({ config: seen, cli: p.cli, appArgv: p.appArgv, registeredShutdownHooks: d.count("shutdown"), warn: (line) => writeSync(2, `${line}\n`) });
        writeSync(1, text);
        return exit(0);
      }
      case "restart": {
        // Checked before the old daemon is stopped: a restart that cannot start must not stop it.
        await prepare(o);
        const code = await (await control()).stop(config.name, o.pidFile, stopOpts);
        if (code !== 0) return exit(code);
        return void (await launch(true));
      }
    }
  } catch (err) {
    exit(report(config.name, err));
  }
}
