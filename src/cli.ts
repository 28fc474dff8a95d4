/**
 * The command line every daemon gets from main(): run, start (--daemon),
 * stop, status, reload, restart. Identical under `bun run` and in a
 * compiled binary; the re-executed daemon stage parses the same argv with
 * the same parser (src/argv.ts), so every process reads an option alike.
 */
import { writeSync } from "node:fs";
import { parseArgv, type CliOptions, type ParsedArgv } from "./argv.ts";
import type { DaemonInternals } from "./daemon.ts";
import { resolveOptions } from "./daemonize.ts";
import { DaemonError } from "./errors.ts";
import { isDaemonStage } from "./marker.ts";
import type { PrivilegeOptions } from "./privileges.ts";
import type { DaemonConfig, PrivilegeConfig } from "./types.ts";

function options(config: DaemonConfig, cli: CliOptions) {
  const pidFile = cli.pidFile ?? config.pidFile;
  const logFile = cli.logFile ?? config.logFile;
  return resolveOptions({
    name: config.name,
    ...(pidFile === undefined ? {} : { pidFile }),
    ...(logFile === undefined ? {} : { logFile }),
    readyTimeout: cli.readyTimeout ?? config.readyTimeout ?? 30_000,
    ...(config.umask === undefined ? {} : { umask: config.umask }),
    ...(config.cwd === undefined ? {} : { cwd: config.cwd }),
    ...privilegeConfig(config, cli),
    ...(config.env === undefined ? {} : { env: config.env }),
  });
}

/** user/group (the CLI's --user/--group override), chroot, noNewPrivileges, rlimits. */
function privilegeConfig(config: DaemonConfig, cli: CliOptions): PrivilegeConfig {
  const user = cli.user ?? config.user;
  // --user alone drops to that user's primary group, not to a group the config named for another user.
  const group = cli.group ?? (cli.user === undefined ? config.group : undefined);
  return {
    ...(user === undefined ? {} : { user }),
    ...(group === undefined ? {} : { group }),
    ...(config.chroot === undefined ? {} : { chroot: config.chroot }),
    ...(config.noNewPrivileges === undefined ? {} : { noNewPrivileges: config.noNewPrivileges }),
    ...(config.rlimits === undefined ? {} : { rlimits: config.rlimits }),
  };
}

type Resolved = ReturnType<typeof options>;

/** What the lifecycle needs to drop (the options, resolved). */
function privileges(o: Resolved): PrivilegeOptions {
  const { user, group, chroot, noNewPrivileges, rlimits, logFile } = o;
  return {
    ...(logFile === undefined ? {} : { logFile }),
    ...(user === undefined ? {} : { user }),
    ...(group === undefined ? {} : { group }),
    ...(chroot === undefined ? {} : { chroot }),
    ...(noNewPrivileges === undefined ? {} : { noNewPrivileges }),
    ...(rlimits === undefined ? {} : { rlimits }),
  };
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

/** The daemon stage: whatever the launcher's command was (start, restart, --daemon), this process is the daemon. */
async function stage(config: DaemonConfig, d: DaemonInternals, p: ParsedArgv): Promise<void> {
  const o = options(config, p.cli);
  const handle = (await import("./stage.ts")).enterStage(o, true);
  try {
    await d.run("daemon", p.app, handle.pidFile, handle, privileges(o));
  } catch (err) {
    handle.fail(err);
    throw err;
  }
}

export async function runCli(config: DaemonConfig, d: DaemonInternals, argv: string[]): Promise<void> {
  const exit = (code: number): never => process.exit(code);
  try {
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
    const o = options(config, p.cli);
    const launch = async (prepared = false): Promise<never> => {
      if (!prepared) await prepare(o);
      // Under a Type=notify unit systemd watches the process it started: a
      // fork would leave it watching a launcher that exits. Decided here, so
      // the launcher path never loads the lifecycle.
      if (process.env.NOTIFY_SOCKET) {
        (await import("./notify.ts")).holdInForeground(p.command === "run" ? "run --daemon" : p.command, o.logFile);
        return d.run("foreground", p.app, (await import("./pidfile.ts")).acquirePidFile(o.pidFile), undefined, privileges(o));
      }
      return (await import("./launch.ts")).launch(o);
    };
    const control = () => import("./control.ts");
    const stopOpts = { timeout: p.cli.timeout ?? 30, kill: p.cli.kill };
    switch (p.command) {
      case "run":
        if (p.cli.daemon) return void (await launch());
        await prepare(o);
        return void (await d.run("foreground", p.app, (await import("./pidfile.ts")).acquirePidFile(o.pidFile), undefined, privileges(o)));
      case "start":
        return void (await launch());
      case "stop":
        return exit(await (await control()).stop(config.name, o.pidFile, stopOpts));
      case "status":
        return exit(await (await control()).status(config.name, o.pidFile));
      case "reload":
        return exit(await (await control()).reload(config.name, o.pidFile, { timeout: p.cli.timeout ?? 30 }));
      case "unit": {
        // Never loads the app: its hooks' count comes from what the entry registered.
        const { unitText } = await import("./unit.ts");
        const text = unitText({ config, cli: p.cli, appArgv: p.appArgv, registeredShutdownHooks: d.count("shutdown"), warn: (line) => writeSync(2, `${line}\n`) });
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
