/**
 * The listening sockets the daemon owns (ctx.serve's): taken over from the
 * process before this one (an upgrade's old daemon, a workers' primary),
 * from socket activation or systemd's fd store, or bound here. They outlive
 * the servers on them, so the next process can accept where this one stops.
 */
import { DaemonError } from "./errors.ts";
import type * as Ffi from "./ffi.ts";
import type { SocketAddress } from "./ffi.ts";

/** One listening socket and where it came from. */
export interface Listener {
  /** ctx.serve's `name` (LISTEN_FDNAMES, FDNAME= of the fd store). */
  readonly name: string;
  /** This process's descriptor: close-on-exec, non-blocking. Never closed while the process lives. */
  readonly fd: number;
  readonly address: SocketAddress;
  readonly source: "handed over" | "socket activation" | "bound" | "primary";
}

/** The variable naming the sockets a previous process hands over, as LISTEN_FDNAMES does: `http:admin` for fds 5, 6. */
export const HANDOVER_ENV = "BUN_DAEMON_LISTENERS";
/** The first handed-over fd: after stdio, the status pipe (3) and the PID file or worker channel (4). */
export const HANDOVER_FIRST_FD = 5;

const ffi = (): typeof Ffi => require("./ffi.ts") as typeof Ffi;

let owned: Map<string, Listener> | undefined;
let handed: Map<string, number> | undefined;
/** In a worker: where every listener comes from (its primary). */
let upstream: ((req: ListenRequest) => number) | undefined;

/** A worker's listeners all come from `ask` (src/worker.ts): the primary owns, binds and hands them over. */
export function listenThrough(ask: (req: ListenRequest) => number): void {
  upstream = ask;
}

const where = (a: SocketAddress) => (a.family === 6 ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`);

/** A listener name as systemd takes one for FDNAME=: 1–255 printable ASCII characters, no `:`. */
export function checkListenerName(name: unknown): string {
  if (typeof name !== "string" || !/^[\x21-\x39\x3b-\x7e]{1,255}$/.test(name)) {
    throw new DaemonError("USAGE", `ctx.serve: name ${JSON.stringify(name)} must be 1-255 printable ASCII characters without ":" or spaces (it is the socket's FDNAME=)`);
  }
  return name;
}

/** The sockets the previous process handed over, read from the environment once (and removed from it, so children do not believe it). */
function handedOver(): Map<string, number> {
  if (handed) return handed;
  handed = new Map();
  const names = process.env[HANDOVER_ENV];
  delete process.env[HANDOVER_ENV];
  if (names === undefined || names === "") return handed;
  const { markCloexec, isListeningStream, setNonblock } = ffi();
  names.split(":").forEach((name, i) => {
    const fd = HANDOVER_FIRST_FD + i;
    if (markCloexec(fd) !== 0 || !isListeningStream(fd)) {
      throw new DaemonError("LISTEN", `${HANDOVER_ENV} hands over fd ${fd} as "${name}", but it is not an open listening socket`);
    }
    setNonblock(fd);
    handed!.set(name, fd);
  });
  return handed;
}

/** What ctx.serve asks for. */
export interface ListenRequest {
  name: string;
  address: SocketAddress;
  /** listen(2) backlog for a socket bound here. */
  backlog: number;
}

/**
 * The listening socket named `req.name`: the one this process already
 * holds, else the one handed over, else socket activation's (by name, or
 * the only one on the port asked for), else a new one bound to
 * `req.address`. Throws LISTEN (with the address and errno) when none can be had.
 */
export function takeListener(req: ListenRequest): Listener {
  owned ??= new Map();
  const have = owned.get(req.name);
  if (have) return have;
  const f = ffi();
  let fd = upstream ? upstream(req) : handedOver().get(req.name);
  let source: Listener["source"] = upstream ? "primary" : "handed over";
  if (fd === undefined) {
    fd = fromActivation(req);
    source = "socket activation";
  }
  if (fd === undefined) {
    fd = f.listenTcp(req.address, req.backlog);
    source = "bound";
  } else {
    f.setNonblock(fd);
  }
  const address = f.localAddress(fd);
  if (!address) throw new DaemonError("LISTEN", `listener "${req.name}": fd ${fd} is not a TCP socket`);
  const l: Listener = { name: req.name, fd, address, source };
  owned.set(req.name, l);
  if (source === "bound") storeInSupervisor(l);
  return l;
}

/** Under systemd: a socket bound here goes into its fd store, so a `systemctl restart` finds it queued, not closed (activation's and handed-over ones are there already). */
function storeInSupervisor(l: Listener): void {
  const { send, fdStoreOffered } = require("./notify.ts") as typeof import("./notify.ts");
  if (fdStoreOffered()) send(`FDSTORE=1\nFDNAME=${l.name}`, [l.fd]);
}

/** From LISTEN_FDS (a .socket unit, systemd-socket-activate, the fd store after a restart): by name, else the one socket on the port asked for. */
function fromActivation(req: ListenRequest): number | undefined {
  const { listenFds } = require("./listen.ts") as typeof import("./listen.ts");
  const fds = listenFds();
  const f = ffi();
  const taken = new Set([...(owned?.values() ?? [])].map((l) => l.fd));
  const free = fds.filter((x) => !taken.has(x.fd) && f.isListeningStream(x.fd));
  const byName = free.find((x) => x.name === req.name);
  if (byName) return byName.fd;
  const onPort = free.filter((x) => f.localAddress(x.fd)?.port === req.address.port);
  return onPort.length === 1 ? onPort[0]!.fd : undefined;
}

/** Every listener this process holds, in the order they were taken. */
export function heldListeners(): Listener[] {
  return [...(owned?.values() ?? [])];
}

/**
 * What a process started to take over needs: its environment entry and the
 * fds to place at HANDOVER_FIRST_FD onwards, in that order. Listeners
 * handed to this process and not (yet) taken by a ctx.serve are passed on
 * too: a new version that serves them later still finds them.
 */
export function handover(): { env: Record<string, string>; fds: number[] } {
  const all = new Map<string, number>();
  for (const [name, fd] of handedOver()) all.set(name, fd);
  for (const l of heldListeners()) all.set(l.name, l.fd);
  if (all.size === 0) return { env: {}, fds: [] };
  return { env: { [HANDOVER_ENV]: [...all.keys()].join(":") }, fds: [...all.values()] };
}

export { where as addressText };
