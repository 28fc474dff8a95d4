/**
 * The load client (test/load.ts) against small servers started and stopped
 * here: each way a server can end a request must land in its own counter,
 * and the keep-alive behaviours real clients tolerate must not count as
 * failures. No speed thresholds: this machine's load varies.
 */
import { describe, expect, test } from "bun:test";
import type { Socket, TCPSocketListener } from "bun";
import { join } from "node:path";
import { ParseError, ResponseParser, parseArgs, runLoad, type LoadResult, type ParsedResponse } from "./load.ts";

const LOAD = join(import.meta.dir, "load.ts");
const T = 20_000;

function sum(r: Record<string, number>): number {
  return Object.values(r).reduce((a, b) => a + b, 0);
}

/** A raw TCP server; `onRequest` gets each complete request head (we send no bodies). */
function rawServer(onRequest: (s: Socket<{ n: number; buf: string }>, n: number) => void): TCPSocketListener<{ n: number; buf: string }> {
  return Bun.listen<{ n: number; buf: string }>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(s) {
        s.data = { n: 0, buf: "" };
      },
      data(s, d) {
        s.data.buf += d.toString("latin1");
        let end: number;
        while ((end = s.data.buf.indexOf("\r\n\r\n")) >= 0) {
          s.data.buf = s.data.buf.slice(end + 4);
          onRequest(s, ++s.data.n);
        }
      },
      error() {},
    },
  });
}

/** A port nothing listens on (just freed; nothing else here binds ports at random). */
function freePort(): number {
  const l = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = l.port;
  l.stop(true);
  return port;
}

describe("ResponseParser", () => {
  const collect = () => {
    const got: ParsedResponse[] = [];
    return { got, p: new ResponseParser((r) => got.push(r)) };
  };

  test("a response split into single bytes, chunked with extensions and trailers", () => {
    const { got, p } = collect();
    const wire =
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nhel\r\n2\r\nlo\r\n0\r\nX-Trailer: y\r\n\r\n" +
      "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\nConnection: close\r\n\r\ndown";
    for (const b of Buffer.from(wire)) p.feed(Buffer.from([b]));
    expect(got).toEqual([
      { status: 200, close: false, body: "hello" },
      { status: 503, close: true, body: "down" },
    ]);
  });

  test("several responses in one chunk; interim 1xx skipped; EOF-delimited body", () => {
    const { got, p } = collect();
    p.feed(
      Buffer.from(
        "HTTP/1.1 100 Continue\r\n\r\n" +
          "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc" +
          "HTTP/1.1 204 No Content\r\n\r\n" +
          "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n" +
          "HTTP/1.0 200 OK\r\n\r\nuntil",
      ),
    );
    p.feed(Buffer.from("-eof"));
    expect(got.length).toBe(3);
    expect(p.eof()).toBe(true);
    expect(got).toEqual([
      { status: 200, close: false, body: "abc" },
      { status: 204, close: false, body: "" },
      { status: 200, close: false, body: "" },
      { status: 200, close: true, body: "until-eof" },
    ]);
  });

  test("HTTP/1.0 keep-alive, long bodies cut to 64 chars, bad input rejected", () => {
    const { got, p } = collect();
    const long = "é".repeat(100);
    const len = Buffer.byteLength(long);
    p.feed(Buffer.from(`HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: ${len}\r\n\r\n${long}`).subarray(0, 80));
    p.feed(Buffer.from(`HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: ${len}\r\n\r\n${long}`).subarray(80));
    expect(got).toEqual([{ status: 200, close: false, body: "é".repeat(64) }]);
    expect(() => p.feed(Buffer.from("SSH-2.0-OpenSSH\r\n\r\n"))).toThrow(ParseError);
    expect(() => new ResponseParser(() => {}).feed(Buffer.from("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"))).toThrow(ParseError);
    expect(() => new ResponseParser(() => {}).feed(Buffer.from("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"))).toThrow(ParseError);
  });
});

describe("runLoad", () => {
  test(
    "(a) a normal server: no failures, every body counted",
    async () => {
      const srv = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response(String(process.pid)) });
      try {
        const r = await runLoad({ port: srv.port!, durationMs: 1000, keepAlive: 8, fresh: 4 });
        expect(r.failed).toBe(0);
        expect(r.failures).toEqual({});
        expect(r.ok).toBeGreaterThan(0);
        expect(r.bodies).toEqual({ [String(process.pid)]: r.ok });
        expect(r.rps).toBeGreaterThan(0);
        expect(r.latencyMs.max).toBeGreaterThanOrEqual(r.latencyMs.p99);
        expect(r.latencyMs.p99).toBeGreaterThanOrEqual(r.latencyMs.p50);
      } finally {
        srv.stop(true);
      }
    },
    T,
  );

  test(
    "chunked (streamed) responses",
    async () => {
      const enc = new TextEncoder();
      const srv = Bun.serve({
        port: 0,
        hostname: "127.0.0.1",
        fetch: () =>
          new Response(
            new ReadableStream({
              async pull(c) {
                c.enqueue(enc.encode("hel"));
                await Bun.sleep(1);
                c.enqueue(enc.encode("lo"));
                c.close();
              },
            }),
          ),
      });
      try {
        const r = await runLoad({ port: srv.port!, durationMs: 700, keepAlive: 4, fresh: 2 });
        expect(r.failed).toBe(0);
        expect(r.ok).toBeGreaterThan(0);
        expect(r.bodies).toEqual({ hello: r.ok });
      } finally {
        srv.stop(true);
      }
    },
    T,
  );

  test(
    "(b) every 10th response says Connection: close: reconnect, no failure",
    async () => {
      let n = 0;
      const srv = Bun.serve({
        port: 0,
        hostname: "127.0.0.1",
        fetch: () => (++n % 10 === 0 ? new Response("bye", { headers: { Connection: "close" } }) : new Response("ok")),
      });
      try {
        const r = await runLoad({ port: srv.port!, durationMs: 1000, keepAlive: 8, fresh: 0 });
        expect(r.failed).toBe(0);
        expect(r.ok).toBeGreaterThan(20);
        expect(r.bodies.bye).toBeGreaterThan(0);
        expect(r.retried).toBe(0);
      } finally {
        srv.stop(true);
      }
    },
    T,
  );

  test(
    "(c) a server that closes a reused connection under the next request: retried, not failed",
    async () => {
      // One response per connection, no Connection: close; the next request
      // on it is met with a close — the idle-close race, every time.
      const srv = rawServer((s, n) => {
        if (n === 1) s.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        else s.end();
      });
      try {
        const r = await runLoad({ port: srv.port, durationMs: 1000, keepAlive: 8, fresh: 4 });
        expect(r.failures).toEqual({});
        expect(r.failed).toBe(0);
        expect(r.ok).toBeGreaterThan(0);
        expect(r.retried).toBeGreaterThan(0);
        expect(r.bodies).toEqual({ ok: r.ok });
      } finally {
        srv.stop(true);
      }
    },
    T,
  );

  test(
    "(c') a retry that fails is a failure; a connection's first request is never retried",
    async () => {
      // The first connection answers once; every later connection is closed
      // as soon as it sends a request.
      let conns = 0;
      let answered = false;
      const srv = Bun.listen<{ id: number }>({
        hostname: "127.0.0.1",
        port: 0,
        socket: {
          open(s) {
            s.data = { id: ++conns };
          },
          data(s) {
            if (s.data.id === 1 && !answered) {
              answered = true;
              s.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
            } else s.end();
          },
          error() {},
        },
      });
      try {
        const r = await runLoad({ port: srv.port, durationMs: 300, keepAlive: 1, fresh: 0 });
        expect(r.ok).toBe(1);
        expect(r.retried).toBe(1);
        expect(r.failed).toBeGreaterThan(0);
        expect((r.failures.closed ?? 0) + (r.failures.reset ?? 0)).toBe(r.failed);
      } finally {
        srv.stop(true);
      }
    },
    T,
  );

  test(
    "(d) nothing listening: refused, nothing ok",
    async () => {
      const r = await runLoad({ port: freePort(), durationMs: 300, keepAlive: 2, fresh: 2 });
      expect(r.ok).toBe(0);
      expect(r.failures.refused).toBeGreaterThan(0);
      expect(r.failures.refused).toBe(r.failed);
      expect(r.retried).toBe(0);
    },
    T,
  );

  test(
    "(e) a server that drops the connection after reading the request: reset or closed",
    async () => {
      for (const drop of ["terminate", "end"] as const) {
        const srv = rawServer((s) => (drop === "terminate" ? s.terminate() : s.end()));
        try {
          const r = await runLoad({ port: srv.port, durationMs: 500, keepAlive: 0, fresh: 4 });
          expect(r.ok).toBe(0);
          expect(r.failed).toBeGreaterThan(0);
          expect((r.failures.reset ?? 0) + (r.failures.closed ?? 0)).toBe(r.failed);
          if (drop === "end") expect(r.failures.closed).toBe(r.failed);
          expect(r.retried).toBe(0);
        } finally {
          srv.stop(true);
        }
      }
    },
    T,
  );

  test(
    "EOF in the middle of a response is 'closed', even on a reused connection",
    async () => {
      const srv = rawServer((s, n) => {
        if (n === 1) s.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        else {
          s.write("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort");
          s.end();
        }
      });
      try {
        const r = await runLoad({ port: srv.port, durationMs: 300, keepAlive: 2, fresh: 0 });
        expect(r.retried).toBe(0);
        expect(r.failures.closed).toBeGreaterThan(0);
        expect(r.failures.closed).toBe(r.failed);
      } finally {
        srv.stop(true);
      }
    },
    T,
  );

  test(
    "a server that never answers: timeouts, and the run still ends within duration + timeout",
    async () => {
      const srv = rawServer(() => {});
      try {
        const t0 = performance.now();
        const r = await runLoad({ port: srv.port, durationMs: 300, keepAlive: 2, fresh: 2, timeoutMs: 200 });
        const took = performance.now() - t0;
        expect(r.ok).toBe(0);
        expect(r.failures.timeout).toBeGreaterThan(0);
        expect(r.failures.timeout).toBe(r.failed);
        expect(took).toBeLessThan(300 + 200 + 2000);
      } finally {
        srv.stop(true);
      }
    },
    T,
  );

  test(
    "5xx and other statuses are failures of their own kind",
    async () => {
      let n = 0;
      const srv = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response("x", { status: ++n % 2 ? 503 : 404 }) });
      try {
        const r = await runLoad({ port: srv.port!, durationMs: 300, keepAlive: 2, fresh: 1 });
        expect(r.ok).toBe(0);
        expect(r.failures["status-5xx"]).toBeGreaterThan(0);
        expect(r.failures["status-other"]).toBeGreaterThan(0);
        expect(sum(r.failures)).toBe(r.failed);
        expect(r.bodies.x).toBe(r.failed);
      } finally {
        srv.stop(true);
      }
    },
    T,
  );

  test(
    "stopSignal ends the run early",
    async () => {
      const srv = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response("ok") });
      try {
        const ac = new AbortController();
        setTimeout(() => ac.abort(), 300);
        const r = await runLoad({ port: srv.port!, durationMs: 60_000, keepAlive: 2, fresh: 1, stopSignal: ac.signal });
        expect(r.durationMs).toBeLessThan(5000);
        expect(r.ok).toBeGreaterThan(0);
        expect(r.failed).toBe(0);
      } finally {
        srv.stop(true);
      }
    },
    T,
  );
});

describe("CLI", () => {
  test("argument errors", () => {
    expect(parseArgs([])).toBeString();
    expect(parseArgs(["--port", "x"])).toBeString();
    expect(parseArgs(["--port", "80", "--bogus"])).toBeString();
    expect(parseArgs(["--port", "80", "--keep-alive", "0", "--fresh", "0"])).toBeString();
    expect(parseArgs(["--port", "80", "--path", "nope"])).toBeString();
    expect(parseArgs(["--port=8080", "--host", "::1", "--path", "/x", "--duration-ms", "10", "--keep-alive", "3", "--fresh=0", "--timeout-ms", "9"])).toEqual({
      port: 8080,
      host: "::1",
      path: "/x",
      durationMs: 10,
      keepAlive: 3,
      fresh: 0,
      timeoutMs: 9,
    });
  });

  async function cli(args: string[], signalAfterMs?: number): Promise<{ code: number; stdout: string; stderr: string }> {
    const proc = Bun.spawn([process.execPath, LOAD, ...args], { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
    const kill = signalAfterMs === undefined ? undefined : setTimeout(() => proc.kill("SIGTERM"), signalAfterMs);
    const guard = setTimeout(() => proc.kill("SIGKILL"), 15_000);
    try {
      const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
      return { code, stdout, stderr };
    } finally {
      clearTimeout(kill);
      clearTimeout(guard);
      if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
    }
  }

  test(
    "bad arguments exit 2",
    async () => {
      const r = await cli(["--port", "nope"]);
      expect(r.code).toBe(2);
      expect(r.stdout).toBe("");
      expect(r.stderr).toContain("usage:");
    },
    T,
  );

  test(
    "prints one JSON line and exits 0 after the duration; SIGTERM stops it early",
    async () => {
      const srv = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response("cli") });
      try {
        const a = await cli(["--port", String(srv.port), "--duration-ms", "500", "--keep-alive", "4", "--fresh", "2"]);
        expect(a.code).toBe(0);
        expect(a.stdout.trim().split("\n").length).toBe(1);
        const ra = JSON.parse(a.stdout) as LoadResult;
        expect(ra.ok).toBeGreaterThan(0);
        expect(ra.failed).toBe(0);
        expect(ra.bodies).toEqual({ cli: ra.ok });

        const t0 = performance.now();
        const b = await cli(["--port", String(srv.port), "--duration-ms", "60000", "--keep-alive", "2", "--fresh", "1"], 800);
        expect(performance.now() - t0).toBeLessThan(10_000);
        expect(b.code).toBe(0);
        const rb = JSON.parse(b.stdout) as LoadResult;
        expect(rb.durationMs).toBeLessThan(10_000);
        expect(rb.ok).toBeGreaterThan(0);
      } finally {
        srv.stop(true);
      }
    },
    T,
  );
});
