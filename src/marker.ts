/**
 * How the re-executed program knows it is the daemon: its argv[0], which no
 * child inherits and nothing puts in the environment. A module of its own
 * so that `import "bun-daemon"` can ask without loading the stage.
 */

/** argv[0] of the re-executed program. Its basename must not be "node" or "bunx". */
export const STAGE_MARKER = "bun-daemon:stage";

/** True in the process the launcher re-executed as the daemon. */
export function isDaemonStage(): boolean {
  return process.argv0 === STAGE_MARKER;
}

/** argv[0] of the short-lived process an upgrade starts its new daemon through (src/upgrade.ts). */
export const RELAY_MARKER = "bun-daemon:relay";
