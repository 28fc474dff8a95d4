/**
 * The app of examples/hello.ts: loaded only in the process that runs the
 * hooks. It registers them with onInit() & co., typed by the daemon's options.
 *
 * Socket-activated (a .socket unit, systemd-socket-activate) it serves on the
 * socket it was passed; otherwise it binds --host/--port itself.
 */
import { createServer as createHttpServer } from "node:http";
import { createServer as createNetServer, type Server } from "node:net";
import { listenFds, onInit, onReady, onReload, onShutdown } from "../src/index.ts";
import type { daemon } from "./hello.ts";

type Hello = typeof daemon;

let server: ReturnType<typeof Bun.serve> | undefined;
let adopted: { net: Server; http: ReturnType<typeof createHttpServer> } | undefined;
let reloads = 0;

const hello = () => `hello from ${process.pid}\n`;

/**
 * Bun.serve({ fd }) and http.Server.listen({ fd }) ignore the fd and bind
 * elsewhere (runtime notes §4), but a node:net server adopts it: it accepts,
 * and an http.Server speaks HTTP on each connection it is handed.
 */
function serveOn(fd: number): Promise<NonNullable<typeof adopted>> {
  const http = createHttpServer((_req, res) => res.end(hello()));
  const net = createNetServer((socket) => http.emit("connection", socket));
  return new Promise((resolve, reject) => {
    net.once("error", reject);
    net.listen({ fd }, () => resolve({ net, http }));
  });
}

onInit<Hello>(async function listen(ctx) {
  const [socket] = listenFds();
  if (socket) {
    adopted = await serveOn(socket.fd);
    ctx.log.info(`init: serving on the activated socket (fd ${socket.fd}, ${socket.name})`);
    return;
  }
  server = Bun.serve({
    hostname: ctx.args.host,
    port: Number(ctx.args.port),
    fetch: () => new Response(hello()),
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
  if (adopted) {
    const { net, http } = adopted;
    const closed = new Promise<void>((resolve) => net.close(() => resolve()));
    http.closeAllConnections(); // keep-alive clients would hold net.close() open until shutdownTimeout
    await closed;
  }
});
