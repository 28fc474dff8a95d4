/**
 * bun-daemon: real Unix daemons for Bun. Importing this module does nothing
 * by itself: libc is opened, signals are handled and files are touched only
 * when a daemon's main() or daemonize() is called.
 */
export { defineDaemon, type Daemon } from "./daemon.ts";
export { onInit, onReady, onReload, onShutdown } from "./hooks.ts";
export { daemonize, type DaemonizeOptions, type DaemonHandle } from "./daemonize.ts";
export { DaemonError, type DaemonErrorCode } from "./errors.ts";
export { defaultPidFile } from "./paths.ts";
export { listenFds, notify } from "./on-demand.ts";
export type { ListenFd } from "./listen.ts";
export type { ArgsOf, DaemonArgs, DaemonConfig, Hook, HookContext, HookName, Mode, ShutdownContext, ShutdownHook } from "./types.ts";
export type { Logger } from "./log.ts";
export type { EnvOption } from "./environment.ts";
export type { PrivilegeConfig, RlimitOptions } from "./types.ts";
