/**
 * ctx.serve's mechanism, and the Bun facts it relies on: Bun.serve opens one
 * listening socket, registered in one epoll set that /proc/self/fdinfo
 * shows, and accepts on whatever that fd number names. If a Bun release
 * changes any of this, these tests fail (and ctx.serve throws SERVE).
 */
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { join } from "node:path";
import { DaemonError } from "../src/errors.ts";
import { drainAll, serve } from "../src/serve.ts";
import { BUN, cleanupProcesses, freePort, ROOT, track, waitFor } from "./helpers.ts";

cleanupProcesses();

/** Inodes of this process's sockets. */
function socketInodes(): Set<string> {
  const out = new Set<string>();
  for (const fd of readdirSync("/proc/self/fd")) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/self/fd/${fd}`));
      if (m) out.add(m[1]!);
    } catch {}
  }
  return out;
}

/** Ports this process listens on (TCP, v4 and v6), from /proc/net/tcp*. */
function listeningPorts(): number[] {
  const mine = socketInodes();
  const ports: number[] = [];
  for (const f of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    for (const line of readFileSync(f, "utf8").split("\n").slice(1)) {
      const c = line.trim().split(/\s+/);
      if (c[3] === "0A" && mine.has(c[9]!)) ports.push(parseInt(c[1]!.split(":")[1]!, 16));
    }
  }
  return ports.sort();
}

describe("the Bun facts ctx.serve relies on", () => {
  test("Bun.serve opens exactly one listening socket and registers it in exactly one epoll set, listed in /proc/self/fdinfo", () => {
    const before = socketInodes();
    const s = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("x") });
    try {
      const fresh = readdirSync("/proc/self/fd").filter((fd) => {
        try {
          const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/self/fd/${fd}`));
          return m !== null && !before.has(m[1]!);
        } catch {
          return false;
        }
      });
      expect(fresh.length).toBe(1);
      let entries = 0;
      for (const fd of readdirSync("/proc/self/fd")) {
        let t = "";
        try {
          t = readlinkSync(`/proc/self/fd/${fd}`);
        } catch {}
        if (t !== "anon_inode:[eventpoll]") continue;
        entries += readFileSync(`/proc/self/fdinfo/${fd}`, "utf8").split("\n").filter((l) => new RegExp(`^tfd:\\s*${fresh[0]}\\s+events:\\s*[0-9a-f]+\\s+data:\\s*[0-9a-f]+`).test(l)).length;
      }
      expect(entries).toBe(1);
    } finally {
      s.stop(true);
    }
  });
});

describe("serve()", () => {
  test("serves on the daemon's socket: the Server reports its port and url, a client is answered there, and no other port listens", async () => {
    const port = freePort();
    const before = listeningPorts();
    const s = serve({ name: `t${port}`, hostname: "127.0.0.1", port, fetch: (req) => new Response(`hello ${new URL(req.url).pathname}`) });
    try {
      expect(s.port).toBe(port);
      expect(s.url.href).toBe(`http://127.0.0.1:${port}/`);
      expect(await (await fetch(`http://127.0.0.1:${port}/x`)).text()).toBe("hello /x");
      // Bun's throw-away socket is closed: the only new listener is ours.
      expect(listeningPorts().filter((p) => !before.includes(p))).toEqual([port]);
    } finally {
      await drainAll(100);
    }
  });

  test("drain: responses say Connection: close, and once drained this process accepts no more (the socket stays open for the next process)", async () => {
    const port = freePort();
    const s = serve({ name: `d${port}`, hostname: "127.0.0.1", port, drain: 300, fetch: () => new Response("ok") });
    expect(s.port).toBe(port);
    const r1 = await fetch(`http://127.0.0.1:${port}/`);
    expect(r1.headers.get("connection")).not.toBe("close");
    await r1.text();
    // A keep-alive connection opened before the drain, used during it.
    let got = "";
    const conn = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data(_s, d) { got += d.toString(); } } });
    conn.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    expect(await waitFor(() => got.includes("\r\n\r\nok"), 5000)).toBe(true);
    expect(got.toLowerCase()).not.toContain("connection: close");
    got = "";
    const drained = drainAll(1000);
    conn.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    expect(await waitFor(() => got.includes("\r\n\r\nok"), 5000)).toBe(true);
    expect(got.toLowerCase()).toContain("connection: close");
    conn.end();
    await drained;
    // Not accepted here any more, but still listening: a connection waits in the queue for the next process.
    let answered = false;
    const late = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() { answered = true; } } });
    late.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    await Bun.sleep(300);
    expect(answered).toBe(false);
    late.end();
    expect(listeningPorts()).toContain(port);
  });

  test("bad options are USAGE errors that say what to give; a port in use is a LISTEN error naming the address and EADDRINUSE", () => {
    const msg = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        return `${(e as DaemonError).code}: ${(e as Error).message}`;
      }
      return "no error";
    };
    expect(msg(() => serve({ unix: "/tmp/x.sock", fetch: () => new Response("") } as never))).toContain("USAGE: ctx.serve: unix sockets are not handed over");
    expect(msg(() => serve({ name: "h1", hostname: "example.com", port: 1, fetch: () => new Response("") }))).toContain("is not an IP address");
    expect(msg(() => serve({ name: "a:b", port: 1, fetch: () => new Response("") }))).toContain("USAGE: ctx.serve: name \"a:b\"");
    const taken = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    try {
      const m = msg(() => serve({ name: "busy", hostname: "127.0.0.1", port: taken.port, fetch: () => new Response("") }));
      expect(m).toContain(`LISTEN: listen on 127.0.0.1:${taken.port}`);
      expect(m).toContain("EADDRINUSE");
    } finally {
      taken.stop(true);
    }
  });
});

describe("socket activation", () => {
  test("under systemd-socket-activate, ctx.serve takes the passed socket by its name instead of binding", async () => {
    if (!Bun.which("systemd-socket-activate")) throw new Error("systemd-socket-activate is missing: apt-get install systemd");
    const port = freePort();
    const dir = require("node:fs").mkdtempSync("/tmp/bd-act-");
    const p = Bun.spawn(["systemd-socket-activate", "-l", `127.0.0.1:${port}`, "--fdname=http", "-E", `BD_SERVE_DIR=${dir}`, "-E", `BD_PORT=${port}`, "-E", "BD_NAME=act", BUN, join(ROOT, "test/fixtures/serve-app.ts"), "run", "--pid-file", join(dir, "act.pid")], { stdout: "ignore", stderr: "pipe" });
    track(p.pid);
    try {
      // The first connection starts the program (systemd-socket-activate execs it in place, so the pid stays).
      let body = "";
      await waitFor(async () => {
        try {
          body = await (await fetch(`http://127.0.0.1:${port}/`)).text();
          return true;
        } catch {
          return false;
        }
      }, 15_000, 50);
      expect(body).toBe(`v1 pid ${p.pid}\n`);
      // It holds the activation socket and no socket of its own on the port.
      const fds = readdirSync(`/proc/${p.pid}/fd`).map((fd) => {
        try {
          return readlinkSync(`/proc/${p.pid}/fd/${fd}`);
        } catch {
          return "";
        }
      });
      const listening = new Set<string>();
      for (const f of ["/proc/net/tcp", "/proc/net/tcp6"]) {
        for (const line of readFileSync(f, "utf8").split("\n").slice(1)) {
          const c = line.trim().split(/\s+/);
          if (c[3] === "0A" && parseInt(c[1]?.split(":")[1] ?? "0", 16) === port) listening.add(`socket:[${c[9]}]`);
        }
      }
      // One socket listens on the port: the one systemd-socket-activate passed, held by the daemon.
      expect(listening.size).toBe(1);
      expect(fds).toContain([...listening][0]!);
    } finally {
      p.kill("SIGTERM");
      await p.exited;
      require("node:fs").rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);
});

describe("the stop budget", () => {
  test("a daemon serving through ctx.serve counts the drain in the stop budget it logs at ready (the supervisor's grace must cover it)", async () => {
    const port = freePort();
    const dir = require("node:fs").mkdtempSync("/tmp/bd-budget-");
    const p = Bun.spawn([BUN, join(ROOT, "test/fixtures/serve-app.ts"), "run", "--pid-file", join(dir, "b.pid")], {
      env: { ...process.env, BD_SERVE_DIR: dir, BD_PORT: String(port), BD_NAME: "budget" },
      stdout: "ignore",
      stderr: "pipe",
    });
    track(p.pid);
    let err = "";
    const reader = (async () => {
      for await (const chunk of p.stderr) err += Buffer.from(chunk).toString();
    })();
    try {
      expect(await waitFor(() => err.includes("a stop takes at most"), 15_000)).toBe(true);
      // No shutdown hook, the default shutdownTimeout of 10 s: draining is bounded by it.
      expect(err).toContain("a stop takes at most 10000 ms (draining 10000 ms + 0 shutdown hooks x 10000 ms)");
    } finally {
      p.kill("SIGTERM");
      await p.exited;
      await reader;
      require("node:fs").rmSync(dir, { recursive: true, force: true });
    }
  });
});
