/**
 * ctx.serve(): Bun.serve on a listening socket the daemon owns, so that an
 * upgrade hands the socket to the next process and no connection is refused.
 *
 * Bun.serve cannot adopt a socket (its `fd` option is ignored: Bun issue
 * 22559), so the server is started on a throw-away loopback port and its
 * listening fd is then swapped for the daemon's socket: the epoll entry Bun
 * registered for that fd (read from /proc/self/fdinfo) is removed, the
 * socket is dup'ed onto the fd number, and the entry is added again with
 * Bun's own event data. Bun then accepts on the daemon's socket without
 * knowing. Every step is checked; a Bun that works otherwise fails with a
 * SERVE error instead of serving somewhere unexpected
 * (test/serve.test.ts checks the facts this relies on).
 */
import { readdirSync, readFileSync, readlinkSync, statSync } from "node:fs";
import type { Server } from "bun";
import { DaemonError, errnoName } from "./errors.ts";
import type * as Ffi from "./ffi.ts";
import type { SocketAddress } from "./ffi.ts";
import { addressText, checkListenerName, takeListener, type Listener } from "./listeners.ts";

/** What ctx.serve adds to Bun.serve's options. */
export interface DaemonServeOptions {
  /**
   * The listener's name: matches `LISTEN_FDNAMES` (FileDescriptorName= of a
   * .socket unit) and the FDNAME= under which it is kept in systemd's fd
   * store. Default `"http"`.
   */
  name?: string;
  /**
   * ms a draining server goes on answering (each response with
   * `Connection: close`, so keep-alive clients reconnect to the new
   * process) before it closes what is left. Default 250.
   */
  drain?: number;
  /** listen(2) backlog of a socket bound here. Default 511, as nginx. */
  backlog?: number;
}

/** ctx.serve's options: Bun.serve's (TCP only: no `unix`), plus the daemon's. */
export type ServeOptions<W = undefined, R extends string = string> = Bun.Serve.Options<W, R> & DaemonServeOptions;

interface Entry {
  server: Server<unknown>;
  listener: Listener;
  drainMs: number;
  draining: boolean;
  /** This process's fd number Bun accepts on (a dup of the listener's). */
  acceptFd: number;
}

const servers: Entry[] = [];
const ffi = (): typeof Ffi => require("./ffi.ts") as typeof Ffi;

/** Bun.serve's hostname as an address: an IP literal, "localhost" (127.0.0.1) or the default 0.0.0.0. */
function addressOf(o: { hostname?: unknown; port?: unknown }): SocketAddress {
  const { isIP } = require("node:net") as typeof import("node:net");
  const rawHost = o.hostname === undefined ? "0.0.0.0" : o.hostname;
  if (typeof rawHost !== "string") throw new DaemonError("USAGE", "ctx.serve: hostname must be a string");
  const host = rawHost === "localhost" ? "127.0.0.1" : rawHost.replace(/^\[(.*)\]$/, "$1");
  const family = isIP(host);
  if (family === 0) throw new DaemonError("USAGE", `ctx.serve: hostname ${JSON.stringify(rawHost)} is not an IP address; give the address to listen on (0.0.0.0, ::, 127.0.0.1, an interface's address)`);
  const rawPort = o.port ?? process.env.BUN_PORT ?? process.env.PORT ?? process.env.NODE_PORT ?? 3000;
  const port = typeof rawPort === "number" ? rawPort : /^\d+$/.test(String(rawPort)) ? Number(rawPort) : NaN;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new DaemonError("USAGE", `ctx.serve: port ${JSON.stringify(rawPort)} is not a port number (0-65535)`);
  return { family: family as 4 | 6, host, port };
}

/** This process's socket fds, by number, with their inode. */
function socketFds(): Map<number, string> {
  const out = new Map<number, string>();
  for (const name of readdirSync("/proc/self/fd")) {
    try {
      const t = readlinkSync(`/proc/self/fd/${name}`);
      if (t.startsWith("socket:[")) out.set(Number(name), t);
    } catch {}
  }
  return out;
}

interface EpollEntry {
  epfd: number;
  events: number;
  data: bigint;
  ino: string;
}

/** The epoll registrations of `fd` in this process's epoll instances (/proc/self/fdinfo of each eventpoll fd). */
function epollEntriesOf(fd: number): EpollEntry[] {
  const found: EpollEntry[] = [];
  for (const name of readdirSync("/proc/self/fd")) {
    let target: string;
    try {
      target = readlinkSync(`/proc/self/fd/${name}`);
    } catch {
      continue;
    }
    if (target !== "anon_inode:[eventpoll]") continue;
    let info: string;
    try {
      info = readFileSync(`/proc/self/fdinfo/${name}`, "utf8");
    } catch {
      continue;
    }
    for (const line of info.split("\n")) {
      const m = /^tfd:\s*(\d+)\s+events:\s*([0-9a-f]+)\s+data:\s*([0-9a-f]+).*?ino:([0-9a-f]+)/.exec(line);
      if (m && Number(m[1]) === fd) found.push({ epfd: Number(name), events: parseInt(m[2]!, 16), data: BigInt(`0x${m[3]}`), ino: m[4]! });
    }
  }
  return found;
}

const broken = (what: string) =>
  new DaemonError("SERVE", `ctx.serve: ${what}. This Bun (${Bun.version}) sets up Bun.serve differently from the versions bun-daemon knows; use Bun.serve directly (no zero-downtime handover) and report it`);

/** Start `options` on a throw-away loopback port, then make Bun accept on `listener` instead. */
function serveOn(listener: Listener, options: Record<string, unknown>): { server: Server<unknown>; acceptFd: number } {
  const f = ffi();
  const before = socketFds();
  const { name: _n, drain: _d, backlog: _b, ...bunOptions } = options;
  const server = Bun.serve({ ...bunOptions, hostname: "127.0.0.1", port: 0, reusePort: false } as Bun.Serve.Options<unknown>) as Server<unknown>;
  const fail = (what: string): never => {
    server.stop(true);
    throw broken(what);
  };
  const fresh = [...socketFds().keys()].filter((fd) => !before.has(fd) && f.isListeningStream(fd) && f.localAddress(fd)?.port === server.port);
  if (fresh.length !== 1) fail(`Bun.serve opened ${fresh.length} listening sockets on its port, not one`);
  const x = fresh[0]!;
  const entries = epollEntriesOf(x);
  if (entries.length !== 1) fail(`Bun.serve's listening fd ${x} is in ${entries.length} epoll sets, not one`);
  const e = entries[0]!;
  let err = f.epollCtl(e.epfd, f.EPOLL_CTL_DEL, x, 0, 0n);
  if (err !== 0) fail(`epoll_ctl(DEL) of Bun's listening fd failed: ${errnoName(err)}`);
  // Bun's throw-away socket closes here; the fd number now names ours (close-on-exec kept).
  // Its TCP_DEFER_ACCEPT goes with it: on a socket several processes share, a
  // connection that has not sent yet would be invisible to accept() and reset at a handover.
  f.redirectFd(listener.fd, x, "ctx.serve: take over Bun.serve's listening fd");
  err = f.epollCtl(e.epfd, f.EPOLL_CTL_ADD, x, e.events, e.data);
  if (err !== 0) fail(`epoll_ctl(ADD) of the daemon's socket failed: ${errnoName(err)}`);
  const ours = statSync(`/proc/self/fd/${listener.fd}`).ino.toString(16);
  const now = epollEntriesOf(x);
  if (now.length !== 1 || now[0]!.ino !== ours) fail("the swapped epoll entry does not name the daemon's socket");
  return { server, acceptFd: x };
}

/** The Server as the app sees it: Bun's, with the daemon's address (not the throw-away port). */
function presented(server: Server<unknown>, address: SocketAddress, scheme: string): Server<unknown> {
  const bound = new Map<PropertyKey, unknown>();
  const host = address.family === 6 ? `[${address.host}]` : address.host;
  const own: Record<PropertyKey, unknown> = {
    port: address.port,
    hostname: address.host,
    url: new URL(`${scheme}://${host}:${address.port}/`),
    address: { address: address.host, family: address.family === 6 ? "IPv6" : "IPv4", port: address.port },
  };
  return new Proxy(server, {
    get(target, prop) {
      if (prop in own) return own[prop];
      const v = Reflect.get(target, prop, target);
      if (typeof v !== "function") return v;
      // Native methods need Bun's object as `this`.
      let fn = bound.get(prop);
      if (!fn) bound.set(prop, (fn = (v as (...a: unknown[]) => unknown).bind(target)));
      return fn;
    },
  });
}

/** `res` with `Connection: close` (a copy when its headers are immutable). */
function closing(res: unknown): unknown {
  if (!(res instanceof Response)) return res;
  try {
    res.headers.set("Connection", "close");
    return res;
  } catch {
    const headers = new Headers(res.headers);
    headers.set("Connection", "close");
    return new Response(res.body, { status: res.status, statusText: res.statusText, headers });
  }
}

/**
 * ctx.serve(options): Bun.serve on the daemon's listener `options.name`.
 * Returns Bun's Server (its port, hostname and url the listener's). Throws
 * USAGE for options it cannot honour (`unix`, a hostname that is no IP),
 * LISTEN when the socket cannot be had, SERVE when the swap fails.
 */
export function serve(options: ServeOptions<any, any>): Server<any> {
  if (typeof options !== "object" || options === null) throw new DaemonError("USAGE", "ctx.serve(options) needs Bun.serve's options object");
  const o = options as unknown as Record<string, unknown>;
  if (o.unix !== undefined) throw new DaemonError("USAGE", "ctx.serve: unix sockets are not handed over; use Bun.serve({ unix }) for them");
  const name = checkListenerName(o.name ?? "http");
  if (servers.some((s) => s.listener.name === name && !s.draining)) throw new DaemonError("USAGE", `ctx.serve: listener "${name}" already has a server in this process; give the second one another name`);
  const drainMs = o.drain ?? 250;
  if (typeof drainMs !== "number" || !Number.isFinite(drainMs) || drainMs < 0) throw new DaemonError("USAGE", "ctx.serve: drain must be a number of ms (>= 0)");
  const backlog = o.backlog ?? 511;
  if (typeof backlog !== "number" || !Number.isInteger(backlog) || backlog < 1) throw new DaemonError("USAGE", "ctx.serve: backlog must be a positive integer");
  const want = addressOf(o);
  const listener = takeListener({ name, address: want, backlog });
  if (want.port !== 0 && (listener.address.port !== want.port)) {
    throw new DaemonError("LISTEN", `ctx.serve: listener "${name}" is ${addressText(listener.address)} (${listener.source}), not port ${want.port}; an upgrade cannot move a listener: use restart`);
  }
  const entry = { drainMs, draining: false } as Entry;
  let view: Server<unknown> | undefined;
  const userFetch = o.fetch as ((req: Request, server: Server<unknown>) => unknown) | undefined;
  const fetch =
    userFetch &&
    function (req: Request) {
      const r = userFetch.call(view, req, view!);
      if (r instanceof Promise) return r.then((res) => (entry.draining ? closing(res) : res));
      return entry.draining ? closing(r) : r;
    };
  const { server, acceptFd } = serveOn(listener, { ...o, ...(fetch ? { fetch } : {}) });
  view = presented(server, listener.address, o.tls ? "https" : "http");
  Object.assign(entry, { server, listener, acceptFd });
  servers.push(entry);
  return view;
}

/**
 * Stop accepting and drain: from now on every response says
 * `Connection: close`; after each server's `drain` ms (bounded by
 * `maxMs`) what is still open is closed. The listeners stay open (another
 * process accepts on them, or the fd store holds them). Servers on the
 * listeners named in `keep` go on as they are.
 */
export async function drainAll(maxMs: number, keep: readonly string[] = []): Promise<void> {
  const f = ffi();
  const live = servers.filter((s) => !s.draining && !keep.includes(s.listener.name));
  for (const s of live) {
    s.draining = true;
    // Out of Bun's epoll set: this process accepts no more, while Bun still
    // serves the connections it has (server.stop() would close idle
    // keep-alive ones at once, racing the clients' next request).
    for (const e of epollEntriesOf(s.acceptFd)) f.epollCtl(e.epfd, f.EPOLL_CTL_DEL, s.acceptFd, 0, 0n);
  }
  if (live.length === 0) return;
  const wait = Math.min(maxMs, Math.max(...live.map((s) => s.drainMs)));
  const end = performance.now() + wait;
  while (performance.now() < end) await Bun.sleep(Math.min(10, Math.max(1, end - performance.now())));
  // Requests still running get the rest of the bound: stop(false) waits for them.
  for (const s of live) void s.server.stop(false);
  const until = performance.now() + Math.max(0, maxMs - wait);
  while (live.some((s) => s.server.pendingRequests > 0) && performance.now() < until) await Bun.sleep(5);
  for (const s of live) void s.server.stop(true);
}
