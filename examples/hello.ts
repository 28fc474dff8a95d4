/**
 * hello: a small daemon serving `hello from <pid>` over HTTP.
 *
 *   bun run examples/hello.ts start --port 8080   # detach, return when ready
 *   curl http://127.0.0.1:8080/
 *   bun run examples/hello.ts status
 *   bun run examples/hello.ts reload
 *   bun run examples/hello.ts stop
 */
import { defineDaemon } from "../src/index.ts";

const daemon = defineDaemon({
  name: "hello",
  description: "says hello over HTTP",
  args: {
    port: { type: "string", description: "TCP port to listen on", default: "8080" },
    host: { type: "string", description: "address to bind", default: "127.0.0.1" },
  },
});

let server: ReturnType<typeof Bun.serve> | undefined;
let reloads = 0;

daemon.on("init", async function listen(ctx) {
  server = Bun.serve({
    hostname: String(ctx.args.host),
    port: Number(ctx.args.port),
    fetch: () => new Response(`hello from ${process.pid}\n`),
  });
  ctx.log.info(`init: listening on http://${server.hostname}:${server.port}`);
});

daemon.on("ready", (ctx) => ctx.log.info(`ready: pid ${ctx.pid}, ${ctx.mode} mode`));

daemon.on("reload", (ctx) => {
  reloads++;
  ctx.log.info(`reload #${reloads}`);
});

daemon.on("shutdown", async function close(ctx) {
  ctx.log.info(`shutdown: ${ctx.reason}`);
  await server?.stop();
});

await daemon.main();
