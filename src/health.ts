/**
 * The health listener (`health: { port, host }`, `--health-port`): for
 * HTTP probes, GET /livez is 200 until the process exits, GET /readyz 200
 * exactly when `status --ready` would exit 0 (running or reloading, not
 * starting, not from the first stop signal on), else 503.
 *
 * It is served as ctx.serve serves (src/serve.ts), on the daemon's listener
 * named "health": taken from an upgrade's handover, socket activation or the
 * fd store, else bound here. So an upgrade's new process takes the port over
 * instead of failing to bind it while the old one still holds it, and probes
 * arriving meanwhile are queued, never refused.
 */
import type { Server } from "bun";
import type * as ServeModule from "./serve.ts";

/** Where the health listener binds. */
export interface HealthOptions {
  /** TCP port. Required. */
  port: number;
  /** Address to bind. Default "0.0.0.0": a kubelet probes the pod's IP. */
  host?: string;
}

/** The listener's name: LISTEN_FDNAMES / FDNAME= of a socket passed for it, and its name in an upgrade's handover. */
export const HEALTH_LISTENER = "health";

/**
 * Start listening; `ready()` is asked on every /readyz. Throws LISTEN (the
 * address and errno: EADDRINUSE…) when the port cannot be had, SERVE when
 * this Bun cannot be made to accept on the daemon's socket.
 */
export function startHealth(o: HealthOptions, ready: () => boolean): { stop(): void; port: number } {
  const hostname = o.host ?? "0.0.0.0";
  const fetch = (req: Request) => {
    const path = new URL(req.url).pathname;
    if (path === "/livez") return new Response("ok\n");
    if (path === "/readyz") return ready() ? new Response("ready\n") : new Response("not ready\n", { status: 503 });
    return new Response("not found: try /livez or /readyz\n", { status: 404 });
  };
  let server: Server<unknown>;
  const { isIP } = require("node:net") as typeof import("node:net");
  if (hostname !== "localhost" && isIP(hostname.replace(/^\[(.*)\]$/, "$1")) === 0) {
    // A host name (not an address): the daemon's listeners bind addresses
    // only, so Bun resolves and binds it as before, and an upgrade cannot
    // hand this port over.
    server = Bun.serve({ hostname, port: o.port, fetch }) as Server<unknown>;
  } else {
    // Loaded here, not at import: only a daemon with a health port pays for it.
    const { serve } = require("./serve.ts") as typeof ServeModule;
    // The default drain (250 ms), as the app's servers': a probe the old
    // process accepted just before it stopped accepting is still answered.
    server = serve({ name: HEALTH_LISTENER, hostname, port: o.port, fetch }) as Server<unknown>;
  }
  return { stop: () => void server.stop(true), port: server.port ?? o.port };
}
