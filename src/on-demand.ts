/**
 * Public functions whose modules load on their first call, so that
 * `import "bun-daemon"` stays cheap: each module a program imports costs it
 * about a millisecond at start (read, transpiled, evaluated), and most
 * programs call these once, or never. Each says what its module's function says.
 */
import type * as Listen from "./listen.ts";
import type * as Notify from "./notify.ts";

/** See listenFds() in src/listen.ts: the sockets a supervisor passed (sd_listen_fds). */
export function listenFds(): Listen.ListenFd[] {
  return (require("./listen.ts") as typeof Listen).listenFds();
}

/** See notify() in src/notify.ts: one sd_notify datagram; true when it was sent. */
export function notify(fields: Record<string, string | number | bigint>): boolean {
  return (require("./notify.ts") as typeof Notify).notify(fields);
}
