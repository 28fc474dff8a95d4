/**
 * Frames on the status pipe from the forked children and the daemon to the
 * launcher: [type:i32][length:i32][payload]. Frames are smaller than
 * PIPE_BUF, so each write(2) lands whole even with two writers.
 */

/** Where the daemon stage finds the status pipe and the locked PID file (the launcher puts them there). */
export const STAGE_STATUS_FD = 3;
export const STAGE_PIDFILE_FD = 4;

/** Throws (a plain Error saying which) unless fd 3 is a pipe and fd 4 is the open file at `pidFile`: what a launcher or an upgrading daemon leaves a stage. */
export function checkStageFds(pidFile: string): void {
  const { fstatSync, statSync } = require("node:fs") as typeof import("node:fs");
  if (!fstatSync(STAGE_STATUS_FD).isFIFO()) throw new Error("fd 3 is not a pipe");
  const a = fstatSync(STAGE_PIDFILE_FD);
  const b = statSync(pidFile);
  if (a.ino !== b.ino || a.dev !== b.dev) throw new Error(`fd 4 is not ${pidFile}`);
}

export const FRAME_PID = 1; // intermediate child: the daemon's pid (i32 payload)
export const FRAME_FORK_FAILED = 2; // intermediate child: errno of the second fork
export const FRAME_EXEC_FAILED = 3; // grandchild: errno of execve
export const FRAME_READY = 4; // daemon: JSON ReadyMessage
export const FRAME_FAILED = 5; // daemon: JSON FailureMessage
export const FRAME_STOPPING = 6; // daemon: JSON StoppingMessage, stopped before it was ready
export const FRAME_OUTPUT = 7; // daemon, at ready: raw bytes of its output the launcher had not read yet
export const FRAME_LISTEN = 8; // worker to its primary: JSON ListenMessage; the answer comes on the worker channel

/** Bytes of output per FRAME_OUTPUT: with the 8-byte header, under PIPE_BUF (4096). */
export const OUTPUT_CHUNK = 4000;

/** A frame of one i32 (FRAME_PID). */
export function encodeInt(type: number, n: number): Uint8Array {
  const frame = new Uint8Array(12);
  const view = new DataView(frame.buffer);
  view.setInt32(0, type, true);
  view.setInt32(4, 4, true);
  view.setInt32(8, n, true);
  return frame;
}

/** A frame of raw bytes (FRAME_OUTPUT). */
export function encodeBytes(type: number, bytes: Uint8Array): Uint8Array {
  const frame = new Uint8Array(8 + bytes.length);
  const view = new DataView(frame.buffer);
  view.setInt32(0, type, true);
  view.setInt32(4, bytes.length, true);
  frame.set(bytes, 8);
  return frame;
}

export interface ReadyMessage {
  pid: number;
  /** A worker: the longest its stop takes (its primary waits that long before SIGKILL). */
  stopMs?: number;
}

/** A worker asks its primary for the listener ctx.serve wants (src/workers.ts). */
export interface ListenMessage {
  name: string;
  address: import("./ffi.ts").SocketAddress;
  backlog: number;
}

/** The daemon began shutting down before it was ready and may take this long. */
export interface StoppingMessage {
  graceMs: number;
}

/** What the daemon tells the launcher when it will not become ready. */
export interface FailureMessage {
  code: string;
  message: string;
  /** The exit status the launcher should use (non-zero). */
  exitCode: number;
}

/**
 * FRAME_FAILED for `error`: its DaemonError code (else INIT_FAILED), its
 * one-line text and the exit status, whatever was thrown. Never throws.
 */
export function failureFrame(error: unknown, exitCode: number): Uint8Array {
  const { errorText, exitStatus } = require("./errors.ts") as typeof import("./errors.ts");
  let code: unknown;
  try {
    code = (error as { code?: unknown } | undefined)?.code;
  } catch {}
  return encodeJson(FRAME_FAILED, { code: typeof code === "string" ? code : "INIT_FAILED", message: errorText(error), exitCode: exitStatus(exitCode) });
}

export interface Frame {
  type: number;
  payload: Uint8Array;
}

/** Encode a JSON frame; messages are cut to keep the frame under PIPE_BUF. */
export function encodeJson(type: number, value: ReadyMessage | FailureMessage | StoppingMessage | ListenMessage): Uint8Array {
  let body = Buffer.from(JSON.stringify(value), "utf8");
  if (body.length > 4000 && "message" in value) {
    body = Buffer.from(JSON.stringify({ ...value, message: `${value.message.slice(0, 3500)}…` }), "utf8");
  }
  const frame = new Uint8Array(8 + body.length);
  const view = new DataView(frame.buffer);
  view.setInt32(0, type, true);
  view.setInt32(4, body.length, true);
  frame.set(body, 8);
  return frame;
}

/** Incremental decoder: feed bytes as they arrive, take whole frames out. */
export class FrameReader {
  private buf = new Uint8Array(0);

  push(chunk: Uint8Array): Frame[] {
    const merged = new Uint8Array(this.buf.length + chunk.length);
    merged.set(this.buf);
    merged.set(chunk, this.buf.length);
    const frames: Frame[] = [];
    let off = 0;
    while (merged.length - off >= 8) {
      const view = new DataView(merged.buffer, off);
      const type = view.getInt32(0, true);
      const len = view.getInt32(4, true);
      if (len < 0 || len > 65536) throw new Error(`corrupt status frame (type ${type}, length ${len})`);
      if (merged.length - off - 8 < len) break;
      frames.push({ type, payload: merged.slice(off + 8, off + 8 + len) });
      off += 8 + len;
    }
    this.buf = merged.slice(off);
    return frames;
  }
}

export function payloadInt(f: Frame): number {
  return new DataView(f.payload.buffer, f.payload.byteOffset).getInt32(0, true);
}

export function payloadJson<T>(f: Frame): T {
  return JSON.parse(Buffer.from(f.payload).toString("utf8")) as T;
}

/**
 * The DaemonHandle of a process whose parent daemon waits for it on the
 * status pipe at fd 3 (an upgrade's new process, a worker): ready, failed
 * and stopping frames, and a failure frame if it exits unsettled.
 * `closeAtReady`: the pipe has no use after ready (a worker keeps it to ask
 * for listeners). `what` names the process in that exit's message.
 */
export function parentPipeHandle(o: {
  pidFile: import("./pidfile.ts").PidFileLock;
  what: string;
  closeAtReady: boolean;
  reopen?: () => boolean;
}): import("./stage.ts").DaemonHandle {
  const { writeAll, closeFd } = require("./ffi.ts") as typeof import("./ffi.ts");
  const { DaemonError } = require("./errors.ts") as typeof import("./errors.ts");
  let settled = false;
  const send = (frame: Uint8Array) => writeAll(STAGE_STATUS_FD, frame);
  const fail = (error: unknown, exitCode = 1) => {
    if (settled) return;
    settled = true;
    send(failureFrame(error, exitCode));
  };
  process.once("exit", (code) => {
    if (!settled) fail(new DaemonError("DAEMON_EXITED", `${o.what} exited with status ${code} before it was ready`), code || 1);
  });
  return {
    pid: process.pid,
    pidFile: o.pidFile,
    get settled() {
      return settled;
    },
    ready(stopMs?: number) {
      if (settled) return;
      settled = true;
      send(encodeJson(FRAME_READY, { pid: process.pid, ...(stopMs === undefined ? {} : { stopMs }) }));
      if (o.closeAtReady) closeFd(STAGE_STATUS_FD);
    },
    fail,
    stopping(graceMs: number) {
      if (!settled) send(encodeJson(FRAME_STOPPING, { graceMs: Math.ceil(graceMs) }));
    },
    reopenLog: () => o.reopen?.() ?? false,
  };
}
