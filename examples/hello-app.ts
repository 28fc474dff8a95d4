/**
 * The app of examples/hello.ts: loaded only in the process that runs the
 * hooks. It registers them with onInit() & co., typed by the daemon's options.
 */
import { onInit, onReady, onReload, onShutdown } from "../src/index.ts";
import type { daemon } from "./hello.ts";

type Hello = typeof daemon;

let server: ReturnType<typeof Bun.serve> | undefined;
let reloads = 0;

onInit<Hello>(function listen(ctx) {
  server = Bun.serve({
    hostname: ctx.args.host,
    port: Number(ctx.args.port),
    fetch: () => new Response(`hello from ${process.pid}\n`),
  });
  ctx.log.info(`init: listening on http://${server.hostname}:${server.port}`);
});

onReady<Hello>((ctx) => ctx.log.info(`ready: pid ${ctx.pid}, ${ctx.mode} mode`));

onReload<Hello>((ctx) => {
  reloads++;
  ctx.log.info(`reload #${reloads}`);
});

onShutdown<Hello>(async function close(ctx) {
  ctx.log.info(`shutdown: ${ctx.reason}`);
  await server?.stop();
});
