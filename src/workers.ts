/**
 * The primary of DaemonConfig.workers: starts N workers (fresh execs of the
 * program in the worker stage), gives them the listeners it owns, replaces
 * one that dies (with a backoff, up to a crash limit), replaces them one at
 * a time on reload, and drains them all at stop. It loads none of the app.
 */
import { cpus } from "node:os";
import { DaemonError, errorText } from "./errors.ts";
import { closeFd, pipe, sendFds, socketPair } from "./ffi.ts";
import { HANDOVER_ENV, takeListener } from "./listeners.ts";
import type { Logger } from "./log.ts";
import { STAGE_MARKER } from "./marker.ts";
import { SUPERVISOR_ENV } from "./notify.ts";
import {
  FRAME_FAILED, FRAME_LISTEN, FRAME_READY, FRAME_STOPPING, FrameReader, payloadJson, type FailureMessage, type ListenMessage, type ReadyMessage,
} from "./protocol.ts";
import { programArgv, startEnvironment, UPGRADE_ENV } from "./upgrade.ts";
import { WORKER_ENV, type ListenAnswer } from "./worker.ts";
import type { WorkerRecord } from "./state.ts";

/** First wait before a crashed worker is started again; doubled per crash in a row of that id. */
export const RESTART_BACKOFF_MS = 100;
/** The longest wait between restarts. */
export const MAX_BACKOFF_MS = 30_000;
/** More crashes than this of one worker id within CRASH_WINDOW_MS stop the daemon. */
export const CRASH_LIMIT = 5;
export const CRASH_WINDOW_MS = 60_000;


/** DaemonConfig.workers resolved: "auto" is the CPU count. */
export function resolveWorkers(n: number | "auto"): number {
  if (n !== "auto") return n;
  let count = 0;
  try {
    count = typeof navigator !== "undefined" && navigator.hardwareConcurrency > 0 ? navigator.hardwareConcurrency : cpus().length;
  } catch {}
  return Math.max(1, count);
}

export interface PoolOptions {
  count: number;
  mode: "daemon" | "foreground";
  log: Logger;
  /** ms a worker has to be ready. */
  readyTimeout: number;
  /** ms a worker asked to stop may take before it is SIGKILLed, until it says its own at ready. */
  defaultStopMs: number;
  /** A worker started, became ready, stopped or exited: the state file's record. */
  changed(): void;
  /** The crash limit was passed: the daemon must stop and exit non-zero. */
  giveUp(reason: string): void;
}

type Outcome = { ok: true } | { ok: false; error: string };

interface Worker {
  id: number;
  proc: ReturnType<typeof Bun.spawn>;
  state: WorkerRecord["state"];
  startedAt: number;
  readyAt?: number;
  /** Asked to stop (reload, stop): its exit is no crash. */
  asked: boolean;
  /** The primary's end of the worker channel. */
  channel: number;
  ready: Promise<Outcome>;
  /** Extra grace it announced while stopping before ready (FRAME_STOPPING). */
  graceMs: number;
  /** The longest its stop takes, as it said at ready. */
  stopMs?: number;
}

interface Slot {
  id: number;
  current: Worker | undefined;
  restarts: number;
  /** Crashes in a row (reset once a worker of this id ran CRASH_WINDOW_MS). */
  streak: number;
  crashes: number[];
  timer: ReturnType<typeof setTimeout> | undefined;
}

const describeExit = (p: ReturnType<typeof Bun.spawn>) => (p.signalCode ? `killed by ${p.signalCode}` : `exited with status ${p.exitCode}`);

export class WorkerPool {
  private readonly slots: Slot[];
  /** Every worker process alive, current or not (a reload's old one, draining). */
  private readonly live = new Set<Worker>();
  private stopping = false;
  /** Starting: a worker that fails fails the start instead of being replaced. */
  private starting = true;

  constructor(private readonly o: PoolOptions) {
    this.slots = Array.from({ length: o.count }, (_, i) => ({ id: i + 1, current: undefined, restarts: 0, streak: 0, crashes: [], timer: undefined }));
  }

  /** The workers for `status`, by id. */
  records(): WorkerRecord[] {
    const out: WorkerRecord[] = [];
    for (const s of this.slots) {
      const w = s.current;
      if (w) out.push({ id: s.id, pid: w.proc.pid, state: w.state, startedAt: new Date(w.startedAt).toISOString(), restarts: s.restarts });
    }
    return out;
  }

  /** The longest stopping every worker takes (they stop side by side), as they said at ready. */
  stopBudget(): number {
    let most = 0;
    for (const s of this.slots) most = Math.max(most, (s.current?.stopMs ?? this.o.defaultStopMs) + 1000);
    return most;
  }

  /** Every worker pid alive. */
  pids(): number[] {
    return [...this.live].map((w) => w.proc.pid);
  }

  /** Start every worker; resolves when all are ready. Throws INIT_FAILED with the first failure (the others are stopped). */
  async start(): Promise<void> {
    const started = this.slots.map((s) => {
      s.current = this.spawn(s.id);
      return s.current.ready.then((r) => ({ id: s.id, r }));
    });
    let failure: { id: number; error: string } | undefined;
    // The first failure ends the wait: the others need not finish starting.
    await new Promise<void>((resolve) => {
      let left = started.length;
      for (const p of started) {
        void p.then(({ id, r }) => {
          if (!r.ok && !failure) {
            failure = { id, error: r.error };
            resolve();
          }
          if (--left === 0) resolve();
        });
      }
    });
    if (failure) throw new DaemonError("INIT_FAILED", `worker ${failure.id}: ${failure.error}`);
    this.starting = false;
    this.o.log.info(`${this.o.count} worker${this.o.count === 1 ? "" : "s"} ready (pids ${this.slots.map((s) => s.current?.proc.pid).join(", ")})`);
  }

  /**
   * Rolling reload: per id, a new worker starts; once it is ready the old
   * one drains and exits, then the next id. Returns undefined when every
   * worker was replaced, else why not (the old worker of that id and those
   * after it keep serving).
   */
  async reload(): Promise<string | undefined> {
    for (const s of this.slots) {
      if (this.stopping) return "cut off by the stop";
      const old = s.current;
      // Dead and waiting for its restart, which starts the new code anyway.
      if (!old || old.state !== "running") continue;
      const next = this.spawn(s.id);
      const r = await next.ready;
      if (!r.ok) {
        const error = `worker ${s.id}: ${r.error}`;
        this.o.log.error(`reload: the new worker ${s.id} failed; the old one (pid ${old.proc.pid}) keeps serving: ${r.error}`);
        return error;
      }
      if (this.stopping) return "cut off by the stop";
      // The old one may have died meanwhile (and been replaced by a restart): then the new one goes.
      if (s.current !== old) {
        await this.retire(next);
        continue;
      }
      s.current = next;
      this.o.changed();
      await this.retire(old);
    }
    return undefined;
  }

  /** Drain every worker: SIGTERM, then SIGKILL after the stop timeout. */
  async stop(): Promise<void> {
    this.stopping = true;
    for (const s of this.slots) clearTimeout(s.timer);
    await Promise.all([...this.live].map((w) => this.retire(w)));
  }

  /** Pass a signal on (SIGUSR1: reopen the log file). */
  signal(sig: NodeJS.Signals): void {
    for (const w of this.live) {
      try {
        w.proc.kill(sig);
      } catch {}
    }
  }

  /** Ask `w` to stop and wait for its exit. */
  private async retire(w: Worker): Promise<void> {
    w.asked = true;
    if (w.proc.exitCode !== null || w.proc.signalCode !== null) return;
    w.state = "stopping";
    this.o.changed();
    try {
      w.proc.kill("SIGTERM");
    } catch {}
    // Its own budget, and a second for the exit itself.
    const budget = (w.stopMs ?? this.o.defaultStopMs) + w.graceMs + 1000;
    const done = await Promise.race([w.proc.exited.then(() => true), Bun.sleep(budget).then(() => false)]);
    if (!done) {
      this.o.log.warn(`worker ${w.id} (pid ${w.proc.pid}) did not exit within ${budget} ms of SIGTERM; SIGKILL`);
      try {
        w.proc.kill("SIGKILL");
      } catch {}
      await w.proc.exited;
    }
  }

  private spawn(id: number): Worker {
    let statusR = -1;
    let statusW = -1;
    let mine = -1;
    let theirs = -1;
    try {
      [statusR, statusW] = pipe(`worker ${id}: create the status pipe`);
      [mine, theirs] = socketPair("STAGE", `worker ${id}: create its channel`);
      const env = startEnvironment();
      // The primary is the service: only it talks to the supervisor, takes sockets from it, or is upgraded.
      for (const k of [...SUPERVISOR_ENV, "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", HANDOVER_ENV, UPGRADE_ENV]) delete env[k];
      env[WORKER_ENV] = `${id}:${this.o.count}:${process.pid}:${this.o.mode}`;
      const proc = Bun.spawn(programArgv(), { argv0: STAGE_MARKER, env, stdio: ["ignore", 1, 2, statusW, theirs] as never });
      closeFd(statusW);
      closeFd(theirs);
      statusW = theirs = -1;
      const w: Worker = { id, proc, state: "starting", startedAt: Date.now(), asked: false, channel: mine, graceMs: 0, ready: Promise.resolve({ ok: true }) };
      w.ready = this.follow(w, statusR);
      this.live.add(w);
      this.o.changed();
      void proc.exited.then(() => this.exited(w));
      return w;
    } catch (err) {
      for (const fd of [statusR, statusW, mine, theirs]) if (fd >= 0) closeFd(fd);
      const error = `cannot start worker ${id}: ${errorText(err)}`;
      return { id, proc: deadProc, state: "starting", startedAt: Date.now(), asked: false, channel: -1, graceMs: 0, ready: Promise.resolve({ ok: false, error }) };
    }
  }

  /** Read the worker's frames until its end: readiness, failure, listener requests. Resolves with its start's outcome. */
  private follow(w: Worker, statusR: number): Promise<Outcome> {
    return new Promise<Outcome>((resolve) => {
      let settled = false;
      const settle = (r: Outcome) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(r);
      };
      const timer =
        this.o.readyTimeout > 0
          ? setTimeout(() => {
              settle({ ok: false, error: `not ready within ${this.o.readyTimeout} ms; stopped it. Raise --ready-timeout if its init is slow` });
              // Not retire(): that would make its exit an asked one, and a restart's replacement that hangs is a crash.
              kill(w.proc, this.o.defaultStopMs);
            }, this.o.readyTimeout)
          : undefined;
      const frames = new FrameReader();
      void (async () => {
        try {
          for await (const chunk of Bun.file(statusR).stream()) {
            for (const f of frames.push(chunk)) {
              if (f.type === FRAME_READY) {
                const stopMs = payloadJson<ReadyMessage>(f).stopMs;
                if (typeof stopMs === "number" && Number.isFinite(stopMs) && stopMs >= 0) w.stopMs = stopMs;
                w.state = "running";
                w.readyAt = Date.now();
                this.o.changed();
                settle({ ok: true });
              } else if (f.type === FRAME_FAILED) settle({ ok: false, error: payloadJson<FailureMessage>(f).message });
              else if (f.type === FRAME_STOPPING) w.graceMs = payloadJson<{ graceMs: number }>(f).graceMs;
              else if (f.type === FRAME_LISTEN) this.answer(w, payloadJson<ListenMessage>(f));
            }
          }
        } catch {}
        closeFd(statusR);
        await w.proc.exited;
        settle({ ok: false, error: `exited before it was ready (${describeExit(w.proc)})` });
      })();
    });
  }

  /** A worker's ctx.serve asks for a listener: ours (bound, activated or handed over on first request), or why not. */
  private answer(w: Worker, req: ListenMessage): void {
    let fd: number | undefined;
    let a: ListenAnswer;
    try {
      fd = takeListener({ name: String(req.name), address: req.address, backlog: Number(req.backlog) }).fd;
      a = { ok: true };
    } catch (err) {
      const code = err instanceof DaemonError ? err.code : "LISTEN";
      a = { ok: false, code, message: errorText(err) };
    }
    if (!sendFds(w.channel, Buffer.from(JSON.stringify(a)), fd === undefined ? [] : [fd])) {
      this.o.log.warn(`worker ${w.id} (pid ${w.proc.pid}): could not send it listener "${req.name}"`);
    }
  }

  private exited(w: Worker): void {
    this.live.delete(w);
    if (w.channel >= 0) closeFd(w.channel);
    w.channel = -1;
    const slot = this.slots[w.id - 1]!;
    const wasCurrent = slot.current === w;
    if (w.asked || this.stopping || !wasCurrent) {
      this.o.changed();
      return;
    }
    // Nobody asked: a crash. At start the start fails instead (follow() reports it).
    if (this.starting && w.readyAt === undefined) return;
    slot.current = undefined;
    slot.restarts++;
    const now = Date.now();
    if (w.readyAt !== undefined && now - w.readyAt >= CRASH_WINDOW_MS) slot.streak = 0;
    slot.crashes = slot.crashes.filter((t) => now - t < CRASH_WINDOW_MS);
    slot.crashes.push(now);
    this.o.changed();
    if (slot.crashes.length > CRASH_LIMIT) {
      this.o.giveUp(`worker ${w.id} crashed ${slot.crashes.length} times within ${CRASH_WINDOW_MS / 1000} s (last: pid ${w.proc.pid} ${describeExit(w.proc)})`);
      return;
    }
    const delay = Math.min(MAX_BACKOFF_MS, RESTART_BACKOFF_MS * 2 ** slot.streak);
    slot.streak++;
    this.o.log.warn(`worker ${w.id} (pid ${w.proc.pid}) ${describeExit(w.proc)}${w.state === "starting" ? " before it was ready" : ""}; starting a new one in ${delay} ms`);
    slot.timer = setTimeout(() => {
      slot.timer = undefined;
      if (this.stopping) return;
      const next = this.spawn(w.id);
      slot.current = next;
      void next.ready.then((r) => {
        if (r.ok) this.o.log.info(`worker ${w.id} replaced by pid ${next.proc.pid}`);
        // A replacement that cannot start is one more crash (its exit comes through exited()).
        else if (next.proc === deadProc) this.exited(next);
      });
    }, delay);
  }
}

/** SIGTERM, and SIGKILL `graceMs` later if it is still there. */
function kill(p: ReturnType<typeof Bun.spawn>, graceMs: number): void {
  try {
    p.kill("SIGTERM");
  } catch {}
  const t = setTimeout(() => {
    try {
      p.kill("SIGKILL");
    } catch {}
  }, graceMs);
  void p.exited.then(() => clearTimeout(t));
}

/** Stands in for a process that could not be spawned. */
const deadProc = { pid: 0, exitCode: 1, signalCode: null, exited: Promise.resolve(1), kill() {} } as unknown as ReturnType<typeof Bun.spawn>;
