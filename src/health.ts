/**
 * The health listener (`health: { port, host }`, `--health-port`): for
 * HTTP probes, GET /livez is 200 until the process exits, GET /readyz 200
 * exactly when `status --ready` would exit 0 (running or reloading, not
 * starting, not from the first stop signal on), else 503.
 */

/** Where the health listener binds. */
export interface HealthOptions {
  /** TCP port. Required. */
  port: number;
  /** Address to bind. Default "0.0.0.0": a kubelet probes the pod's IP. */
  host?: string;
}

/** Start listening; `ready()` is asked on every /readyz. Throws what Bun.serve throws (EADDRINUSE…). */
export function startHealth(o: HealthOptions, ready: () => boolean): { stop(): void; port: number } {
  const server = Bun.serve({
    hostname: o.host ?? "0.0.0.0",
    port: o.port,
    fetch(req) {
      const path = new URL(req.url).pathname;
      if (path === "/livez") return new Response("ok\n");
      if (path === "/readyz") return ready() ? new Response("ready\n") : new Response("not ready\n", { status: 503 });
      return new Response("not found: try /livez or /readyz\n", { status: 404 });
    },
  });
  return { stop: () => void server.stop(true), port: server.port ?? o.port };
}
