/**
 * api: an HTTP daemon that can be upgraded without refusing a connection.
 *
 *   bun run examples/upgrade.ts start --port 8081
 *   curl http://127.0.0.1:8081/          # hello from <pid>
 *   bun run examples/upgrade.ts upgrade  # the program as it is on disk now takes over
 *   curl http://127.0.0.1:8081/          # hello from <the new pid>
 *   bun run examples/upgrade.ts stop
 */
import { defineDaemon } from "../src/index.ts";

const daemon = defineDaemon({
  name: "api",
  description: "says hello over HTTP; `upgrade` replaces it without refusing a connection",
  args: {
    port: { type: "string", description: "TCP port to listen on", default: "8081" },
  },
  init(ctx) {
    // Bun.serve's options and Server; the listening socket belongs to the daemon.
    const server = ctx.serve({ port: Number(ctx.args.port), hostname: "127.0.0.1", fetch: () => new Response(`hello from ${process.pid}\n`) });
    ctx.log.info(`listening on ${server.url.href}`);
  },
});

await daemon.main();
