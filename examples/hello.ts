/**
 * hello: a small daemon serving `hello from <pid>` over HTTP.
 *
 *   bun run examples/hello.ts start --port 8080   # detach, return when ready
 *   curl http://127.0.0.1:8080/
 *   bun run examples/hello.ts status
 *   bun run examples/hello.ts reload
 *   bun run examples/hello.ts stop
 *
 * This entry stays small: it names the daemon, its options and its app
 * module. Only the daemon (or `run`) loads ./hello-app.ts; `start`'s
 * launcher, `status`, `stop`, `reload` and `--help` never do.
 */
import { defineDaemon } from "../src/index.ts";

export const daemon = defineDaemon({
  name: "hello",
  description: "says hello over HTTP",
  args: {
    port: { type: "string", description: "TCP port to listen on", default: "8080" },
    host: { type: "string", description: "address to bind", default: "127.0.0.1" },
  },
  app: () => import("./hello-app.ts"),
});

await daemon.main();
