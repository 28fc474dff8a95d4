/**
 * The systemd watchdog (sd_watchdog_enabled(3)): `WATCHDOG=1` every
 * WATCHDOG_USEC/2 from a timer on the event loop, so a blocked loop stops
 * the pings and systemd (WatchdogSec= + Restart=on-watchdog) restarts the
 * daemon. Deliberately not a thread: a ping from elsewhere would vouch for
 * a loop that no longer runs.
 */
import { errorText } from "./errors.ts";
import type { Logger } from "./log.ts";
import { send } from "./notify.ts";

export interface WatchdogOptions {
  /** Ping period in ms (WATCHDOG_USEC / 2). */
  periodMs: number;
  log: Logger;
  /** DaemonConfig.watchdog, once `checking()` says so: false or a throw skips the ping. */
  check?: () => unknown;
  /** Whether the app's check applies now (after ready); before that the loop's liveness is all there is to report. */
  checking: () => boolean;
}

/** Start pinging; returns a function that stops. */
export function startWatchdog(o: WatchdogOptions): () => void {
  /** A check still pending from an earlier tick: its hang is a failure, and no second one is started. */
  let pending = false;
  /** What the log last said, so a failing check is reported when it starts and ends, not on every tick. */
  let failing = false;
  const ok = () => {
    if (failing) o.log.info("watchdog check passes again; pinging systemd");
    failing = false;
    send("WATCHDOG=1");
  };
  const fail = (why: string) => {
    if (!failing) o.log.warn(`watchdog check ${why}; not pinging systemd until it passes`);
    failing = true;
  };
  const tick = () => {
    if (!o.check || !o.checking()) return void send("WATCHDOG=1");
    if (pending) return fail("still running since the last ping");
    let result: unknown;
    try {
      result = o.check();
    } catch (err) {
      return fail(`threw: ${errorText(err)}`);
    }
    if (result && typeof (result as PromiseLike<unknown>).then === "function") {
      pending = true;
      Promise.resolve(result).then(
        (v) => {
          pending = false;
          v === false ? fail("returned false") : ok();
        },
        (err) => {
          pending = false;
          fail(`rejected: ${errorText(err)}`);
        },
      );
      return;
    }
    result === false ? fail("returned false") : ok();
  };
  const timer = setInterval(tick, o.periodMs);
  // The lifecycle keeps the process alive; the watchdog must not be what does.
  timer.unref?.();
  return () => clearInterval(timer);
}
