/**
 * A worker process's side of DaemonConfig.workers: who it is (from its
 * environment), its handle on the status pipe to the primary (fd 3), and
 * the listeners it asks the primary for on the worker channel (fd 4), so
 * every worker accepts on the primary's sockets.
 */
import { fstatSync } from "node:fs";
import { DaemonError, errorText, errnoName } from "./errors.ts";
import { closeFd, recvFds, setCloexec, setNonblock, setParentDeathSignal, setProcessName, writeAll } from "./ffi.ts";
import { listenThrough, type ListenRequest } from "./listeners.ts";
import { encodeJson, FRAME_LISTEN, parentPipeHandle, STAGE_STATUS_FD } from "./protocol.ts";
import type { DaemonHandle } from "./stage.ts";

/** `id:count:primaryPid:mode`: set by the primary on each worker it starts. */
export const WORKER_ENV = "BUN_DAEMON_WORKER";
/** The worker's end of its channel to the primary: listeners come back on it as SCM_RIGHTS. */
export const WORKER_CHANNEL_FD = 4;

export interface WorkerIdentity {
  /** 1..count; a replacement keeps the id of the worker it replaces. */
  id: number;
  count: number;
  primary: number;
  mode: "daemon" | "foreground";
}

let identity: WorkerIdentity | null | undefined;

/** This process's worker identity, read once (and removed from the environment, so its children are no workers). */
export function takeWorkerEnv(): WorkerIdentity | undefined {
  if (identity === undefined) {
    const v = process.env[WORKER_ENV];
    delete process.env[WORKER_ENV];
    const m = v === undefined ? null : /^(\d+):(\d+):(\d+):(daemon|foreground)$/.exec(v);
    identity = m ? { id: Number(m[1]), count: Number(m[2]), primary: Number(m[3]), mode: m[4] as WorkerIdentity["mode"] } : null;
  }
  return identity ?? undefined;
}

/** The primary's answer to a FRAME_LISTEN, with the socket as SCM_RIGHTS when ok. */
export interface ListenAnswer {
  ok: boolean;
  code?: string;
  message?: string;
}

/**
 * Ask the primary for `req`'s listener and wait for it (ctx.serve is
 * synchronous; the primary answers from its event loop at once). Throws
 * LISTEN with the primary's reason, or when the primary is gone.
 */
function askPrimary(req: ListenRequest): number {
  if (!writeAll(STAGE_STATUS_FD, encodeJson(FRAME_LISTEN, { name: req.name, address: req.address, backlog: req.backlog }))) {
    throw new DaemonError("LISTEN", `listener "${req.name}": the primary is gone (writing to it failed)`);
  }
  const r = recvFds(WORKER_CHANNEL_FD, 4096);
  if ("errno" in r) throw new DaemonError("LISTEN", `listener "${req.name}": reading the primary's answer failed: ${errnoName(r.errno)}`, { errno: r.errno, syscall: "recvmsg" });
  if (r.bytes.length === 0) throw new DaemonError("LISTEN", `listener "${req.name}": the primary is gone (its channel closed)`);
  let answer: ListenAnswer;
  try {
    answer = JSON.parse(Buffer.from(r.bytes).toString("utf8")) as ListenAnswer;
  } catch (err) {
    for (const fd of r.fds) closeFd(fd);
    throw new DaemonError("LISTEN", `listener "${req.name}": the primary's answer is unreadable (${errorText(err)})`);
  }
  if (!answer.ok || r.fds.length !== 1) {
    for (const fd of r.fds) closeFd(fd);
    throw new DaemonError("LISTEN", answer.message ?? `listener "${req.name}": the primary sent no socket`);
  }
  const fd = r.fds[0]!;
  setNonblock(fd);
  return fd;
}

/**
 * The worker's DaemonHandle: ready/failed/stopping frames to the primary
 * on fd 3, which stays open after ready (a reload hook may still call
 * ctx.serve). No PID file: the primary's is the daemon's.
 */
export function workerHandle(who: WorkerIdentity, opts: { name: string; reopen?: () => boolean }): DaemonHandle {
  try {
    if (!fstatSync(STAGE_STATUS_FD).isFIFO()) throw new Error("fd 3 is not a pipe");
    if (!fstatSync(WORKER_CHANNEL_FD).isSocket()) throw new Error("fd 4 is not a socket");
  } catch (err) {
    throw new DaemonError("STAGE", `started as worker ${who.id} of pid ${who.primary}, but without its channels (${errorText(err)})`, { cause: err });
  }
  setCloexec(STAGE_STATUS_FD, true);
  setCloexec(WORKER_CHANNEL_FD, true);
  // A worker outliving its primary (SIGKILLed) would hold the port for ever: it
  // gets SIGTERM and drains. The check after closes the window before the prctl.
  setParentDeathSignal(15);
  if (process.ppid !== who.primary) process.kill(process.pid, "SIGTERM");
  setProcessName(opts.name);
  listenThrough(askPrimary);
  return parentPipeHandle({ pidFile: { path: "", fd: -1 }, what: `worker ${who.id}`, closeAtReady: false, ...(opts.reopen ? { reopen: opts.reopen } : {}) });
}
