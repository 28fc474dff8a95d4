/**
 * HTTP/1.1 load client for proving that a server replacement (upgrade,
 * rolling restart) drops no request.
 *
 * wrk counts every server-side close as a read error, so it cannot tell a
 * dropped request from an idle keep-alive connection the old server closed.
 * This client speaks raw TCP (Bun.connect) so it sees each connection's
 * life, and behaves like real clients (curl, Go net/http, browsers): a
 * response with `Connection: close` means "reconnect", and a request that a
 * reused keep-alive connection lost before any byte of its answer is retried
 * once on a new connection. Everything else that goes wrong is a failure,
 * counted by kind.
 *
 * CLI: bun test/load.ts --port N [--host H] [--path P] [--duration-ms N]
 *        [--keep-alive N] [--fresh N] [--timeout-ms N]
 * prints the LoadResult as one JSON line; SIGTERM/SIGINT stop it early.
 */
import type { Socket } from "bun";

export interface LoadOptions {
  host?: string;
  port: number;
  path?: string;
  durationMs: number;
  /** Concurrent clients that reuse one connection (default 32). */
  keepAlive?: number;
  /** Concurrent clients that open a new connection per request (default 16). */
  fresh?: number;
  /** Per request, connect included (default 5000). */
  timeoutMs?: number;
  stopSignal?: AbortSignal;
}

export interface LoadResult {
  /** Requests answered 2xx or 3xx. */
  ok: number;
  failed: number;
  /** Requests re-sent on a new connection after a reused one was closed under them (whatever the retry's outcome). */
  retried: number;
  rps: number;
  durationMs: number;
  /** "refused" | "reset" | "closed" | "timeout" | "status-5xx" | "status-other" | "error:<code>" */
  failures: Record<string, number>;
  /** Each distinct response body (first 64 chars), over every complete response. */
  bodies: Record<string, number>;
  /** Over every request, failed ones included; a retried request's time covers both tries. */
  latencyMs: { p50: number; p99: number; max: number };
}

// ---------------------------------------------------------------------------
// Response parser

export interface ParsedResponse {
  status: number;
  /** The server will close the connection after this response. */
  close: boolean;
  /** First 64 characters of the body. */
  body: string;
}

export class ParseError extends Error {}

const enum St {
  Head,
  Body,
  ChunkSize,
  ChunkData,
  ChunkEnd,
  Trailers,
  UntilEof,
}

const CRLF = Buffer.from("\r\n");
const CRLFCRLF = Buffer.from("\r\n\r\n");
const MAX_HEAD = 64 * 1024;
// 64 characters are at most 256 bytes of UTF-8.
const BODY_KEEP = 256;
const EMPTY = Buffer.alloc(0);

/**
 * Incremental HTTP/1.1 response parser: bytes in any fragmentation, several
 * responses in one chunk, Content-Length, chunked, or body-until-EOF.
 */
export class ResponseParser {
  private st = St.Head;
  /** Bytes held back because they end before a delimiter (head, chunk line). */
  private held: Buffer = EMPTY;
  private remaining = 0;
  private status = 0;
  private close = false;
  private parts: Buffer[] = [];
  private kept = 0;

  constructor(private readonly onResponse: (r: ParsedResponse) => void) {}

  feed(chunk: Buffer): void {
    let data = chunk;
    if (this.held.length > 0) {
      data = Buffer.concat([this.held, chunk]);
      this.held = EMPTY;
    }
    let pos = 0;
    const len = data.length;
    while (pos < len) {
      switch (this.st) {
        case St.Head: {
          const end = data.indexOf(CRLFCRLF, pos);
          if (end < 0) {
            if (len - pos > MAX_HEAD) throw new ParseError("response head too large");
            this.hold(data, pos);
            return;
          }
          this.head(data.toString("latin1", pos, end));
          pos = end + 4;
          break;
        }
        case St.Body:
        case St.ChunkData: {
          const n = Math.min(this.remaining, len - pos);
          this.keep(data, pos, pos + n);
          pos += n;
          this.remaining -= n;
          if (this.remaining === 0) {
            if (this.st === St.Body) this.done();
            else this.st = St.ChunkEnd;
          }
          break;
        }
        case St.ChunkSize: {
          const end = data.indexOf(CRLF, pos);
          if (end < 0) {
            if (len - pos > 1024) throw new ParseError("chunk size line too long");
            this.hold(data, pos);
            return;
          }
          const line = data.toString("latin1", pos, end);
          const semi = line.indexOf(";");
          const hex = (semi < 0 ? line : line.slice(0, semi)).trim();
          if (!/^[0-9a-fA-F]{1,12}$/.test(hex)) throw new ParseError(`bad chunk size ${JSON.stringify(line)}`);
          const size = parseInt(hex, 16);
          pos = end + 2;
          if (size === 0) this.st = St.Trailers;
          else {
            this.remaining = size;
            this.st = St.ChunkData;
          }
          break;
        }
        case St.ChunkEnd: {
          if (len - pos < 2) {
            this.hold(data, pos);
            return;
          }
          if (data[pos] !== 13 || data[pos + 1] !== 10) throw new ParseError("missing CRLF after chunk");
          pos += 2;
          this.st = St.ChunkSize;
          break;
        }
        case St.Trailers: {
          const end = data.indexOf(CRLF, pos);
          if (end < 0) {
            if (len - pos > MAX_HEAD) throw new ParseError("trailers too large");
            this.hold(data, pos);
            return;
          }
          const blank = end === pos;
          pos = end + 2;
          if (blank) this.done();
          break;
        }
        case St.UntilEof: {
          this.keep(data, pos, len);
          pos = len;
          break;
        }
      }
    }
    // Body pieces may point into `chunk`; own them in case it is reused.
    if (this.parts.length > 0) this.parts = [Buffer.concat(this.parts)];
  }

  /** The peer closed: a body delimited by EOF is now complete. */
  eof(): boolean {
    if (this.st !== St.UntilEof) return false;
    this.done();
    return true;
  }

  private hold(data: Buffer, pos: number): void {
    this.held = Buffer.from(data.subarray(pos));
  }

  private keep(data: Buffer, from: number, to: number): void {
    if (this.kept >= BODY_KEEP || from === to) return;
    const end = Math.min(to, from + BODY_KEEP - this.kept);
    this.parts.push(data.subarray(from, end));
    this.kept += end - from;
  }

  private head(head: string): void {
    // "HTTP/1.x NNN reason"
    if (!head.startsWith("HTTP/1.") || head.length < 12 || head.charCodeAt(8) !== 32) throw new ParseError(`bad status line ${JSON.stringify(head.slice(0, 40))}`);
    const status = Number(head.slice(9, 12));
    if (!Number.isInteger(status) || status < 100) throw new ParseError(`bad status ${JSON.stringify(head.slice(9, 12))}`);
    let close = head.charCodeAt(7) === 48; // HTTP/1.0 closes unless told otherwise
    let length = -1;
    let chunked = false;
    let at = head.indexOf("\r\n");
    while (at >= 0) {
      const next = head.indexOf("\r\n", at + 2);
      const line = head.slice(at + 2, next < 0 ? undefined : next);
      at = next;
      const colon = line.indexOf(":");
      if (colon <= 0) continue;
      const name = line.slice(0, colon).trim().toLowerCase();
      if (name === "content-length") {
        const v = line.slice(colon + 1).trim();
        if (!/^\d{1,15}$/.test(v)) throw new ParseError(`bad content-length ${JSON.stringify(v)}`);
        length = Number(v);
      } else if (name === "transfer-encoding") {
        chunked = /(?:^|,)\s*chunked\s*$/i.test(line.slice(colon + 1));
      } else if (name === "connection") {
        const tokens = line.slice(colon + 1).toLowerCase().split(",").map((t) => t.trim());
        if (tokens.includes("close")) close = true;
        else if (tokens.includes("keep-alive")) close = false;
      }
    }
    if (status < 200 && status !== 101) return; // interim (100 Continue, 103): the real one follows
    this.status = status;
    this.close = close;
    if (status === 204 || status === 304) this.done();
    else if (chunked) this.st = St.ChunkSize;
    else if (length >= 0) {
      this.remaining = length;
      this.st = St.Body;
      if (length === 0) this.done();
    } else {
      this.close = true;
      this.st = St.UntilEof;
    }
  }

  private done(): void {
    let body = "";
    if (this.parts.length === 1) body = this.parts[0]!.toString("utf8");
    else if (this.parts.length > 1) body = Buffer.concat(this.parts).toString("utf8");
    if (body.length > 64) body = body.slice(0, 64);
    const r: ParsedResponse = { status: this.status, close: this.close, body };
    this.st = St.Head;
    this.parts = [];
    this.kept = 0;
    this.remaining = 0;
    this.onResponse(r);
  }
}

// ---------------------------------------------------------------------------
// Connections

interface Outcome {
  /** "ok" or a failure kind. */
  kind: string;
  /** No byte of the response arrived (what makes a reused connection's loss retryable). */
  early: boolean;
}

const OK: Outcome = { kind: "ok", early: false };

function errKind(e: unknown): string {
  const code = (e as { code?: unknown } | null)?.code;
  if (code === "ECONNREFUSED") return "refused";
  if (code === "ECONNRESET") return "reset";
  return `error:${typeof code === "string" && code ? code : "unknown"}`;
}

const handlers = {
  open(s: Socket<Conn>) {
    s.data.opened(s);
  },
  data(s: Socket<Conn>, d: Buffer) {
    s.data.received(d);
  },
  drain(s: Socket<Conn>) {
    s.data.flush();
  },
  close(s: Socket<Conn>, e?: Error) {
    s.data.closed(e);
  },
  // Only reached if one of the handlers above throws: that is a bug here,
  // but it still must end the request rather than hang it.
  error(s: Socket<Conn>, e: Error) {
    s.data.settle({ kind: `error:${(e as { code?: string }).code ?? "handler"}`, early: false });
    s.terminate();
  },
};

class Conn {
  private sock: Socket<Conn> | undefined;
  private connecting = false;
  /** Closed, or must not carry another request. */
  dead = false;
  /** Requests sent on this connection, the current one included. */
  requests = 0;
  deadline = 0;
  private resolve: ((o: Outcome) => void) | null = null;
  private gotByte = false;
  private out: Buffer = EMPTY;
  private readonly parser: ResponseParser;

  constructor(private readonly run: Runner) {
    this.parser = new ResponseParser((r) => this.response(r));
  }

  send(req: Buffer): Promise<Outcome> {
    this.requests++;
    this.gotByte = false;
    this.deadline = performance.now() + this.run.timeoutMs;
    return new Promise<Outcome>((resolve) => {
      this.resolve = resolve;
      this.run.inflight.add(this);
      this.out = req;
      if (this.dead) this.settle({ kind: "closed", early: true });
      else if (this.sock) this.flush();
      else if (!this.connecting) this.connect();
    });
  }

  private connect(): void {
    this.connecting = true;
    const failed = (e: unknown) => {
      this.connecting = false;
      this.dead = true;
      this.settle({ kind: errKind(e), early: true });
    };
    try {
      Bun.connect<Conn>({ hostname: this.run.host, port: this.run.port, data: this, socket: handlers }).catch(failed);
    } catch (e) {
      failed(e);
    }
  }

  opened(s: Socket<Conn>): void {
    this.connecting = false;
    this.sock = s;
    if (this.dead) s.terminate(); // timed out while connecting
    else this.flush();
  }

  flush(): void {
    if (!this.sock || this.out.length === 0) return;
    const n = this.sock.write(this.out);
    if (n < 0) {
      this.dead = true;
      this.settle({ kind: "closed", early: !this.gotByte });
      this.sock.terminate();
      return;
    }
    this.out = n >= this.out.length ? EMPTY : this.out.subarray(n);
  }

  received(d: Buffer): void {
    if (!this.resolve) {
      // Bytes nobody asked for: the connection's framing can't be trusted.
      this.abandon();
      return;
    }
    this.gotByte = true;
    try {
      this.parser.feed(d);
    } catch (e) {
      this.settle({ kind: e instanceof ParseError ? "error:EPROTO" : errKind(e), early: false });
      this.abandon();
    }
  }

  private response(r: ParsedResponse): void {
    if (!this.resolve) {
      this.abandon();
      return;
    }
    this.run.countBody(r.body);
    if (r.close) this.dead = true;
    const st = r.status;
    this.settle(st >= 200 && st < 400 ? OK : { kind: st >= 500 && st < 600 ? "status-5xx" : "status-other", early: false });
  }

  closed(e?: Error): void {
    this.dead = true;
    this.sock = undefined;
    this.connecting = false;
    if (!this.resolve) return;
    if (this.parser.eof()) return;
    this.settle({ kind: e ? errKind(e) : "closed", early: !this.gotByte });
  }

  settle(o: Outcome): void {
    const resolve = this.resolve;
    if (!resolve) return;
    this.resolve = null;
    this.out = EMPTY;
    this.run.inflight.delete(this);
    resolve(o);
  }

  timeout(): void {
    this.dead = true;
    this.settle({ kind: "timeout", early: false });
    this.sock?.terminate();
  }

  /** Done with it: a graceful close, the response (if any) is complete. */
  end(): void {
    this.dead = true;
    this.sock?.end();
  }

  private abandon(): void {
    this.dead = true;
    this.sock?.terminate();
  }
}

// ---------------------------------------------------------------------------
// Latency histogram: exact below 1024 µs, then 512 sub-buckets per power of
// two (0.2% resolution) — bounded memory however long the run.

const SUB = 512;
const EXACT = 1024;

class Histogram {
  private readonly counts = new Uint32Array(EXACT + 40 * SUB);
  private n = 0;
  maxUs = 0;

  add(us: number): void {
    const v = Math.max(0, Math.round(us));
    if (v > this.maxUs) this.maxUs = v;
    this.n++;
    let i: number;
    if (v < EXACT) i = v;
    else {
      const e = Math.floor(Math.log2(v)) - 9; // v / 2^e lands in [512, 1024)
      i = EXACT + (e - 1) * SUB + (Math.floor(v / 2 ** e) - SUB);
    }
    this.counts[Math.min(i, this.counts.length - 1)]!++;
  }

  /** The value at quantile q, in µs (bucket midpoint). */
  quantile(q: number): number {
    if (this.n === 0) return 0;
    const rank = Math.max(1, Math.ceil(q * this.n));
    let seen = 0;
    for (let i = 0; i < this.counts.length; i++) {
      seen += this.counts[i]!;
      if (seen >= rank) {
        if (i < EXACT) return i;
        const e = Math.floor((i - EXACT) / SUB) + 1;
        const low = ((i - EXACT) % SUB) + SUB;
        return Math.min(this.maxUs, low * 2 ** e + 2 ** (e - 1));
      }
    }
    return this.maxUs;
  }
}

// ---------------------------------------------------------------------------
// The run

class Runner {
  readonly host: string;
  readonly port: number;
  readonly timeoutMs: number;
  readonly inflight = new Set<Conn>();
  stopped = false;
  ok = 0;
  failed = 0;
  retried = 0;
  readonly failures = new Map<string, number>();
  readonly bodies = new Map<string, number>();
  readonly latency = new Histogram();
  private readonly keepAliveReq: Buffer;
  private readonly closeReq: Buffer;

  constructor(o: LoadOptions) {
    this.host = o.host ?? "127.0.0.1";
    this.port = o.port;
    this.timeoutMs = o.timeoutMs ?? 5000;
    const path = o.path ?? "/";
    const hostHeader = this.host.includes(":") ? `[${this.host}]:${this.port}` : `${this.host}:${this.port}`;
    this.keepAliveReq = Buffer.from(`GET ${path} HTTP/1.1\r\nHost: ${hostHeader}\r\n\r\n`, "latin1");
    this.closeReq = Buffer.from(`GET ${path} HTTP/1.1\r\nHost: ${hostHeader}\r\nConnection: close\r\n\r\n`, "latin1");
  }

  countBody(body: string): void {
    this.bodies.set(body, (this.bodies.get(body) ?? 0) + 1);
  }

  private record(o: Outcome, t0: number): void {
    this.latency.add((performance.now() - t0) * 1000);
    if (o.kind === "ok") this.ok++;
    else {
      this.failed++;
      this.failures.set(o.kind, (this.failures.get(o.kind) ?? 0) + 1);
    }
  }

  sweep(now: number): void {
    for (const c of this.inflight) if (now >= c.deadline) c.timeout();
  }

  timeoutAll(): void {
    for (const c of [...this.inflight]) c.timeout();
  }

  async keepAliveClient(): Promise<void> {
    let c: Conn | null = null;
    while (!this.stopped) {
      if (c === null || c.dead) c = new Conn(this);
      const reused = c.requests > 0;
      const t0 = performance.now();
      let o = await c.send(this.keepAliveReq);
      // The idle-close race: the server closed a reused connection before it
      // could have seen the request. Safe to repeat once (GET is idempotent).
      if (o.kind !== "ok" && o.kind !== "timeout" && reused && o.early) {
        this.retried++;
        c.end();
        c = new Conn(this);
        o = await c.send(this.keepAliveReq);
      }
      this.record(o, t0);
      if (c.dead) {
        c.end();
        c = null;
      }
    }
    c?.end();
  }

  async freshClient(): Promise<void> {
    while (!this.stopped) {
      const c = new Conn(this);
      const t0 = performance.now();
      const o = await c.send(this.closeReq);
      this.record(o, t0);
      c.end();
    }
  }
}

export async function runLoad(o: LoadOptions): Promise<LoadResult> {
  const r = new Runner(o);
  const keepAlive = o.keepAlive ?? 32;
  const fresh = o.fresh ?? 16;
  const start = performance.now();
  const sweepEvery = Math.max(5, Math.min(100, r.timeoutMs / 10));
  const sweeper = setInterval(() => r.sweep(performance.now()), sweepEvery);
  let hardStop: ReturnType<typeof setTimeout> | undefined;
  const stop = () => {
    if (r.stopped) return;
    r.stopped = true;
    // In-flight requests get their timeout and not a moment more, whatever
    // the sweeper's granularity.
    hardStop = setTimeout(() => r.timeoutAll(), r.timeoutMs);
  };
  const timer = setTimeout(stop, o.durationMs);
  if (o.stopSignal?.aborted) stop();
  o.stopSignal?.addEventListener("abort", stop);
  try {
    const clients: Promise<void>[] = [];
    for (let i = 0; i < keepAlive; i++) clients.push(r.keepAliveClient());
    for (let i = 0; i < fresh; i++) clients.push(r.freshClient());
    await Promise.all(clients);
  } finally {
    clearTimeout(timer);
    clearTimeout(hardStop);
    clearInterval(sweeper);
    o.stopSignal?.removeEventListener("abort", stop);
  }
  const elapsed = performance.now() - start;
  const ms = (us: number) => Math.round(us) / 1000;
  return {
    ok: r.ok,
    failed: r.failed,
    retried: r.retried,
    rps: elapsed > 0 ? Math.round((r.ok * 1000) / elapsed) : 0,
    durationMs: Math.round(elapsed),
    failures: Object.fromEntries(r.failures),
    bodies: Object.fromEntries(r.bodies),
    latencyMs: { p50: ms(r.latency.quantile(0.5)), p99: ms(r.latency.quantile(0.99)), max: ms(r.latency.maxUs) },
  };
}

// ---------------------------------------------------------------------------
// CLI

const USAGE = "usage: bun test/load.ts --port N [--host H] [--path P] [--duration-ms N] [--keep-alive N] [--fresh N] [--timeout-ms N]";

/** The options from CLI arguments, or an error message. */
export function parseArgs(argv: string[]): LoadOptions | string {
  const o: LoadOptions = { port: 0, durationMs: 5000 };
  let havePort = false;
  const int = (flag: string, v: string, min: number, max: number): number | string => {
    if (!/^\d+$/.test(v)) return `${flag}: not a whole number: ${JSON.stringify(v)}`;
    const n = Number(v);
    if (n < min || n > max) return `${flag}: ${n} is outside ${min}..${max}`;
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const eq = arg.indexOf("=");
    const flag = eq > 0 ? arg.slice(0, eq) : arg;
    let value: string | undefined;
    const takeValue = (): string | undefined => (eq > 0 ? arg.slice(eq + 1) : argv[++i]);
    switch (flag) {
      case "--port":
      case "--duration-ms":
      case "--keep-alive":
      case "--fresh":
      case "--timeout-ms": {
        value = takeValue();
        if (value === undefined) return `${flag} needs a value`;
        const limits: Record<string, [number, number]> = {
          "--port": [1, 65535],
          "--duration-ms": [1, 86_400_000],
          "--keep-alive": [0, 10_000],
          "--fresh": [0, 10_000],
          "--timeout-ms": [1, 3_600_000],
        };
        const [min, max] = limits[flag]!;
        const n = int(flag, value, min, max);
        if (typeof n === "string") return n;
        if (flag === "--port") {
          o.port = n;
          havePort = true;
        } else if (flag === "--duration-ms") o.durationMs = n;
        else if (flag === "--keep-alive") o.keepAlive = n;
        else if (flag === "--fresh") o.fresh = n;
        else o.timeoutMs = n;
        break;
      }
      case "--host":
      case "--path":
        value = takeValue();
        if (!value) return `${flag} needs a value`;
        if (/[\s\r\n]/.test(value)) return `${flag}: must not contain whitespace`;
        if (flag === "--path") {
          if (!value.startsWith("/")) return "--path must start with /";
          o.path = value;
        } else o.host = value;
        break;
      default:
        return `unknown argument ${JSON.stringify(arg)}`;
    }
  }
  if (!havePort) return "--port is required";
  if ((o.keepAlive ?? 32) + (o.fresh ?? 16) === 0) return "--keep-alive and --fresh are both 0: no clients";
  return o;
}

if (import.meta.main) {
  const parsed = parseArgs(process.argv.slice(2));
  if (typeof parsed === "string") {
    process.stderr.write(`load: ${parsed}\n${USAGE}\n`);
    process.exit(2);
  }
  const ac = new AbortController();
  process.on("SIGTERM", () => ac.abort());
  process.on("SIGINT", () => ac.abort());
  const result = await runLoad({ ...parsed, stopSignal: ac.signal });
  process.stdout.write(`${JSON.stringify(result)}\n`);
  // Lingering sockets (ends not yet acknowledged) must not keep us alive.
  process.exit(0);
}
