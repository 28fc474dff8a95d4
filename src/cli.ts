/**
 * The command line every daemon gets from main(): run, start (--daemon),
 * stop, status, reload, restart. Identical under `bun run` and in a
 * compiled binary; the re-executed daemon stage parses the same argv.
 */
import { writeSync } from "node:fs";
import { defineCommand, parseArgs, runCommand, showUsage, type ArgsDef, type CommandDef } from "citty";
import type { DaemonInternals } from "./daemon.ts";
import { resolveOptions } from "./daemonize.ts";
import { DaemonError } from "./errors.ts";
import { acquirePidFile } from "./pidfile.ts";
import { enterStage, isDaemonStage } from "./stage.ts";
import type { DaemonConfig } from "./types.ts";

const common = {
  "pid-file": { type: "string", description: "PID file path (default: /run/<name>.pid as root, else $XDG_RUNTIME_DIR or /tmp)" },
  "log-file": { type: "string", description: "daemon mode: append stdout/stderr here (reopened on SIGUSR1); default /dev/null" },
  "ready-timeout": { type: "string", description: "ms start waits for readiness before killing the daemon; 0 waits for ever (default 30000)" },
} as const satisfies ArgsDef;

const stopArgs = {
  timeout: { type: "string", description: "seconds to wait for the daemon to exit (default 30)" },
  kill: { type: "boolean", description: "SIGKILL the daemon if it is still alive at the timeout" },
} as const satisfies ArgsDef;

type Exit = (code: number) => never;

function number(value: unknown, flag: string, fallback: number): number {
  if (value === undefined || value === "") return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0) throw new DaemonError("USAGE", `${flag} takes a non-negative number, not ${JSON.stringify(value)}`, { exitCode: 2 });
  return n;
}

function options(config: DaemonConfig, args: Record<string, unknown>) {
  return resolveOptions({
    name: config.name,
    ...((args["pid-file"] ?? config.pidFile) === undefined ? {} : { pidFile: String(args["pid-file"] ?? config.pidFile) }),
    ...((args["log-file"] ?? config.logFile) === undefined ? {} : { logFile: String(args["log-file"] ?? config.logFile) }),
    readyTimeout: number(args["ready-timeout"], "--ready-timeout", config.readyTimeout ?? 30_000),
    ...(config.umask === undefined ? {} : { umask: config.umask }),
    ...(config.cwd === undefined ? {} : { cwd: config.cwd }),
  });
}

function buildCommands(config: DaemonConfig, d: DaemonInternals, exit: Exit): CommandDef<any> {
  const appArgs = (config.args ?? {}) as ArgsDef;
  const runArgs = { ...common, ...appArgs, daemon: { type: "boolean", description: "detach (same as the start command)" } } as ArgsDef;
  const startArgs = { ...common, ...appArgs } as ArgsDef;
  const pidArgs = { "pid-file": common["pid-file"] } as ArgsDef;

  const foreground = async (args: Record<string, unknown>) => {
    const o = options(config, args);
    const lock = acquirePidFile(o.pidFile);
    await d.run("foreground", args, lock);
  };
  const start = async (args: Record<string, unknown>): Promise<never> => (await import("./launch.ts")).launch(options(config, args));
  const control = () => import("./control.ts");

  return defineCommand({
    meta: { name: config.name, ...(config.description ? { description: config.description } : {}), ...(config.version ? { version: config.version } : {}) },
    args: runArgs,
    default: "run",
    subCommands: {
      run: defineCommand({
        meta: { name: "run", description: "run in the foreground (logs to stderr); --daemon detaches like start" },
        args: runArgs,
        run: ({ args }) => (args.daemon ? start(args) : foreground(args)),
      }),
      start: defineCommand({
        meta: { name: "start", description: "detach, wait until ready, print the pid; non-zero with the daemon's error" },
        args: startArgs,
        run: ({ args }) => start(args),
      }),
      stop: defineCommand({
        meta: { name: "stop", description: "SIGTERM the daemon and wait until it has exited" },
        args: { ...pidArgs, ...stopArgs },
        run: async ({ args }) =>
          exit(await (await control()).stop(config.name, options(config, args).pidFile, { timeout: number(args.timeout, "--timeout", 30), kill: Boolean(args.kill) })),
      }),
      status: defineCommand({
        meta: { name: "status", description: "pid and uptime; exit 0 running, 3 not running, 1 stale PID file" },
        args: pidArgs,
        run: async ({ args }) => exit(await (await control()).status(config.name, options(config, args).pidFile)),
      }),
      reload: defineCommand({
        meta: { name: "reload", description: "SIGHUP the running daemon; exit 7 if it is not running" },
        args: pidArgs,
        run: async ({ args }) => exit(await (await control()).reload(config.name, options(config, args).pidFile)),
      }),
      restart: defineCommand({
        meta: { name: "restart", description: "stop, then start" },
        args: { ...startArgs, ...stopArgs },
        run: async ({ args }) => {
          const code = await (await control()).stop(config.name, options(config, args).pidFile, { timeout: number(args.timeout, "--timeout", 30), kill: Boolean(args.kill) });
          if (code !== 0) exit(code);
          await start(args);
        },
      }),
    },
  });
}

const COMMANDS = new Set(["run", "start", "stop", "status", "reload", "restart"]);

/** Index of the command word in argv (first non-flag), or -1. */
function commandIndex(argv: string[], valueFlags: Set<string>): number {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--") return -1;
    if (a.startsWith("-")) {
      if (!a.includes("=") && valueFlags.has(a.replace(/^-+/, ""))) i++;
      continue;
    }
    return i;
  }
  return -1;
}

function report(name: string, err: unknown): number {
  if (err instanceof DaemonError) {
    writeSync(2, `${name}: ${err.message}\n`);
    return err.exitCode;
  }
  const e = err as { name?: string; code?: string; message?: string };
  if (e?.name === "CLIError") {
    writeSync(2, `${name}: ${e.message}\nRun with --help for usage.\n`);
    return 2;
  }
  writeSync(2, `${name}: ${e?.message ?? String(err)}\n`);
  return 1;
}

export async function runCli(config: DaemonConfig, d: DaemonInternals, argv: string[]): Promise<void> {
  const exit: Exit = (code) => process.exit(code);
  try {
    const cmd = buildCommands(config, d, exit);
    const runArgs = cmd.args as ArgsDef;
    const valueFlags = new Set(Object.entries(runArgs).filter(([, v]) => v.type === "string" || v.type === "enum").map(([k]) => k));
    const ci = commandIndex(argv, valueFlags);
    const word = ci >= 0 ? argv[ci]! : undefined;
    if (word !== undefined && !COMMANDS.has(word)) {
      throw new DaemonError("USAGE", `unknown command "${word}"; commands: ${[...COMMANDS].join(", ")}. Run with --help for usage.`, { exitCode: 2 });
    }
    if (isDaemonStage()) {
      // The re-executed program: whatever the launcher's command was
      // (start, restart, --daemon), this process is the daemon.
      const rest = ci >= 0 ? [...argv.slice(0, ci), ...argv.slice(ci + 1)] : argv;
      const args = parseArgs(rest, { ...runArgs }) as Record<string, unknown>;
      const o = options(config, args);
      const stage = enterStage(o, true);
      try {
        await d.run("daemon", args, stage.pidFile, stage);
      } catch (err) {
        stage.fail(err);
        throw err;
      }
      return;
    }
    if (argv.includes("--help") || argv.includes("-h")) {
      const subs = cmd.subCommands as Record<string, CommandDef<any>>;
      await (word ? showUsage(subs[word]!, cmd) : showUsage(cmd));
      exit(0);
    }
    if (argv.length === 1 && (argv[0] === "--version" || argv[0] === "-v")) {
      writeSync(1, `${config.version ?? "unknown"}\n`);
      exit(0);
    }
    await runCommand(cmd, { rawArgs: argv });
  } catch (err) {
    exit(report(config.name, err));
  }
}
