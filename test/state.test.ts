/**
 * The state file (src/state.ts) on real files, and `status` / `reload`
 * (src/control.ts) against a fake daemon: a real process that holds the
 * PID file's lock and publishes its state with the real writer.
 */
import { describe, expect, test } from "bun:test";
import { chmodSync, chownSync, existsSync, linkSync, lstatSync, mkdirSync, readFileSync, renameSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { DaemonError } from "../src/errors.ts";
import { openStateFile, readState, statePathFor } from "../src/state.ts";
import { alive, BUN, cleanupProcesses, ROOT, run, statusField, tempDir, track, waitFor } from "./helpers.ts";

cleanupProcesses();
const isRoot = process.getuid?.() === 0;
const hasSetpriv = Bun.spawnSync(["sh", "-c", "command -v setpriv"]).exitCode === 0;
// Reachable by nobody: the tests that drop to it need to walk into it.
const top = tempDir("bd-state-");
chmodSync(top, 0o755);
let n = 0;
/** A fresh directory per test; `mode` 0o1777 for one shared with other users (as /tmp). */
function fresh(mode = 0o755): string {
  const d = join(top, `t${++n}`);
  mkdirSync(d);
  chmodSync(d, mode);
  return d;
}

function errorOf(fn: () => unknown): DaemonError {
  try {
    fn();
  } catch (err) {
    return err as DaemonError;
  }
  throw new Error("expected a throw");
}

test("statePathFor", () => {
  expect(statePathFor("/run/x.pid")).toBe("/run/x.state");
  expect(statePathFor("/run/app/app.pid")).toBe("/run/app/app.state");
  expect(statePathFor("/tmp/x")).toBe("/tmp/x.state");
  expect(statePathFor("/tmp/x.pidfile")).toBe("/tmp/x.pidfile.state");
  expect(statePathFor("/tmp/x.PID")).toBe("/tmp/x.PID.state");
  expect(statePathFor("/tmp/.pid")).toBe("/tmp/.pid.state");
  expect(statePathFor("/a.pid/x")).toBe("/a.pid/x.state");
  expect(statePathFor("rel.pid")).toBe("rel.state");
});

describe("writer and reader", () => {
  test("round trip: every change is what the reader sees", () => {
    const p = join(fresh(), "a.state");
    const w = openStateFile(p, { name: "app", pid: process.pid, configFile: "/etc/app.conf" });
    try {
      expect(w.path).toBe(p);
      expect(statSync(p).mode & 0o7777).toBe(0o644);
      let r = readState(p, process.pid);
      if (!r.ok) throw new Error(r.reason);
      expect(r.record).toMatchObject({ v: 1, name: "app", pid: process.pid, state: "starting", configFile: "/etc/app.conf", reloadsStarted: 0, reloads: [] });
      // The process start, not the open: this test process began before it.
      expect(Date.parse(r.record.startedAt)).toBeLessThanOrEqual(Date.parse(r.record.since));
      w.set("running");
      expect(readState(p, process.pid)).toMatchObject({ ok: true, record: { state: "running" } });
      const seq = w.reloadStarted();
      expect(seq).toBe(1);
      expect(readState(p, process.pid)).toMatchObject({ ok: true, record: { state: "reloading", reloadsStarted: 1, reloads: [] } });
      w.reloadFinished(seq, false, "/etc/app.conf:3: port: expected a number");
      r = readState(p, process.pid);
      if (!r.ok) throw new Error(r.reason);
      expect(r.record.state).toBe("running");
      expect(r.record.reloads).toEqual([{ seq: 1, startedAt: expect.any(String), finishedAt: expect.any(String), ok: false, error: "/etc/app.conf:3: port: expected a number" }]);
      w.setConfigFile(`/etc/${"x".repeat(3000)}.conf`);
      w.setConfigFile(undefined);
      r = readState(p, process.pid);
      if (!r.ok) throw new Error(r.reason);
      expect(r.record.configFile).toBeUndefined();
      // The long record's tail was cut: the file is exactly the short one.
      const text = readFileSync(p, "utf8");
      const [header, ...body] = text.split("\n");
      expect(Number(header!.split(" ")[1])).toBe(Buffer.byteLength(`${body.join("\n")}`));
      expect(JSON.parse(body.join("\n"))).toEqual(r.record);
      for (let i = 0; i < 20; i++) w.reloadFinished(w.reloadStarted(), true);
      r = readState(p, process.pid);
      if (!r.ok) throw new Error(r.reason);
      expect(r.record.reloadsStarted).toBe(21);
      expect(r.record.reloads.map((x) => x.seq)).toEqual(Array.from({ length: 16 }, (_, i) => i + 6));
      w.set("stopping");
      // Stopping is final: a reload that ends then does not bring "running" back.
      w.reloadFinished(w.reloadStarted(), true);
      expect(readState(p, process.pid)).toMatchObject({ ok: true, record: { state: "stopping", reloadsStarted: 22 } });
    } finally {
      w.close();
    }
    expect(existsSync(p)).toBe(false);
    // Idempotent, and writes after it are harmless no-ops.
    w.close();
    w.set("running");
    expect(existsSync(p)).toBe(false);
  });

  test("an existing file of this user is taken over and rewritten", () => {
    const p = join(fresh(), "a.state");
    writeFileSync(p, "x".repeat(5000), { mode: 0o600 });
    const w = openStateFile(p, { name: "app", pid: process.pid });
    try {
      expect(statSync(p).mode & 0o777).toBe(0o644);
      expect(readState(p, process.pid)).toMatchObject({ ok: true, record: { state: "starting" } });
      expect(statSync(p).size).toBeLessThan(5000);
    } finally {
      w.close();
    }
  });

  test("absent, pid mismatch", () => {
    const d = fresh();
    expect(readState(join(d, "none.state"), process.pid)).toMatchObject({ ok: false, absent: true });
    const p = join(d, "a.state");
    const w = openStateFile(p, { name: "app", pid: process.pid });
    try {
      const r = readState(p, 1);
      expect(r.ok).toBe(false);
      if (r.ok) return;
      expect(r.absent).toBeUndefined();
      expect(r.reason).toContain(`pid ${process.pid}'s, not pid 1's`);
    } finally {
      w.close();
    }
  });

  test("a torn record is unparsable after retries, never an exception; a stale tail after a full record is not", () => {
    const d = fresh();
    const p = join(d, "a.state");
    const w = openStateFile(p, { name: "app", pid: process.pid, configFile: "/etc/app.conf" });
    const full = readFileSync(p);
    w.close();
    const half = join(d, "half.state");
    writeFileSync(half, full.subarray(0, Math.floor(full.length / 2)));
    let r = readState(half, process.pid);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toMatch(/incomplete.*after 10 reads: unparsable/);
    // Same length, one byte changed in the middle (a page of the old record under the new one's header).
    const flipped = Buffer.from(full);
    const at = flipped.indexOf("/etc/app.conf");
    flipped[at + 5] = "b".charCodeAt(0);
    writeFileSync(half, flipped);
    r = readState(half, process.pid);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toContain("unparsable");
    // Half a header: a file still being created.
    writeFileSync(half, "bun-daemon-st");
    expect(readState(half, process.pid).ok).toBe(false);
    writeFileSync(half, "");
    expect(readState(half, process.pid).ok).toBe(false);
    writeFileSync(half, "not a state file at all\n{}");
    expect(readState(half, process.pid).ok).toBe(false);
    // Between the writer's pwrite and its ftruncate: the new record, then the old one's tail.
    writeFileSync(half, Buffer.concat([full, Buffer.from("tail of an older, longer record")]));
    expect(readState(half, process.pid)).toMatchObject({ ok: true, record: { configFile: "/etc/app.conf" } });
  });

  test("a reader racing a writer in another process sees only whole records", async () => {
    const d = fresh();
    const p = join(d, "a.state");
    const script = join(d, "writer.ts");
    // Alternating long and short records, without pause (far more often than any daemon):
    // every rewrite moves the end of the file, and many reads meet one half done.
    writeFileSync(
      script,
      `import { openStateFile } from ${JSON.stringify(join(ROOT, "src/state.ts"))};
       const w = openStateFile(process.argv[2], { name: "w", pid: process.pid });
       w.set("running");
       require("node:fs").writeSync(1, "open\\n");
       for (let i = 0; ; i++) w.setConfigFile(i % 2 ? "/etc/" + "y".repeat(5000 + (i % 7) * 900) : undefined);`,
    );
    const child = Bun.spawn([BUN, script, p], { stdout: "pipe", stderr: "inherit" });
    track(child.pid);
    const reader = child.stdout.getReader();
    expect(new TextDecoder().decode((await reader.read()).value)).toBe("open\n");
    const failures: string[] = [];
    for (let i = 0; i < 2000; i++) {
      const r = readState(p, child.pid);
      if (!r.ok) failures.push(r.reason);
      else if (r.record.state !== "running" || !(r.record.configFile === undefined || /^\/etc\/y{5000,}$/.test(r.record.configFile))) failures.push(`mixed: ${JSON.stringify(r.record).slice(0, 200)}`);
    }
    child.kill("SIGKILL");
    await child.exited;
    expect(failures).toEqual([]);
  }, 60_000);
});

describe("what the writer refuses", () => {
  test("a symlink at the path: refused, nothing created or written at its target", () => {
    const d = fresh();
    const p = join(d, "a.state");
    symlinkSync(join(d, "target"), p);
    const e = errorOf(() => openStateFile(p, { name: "app", pid: process.pid }));
    expect(e).toBeInstanceOf(DaemonError);
    expect(e.code).toBe("STATE");
    expect(e.message).toContain(`state file ${p} is a symlink to ${join(d, "target")}`);
    expect(existsSync(join(d, "target"))).toBe(false);
    // A link to an existing file: the file keeps its content.
    writeFileSync(join(d, "target"), "precious\n");
    expect(errorOf(() => openStateFile(p, { name: "app", pid: process.pid })).code).toBe("STATE");
    expect(readFileSync(join(d, "target"), "utf8")).toBe("precious\n");
    expect(readState(p, process.pid)).toMatchObject({ ok: false, reason: expect.stringContaining("symlink") });
  });

  test("a FIFO at the path: refused without blocking", () => {
    const d = fresh();
    const p = join(d, "a.state");
    expect(Bun.spawnSync(["mkfifo", p]).exitCode).toBe(0);
    const e = errorOf(() => openStateFile(p, { name: "app", pid: process.pid }));
    expect(e.code).toBe("STATE");
    expect(e.message).toContain("is a FIFO");
    expect(readState(p, process.pid)).toMatchObject({ ok: false, reason: expect.stringContaining("a FIFO") });
  });

  test("a group- or world-writable file: the writer refuses it, the reader does not trust it", () => {
    const d = fresh();
    const p = join(d, "a.state");
    const w = openStateFile(p, { name: "app", pid: process.pid });
    try {
      chmodSync(p, 0o664);
      expect(readState(p, process.pid)).toMatchObject({ ok: false, reason: expect.stringContaining("writable by its group") });
      chmodSync(p, 0o646);
      expect(readState(p, process.pid)).toMatchObject({ ok: false, reason: expect.stringContaining("writable by every user") });
      expect(errorOf(() => openStateFile(p, { name: "app", pid: process.pid })).code).toBe("STATE");
      chmodSync(p, 0o644);
      expect(readState(p, process.pid).ok).toBe(true);
    } finally {
      w.close();
    }
  });

  test("a second name for the file (a hard link) is refused by both", () => {
    const d = fresh();
    const p = join(d, "a.state");
    const w = openStateFile(p, { name: "app", pid: process.pid });
    try {
      linkSync(p, join(d, "other"));
      expect(readState(p, process.pid)).toMatchObject({ ok: false, reason: expect.stringContaining("2 hard links") });
      expect(errorOf(() => openStateFile(p, { name: "app", pid: process.pid })).code).toBe("STATE");
    } finally {
      w.close();
    }
  });

  test.skipIf(!isRoot || !hasSetpriv)(`a file nobody pre-created in a shared directory: refused by root, unless nobody is the trusted user${!isRoot || !hasSetpriv ? " (skipped: needs root and setpriv)" : ""}`, () => {
    const d = fresh(0o1777);
    const p = join(d, "a.state");
    const t = Bun.spawnSync(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "touch", p], { stderr: "pipe" });
    expect(t.stderr.toString()).toBe("");
    expect(statSync(p).uid).toBe(65534);
    const e = errorOf(() => openStateFile(p, { name: "app", pid: process.pid }));
    expect(e).toBeInstanceOf(DaemonError);
    expect(e.code).toBe("STATE");
    expect(e.message).toContain(`state file ${p} is owned by`);
    expect(e.message).toContain("uid 65534");
    expect(statSync(p).size).toBe(0); // nothing written into it
    // The user a root start drops to, whose earlier run left the file: its own, so taken over.
    const w = openStateFile(p, { name: "app", pid: process.pid, trustedUid: 65534 });
    try {
      expect(statSync(p).size).toBeGreaterThan(0);
      // To a reader, a file of nobody's is not this (root) daemon's.
      expect(readState(p, process.pid)).toMatchObject({ ok: false, reason: expect.stringContaining("not by pid") });
      w.handOver(0, 0);
      expect(readState(p, process.pid).ok).toBe(true);
    } finally {
      w.close();
    }
  });
});

describe("after the privilege drop and the chroot", () => {
  test.skipIf(!isRoot)(`handOver, then a real drop to nobody: writes still land and close removes the file from a sticky directory${isRoot ? "" : " (skipped: needs root)"}`, async () => {
    const d = fresh(0o1777);
    const p = join(d, "a.state");
    const script = join(fresh(), "drop.ts");
    writeFileSync(
      script,
      `import { writeSync } from "node:fs";
       import { openStateFile } from ${JSON.stringify(join(ROOT, "src/state.ts"))};
       import { setGid, setGroups, setUid } from ${JSON.stringify(join(ROOT, "src/ffi.ts"))};
       const w = openStateFile(process.argv[2], { name: "drop", pid: process.pid });
       w.handOver(65534, 65534);
       setGroups([], "drop"); setGid(65534, "drop"); setUid(65534, "drop");
       w.set("running");
       w.reloadFinished(w.reloadStarted(), true);
       writeSync(1, "dropped\\n");
       await Bun.stdin.text();
       w.close();
       writeSync(1, "closed\\n");
       process.exit(0);`,
    );
    const child = Bun.spawn([BUN, script, p], { stdin: "pipe", stdout: "pipe", stderr: "pipe" });
    track(child.pid);
    const reader = child.stdout.getReader();
    const first = new TextDecoder().decode((await reader.read()).value);
    if (first !== "dropped\n") throw new Error(`child: ${first} ${await new Response(child.stderr).text()}`);
    expect(statusField(child.pid, "Uid")?.split(/\s+/)).toEqual(["65534", "65534", "65534", "65534"]);
    expect(lstatSync(p).uid).toBe(65534);
    expect(readState(p, child.pid)).toMatchObject({ ok: true, record: { state: "running", reloadsStarted: 1, reloads: [{ seq: 1, ok: true }] } });
    child.stdin.end();
    expect(new TextDecoder().decode((await reader.read()).value)).toBe("closed\n");
    expect(await child.exited).toBe(0);
    // Only its owner (nobody, after handOver) could remove it from a 1777 directory.
    expect(existsSync(p)).toBe(false);
  }, 30_000);

  test("moveTo + close removes the moved path only when it is the same file", () => {
    const d = fresh();
    // The same file under its path inside the root (a rename stands in for the chroot's view).
    const a = join(d, "a.state");
    const w = openStateFile(a, { name: "app", pid: process.pid });
    renameSync(a, join(d, "inside.state"));
    w.moveTo(join(d, "inside.state"));
    expect(w.path).toBe(join(d, "inside.state"));
    w.close();
    expect(existsSync(join(d, "inside.state"))).toBe(false);

    // Moved to a path that names another file: that file stays, and so does ours.
    const b = join(d, "b.state");
    const w2 = openStateFile(b, { name: "app", pid: process.pid });
    writeFileSync(join(d, "other.state"), "someone else's\n");
    w2.moveTo(join(d, "other.state"));
    w2.close();
    expect(readFileSync(join(d, "other.state"), "utf8")).toBe("someone else's\n");
    expect(existsSync(b)).toBe(true);

    // Replaced at its path meanwhile: the replacement is left alone.
    const c = join(d, "c.state");
    const w3 = openStateFile(c, { name: "app", pid: process.pid });
    renameSync(c, join(d, "c.old"));
    writeFileSync(c, "new\n");
    w3.close();
    expect(readFileSync(c, "utf8")).toBe("new\n");
  });

  test.skipIf(!isRoot)("handOver fchowns the open file, not what its path names now", () => {
    const d = fresh();
    const p = join(d, "a.state");
    const w = openStateFile(p, { name: "app", pid: process.pid });
    renameSync(p, join(d, "moved.state"));
    writeFileSync(p, "planted\n");
    w.handOver(65534, 65534);
    expect(statSync(join(d, "moved.state")).uid).toBe(65534);
    expect(statSync(join(d, "moved.state")).gid).toBe(65534);
    expect(statSync(p).uid).toBe(0);
    w.moveTo(join(d, "moved.state"));
    w.close();
  });
});

describe("status and reload against a fake daemon", () => {
  const d = fresh();
  const FAKE = join(d, "fake.ts");
  const CTL = join(d, "ctl.ts");
  // Locks its PID file and publishes with the real writer; on SIGHUP, reloads as
  // the lifecycle does (one at a time, requests meanwhile make one more run, none once stopping).
  writeFileSync(
    FAKE,
    `import { acquirePidFile, releasePidFile, writePid } from ${JSON.stringify(join(ROOT, "src/pidfile.ts"))};
     import { openStateFile, statePathFor } from ${JSON.stringify(join(ROOT, "src/state.ts"))};
     const [pidFile, mode] = process.argv.slice(2);
     const lock = acquirePidFile(pidFile);
     const w = mode === "nostate" ? undefined : openStateFile(statePathFor(pidFile), { name: "fake", pid: process.pid, configFile: "/etc/fake.conf" });
     let running = false, pending = false, stopping = false, runs = 0;
     process.on("SIGHUP", () => {
       if (mode === "die") process.exit(3);
       if (stopping) return; // as the lifecycle: no reload begins once it stops
       if (running) { pending = true; return; }
       running = true;
       void (async () => {
         do {
           pending = false;
           const seq = w?.reloadStarted() ?? 0;
           await Bun.sleep(40);
           if (mode === "hang") await new Promise(() => {});
           runs++;
           const fail = mode === "fail" || (mode === "second-fails" && runs === 2);
           w?.reloadFinished(seq, !fail, fail ? "/etc/fake.conf:3: port: expected a number" : undefined);
         } while (pending);
         running = false;
       })();
     });
     process.on("SIGUSR2", () => { stopping = true; w?.set("stopping"); });
     process.on("SIGTERM", () => { w?.close(); releasePidFile(lock); process.exit(0); });
     writePid(lock, process.pid);
     w?.set("running");
     setInterval(() => {}, 1 << 30);`,
  );
  writeFileSync(
    CTL,
    `import { reload, status } from ${JSON.stringify(join(ROOT, "src/control.ts"))};
     const [cmd, pidFile, opts] = process.argv.slice(2);
     const o = JSON.parse(opts ?? "{}");
     let code;
     try {
       code = cmd === "status" ? await status("fake", pidFile, o) : await reload("fake", pidFile, o);
     } catch (e) {
       console.error(e.message);
       code = e.exitCode ?? 1;
     }
     process.exit(code);`,
  );
  let k = 0;

  async function fake(mode = "ok"): Promise<{ pid: number; pidFile: string }> {
    const pidFile = join(d, `fake${++k}.pid`);
    const proc = Bun.spawn([BUN, FAKE, pidFile, mode], { stdout: "inherit", stderr: "inherit" });
    track(proc.pid);
    const up = await waitFor(() => {
      if (!existsSync(pidFile) || readFileSync(pidFile, "utf8").trim() !== String(proc.pid)) return false;
      return mode === "nostate" || (readState(statePathFor(pidFile), proc.pid) as { record?: { state: string } }).record?.state === "running";
    }, 20_000);
    if (!up) throw new Error(`fake daemon (${mode}) did not come up`);
    return { pid: proc.pid, pidFile };
  }
  const ctl = (cmd: "status" | "reload", pidFile: string, o: object = {}) => run([BUN, CTL, cmd, pidFile, JSON.stringify(o)]);

  test("reload waits for the outcome: ok, then failed with the daemon's error; status tells both", async () => {
    const ok = await fake("ok");
    let r = await ctl("reload", ok.pidFile);
    expect(r).toEqual({ code: 0, stdout: `reloaded fake (pid ${ok.pid})\n`, stderr: "" });
    r = await ctl("status", ok.pidFile);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^fake is running \\(pid ${ok.pid}, up \\S+; config /etc/fake.conf; last reload \\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z ok\\)\\n$`));

    const bad = await fake("fail");
    r = await ctl("reload", bad.pidFile);
    expect(r).toEqual({ code: 1, stdout: "", stderr: "fake: reload failed: /etc/fake.conf:3: port: expected a number\n" });
    r = await ctl("status", bad.pidFile, { json: true });
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(r.stdout.trim().split("\n")).toHaveLength(1);
    expect(j).toEqual({
      name: "fake",
      state: "running",
      pid: bad.pid,
      pidFile: bad.pidFile,
      uptimeSeconds: expect.any(Number),
      startedAt: expect.any(String),
      configFile: "/etc/fake.conf",
      lastReload: { seq: 1, startedAt: expect.any(String), finishedAt: expect.any(String), ok: false, error: "/etc/fake.conf:3: port: expected a number" },
      workers: null,
      exitCode: 0,
    });
    r = await ctl("status", bad.pidFile);
    expect(r.stdout).toContain("; last reload ");
    expect(r.stdout).toContain(" failed: /etc/fake.conf:3: port: expected a number)\n");
  }, 60_000);

  test("concurrent callers each get the outcome of a run that started after they asked", async () => {
    const f = await fake("second-fails");
    // Run 1 has begun when the others read their S (>= 1): whichever of them starts run 2
    // (which fails) is answered by it, and so is every one that asked before run 2 began.
    const first = ctl("reload", f.pidFile);
    await waitFor(() => (readState(statePathFor(f.pidFile), f.pid) as { record?: { reloadsStarted: number } }).record?.reloadsStarted === 1, 20_000, 1);
    const rest = await Promise.all(Array.from({ length: 10 }, () => ctl("reload", f.pidFile)));
    expect((await first).code).toBe(0);
    for (const r of rest) {
      // Each asked after run 1 began: answered by run 2 (failed), or by a later one if it asked after run 2 began.
      expect(r.stdout + r.stderr).toMatch(/^(fake: reload failed: \/etc\/fake.conf:3: port: expected a number|reloaded fake \(pid \d+\))\n$/);
    }
    expect(rest.some((r) => r.code === 1)).toBe(true);
  }, 60_000);

  test("--no-wait, no outcome in time, a daemon that dies, one that is stopping", async () => {
    const f = await fake("hang");
    let r = await ctl("reload", f.pidFile, { wait: false });
    expect(r).toEqual({ code: 0, stdout: `reloading fake (pid ${f.pid})\n`, stderr: "" });
    const h = await fake("hang");
    r = await ctl("reload", h.pidFile, { timeout: 1 });
    expect(r).toEqual({ code: 1, stdout: "", stderr: `fake: no reload outcome from pid ${h.pid} within 1 s\n` });
    // Reloading, and ready for a probe.
    r = await ctl("status", h.pidFile, { ready: true });
    expect(r.code).toBe(0);
    expect(r.stdout).toStartWith(`fake is reloading (pid ${h.pid}`);

    const die = await fake("die");
    r = await ctl("reload", die.pidFile);
    expect(r).toEqual({ code: 1, stdout: "", stderr: `fake: pid ${die.pid} exited during the reload\n` });
    expect(alive(die.pid)).toBe(false);

    const s = await fake("hang");
    process.kill(s.pid, "SIGUSR2");
    await waitFor(() => (readState(statePathFor(s.pidFile), s.pid) as { record?: { state: string } }).record?.state === "stopping");
    r = await ctl("status", s.pidFile, { ready: true });
    expect(r.code).toBe(1);
    expect(r.stdout).toStartWith(`fake is stopping (pid ${s.pid}`);
    expect((await ctl("status", s.pidFile)).code).toBe(0);
    r = await ctl("reload", s.pidFile);
    expect(r).toEqual({ code: 1, stdout: "", stderr: `fake: pid ${s.pid} is stopping; the reload will not run\n` });
  }, 60_000);

  test("no state file, an unsafe one, not running", async () => {
    const f = await fake("nostate");
    let r = await ctl("reload", f.pidFile);
    expect(r).toEqual({ code: 1, stdout: "", stderr: `fake: sent SIGHUP to pid ${f.pid}, but it publishes no reload outcome (no state file at ${statePathFor(f.pidFile)}); use --no-wait\n` });
    r = await ctl("status", f.pidFile);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^fake is running \\(pid ${f.pid}(, up \\S+)?\\)\\n$`));
    expect(r.stderr).toBe("");

    const u = await fake("ok");
    const path = statePathFor(u.pidFile);
    chmodSync(path, 0o666);
    r = await ctl("reload", u.pidFile);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("writable by every user");
    expect(r.stderr).toContain("SIGHUP not sent");
    // Not signalled: no reload began.
    expect(JSON.parse(readFileSync(path, "utf8").split("\n")[1]!).reloadsStarted).toBe(0);
    r = await ctl("status", u.pidFile, { json: true });
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ state: "running", pid: u.pid, configFile: null, lastReload: null });
    expect(r.stderr).toContain("writable by every user");
    if (isRoot) {
      chmodSync(path, 0o644);
      chownSync(path, 65534, 65534);
      r = await ctl("status", u.pidFile);
      expect(r.stderr).toContain("not by pid");
      expect(r.stdout).toMatch(/^fake is running \(pid \d+(, up \S+)?\)\n$/);
    }

    const gone = join(d, "none.pid");
    expect(await ctl("reload", gone)).toEqual({ code: 7, stdout: "fake is not running\n", stderr: "" });
    r = await ctl("status", gone, { json: true });
    expect(r.code).toBe(3);
    expect(JSON.parse(r.stdout)).toEqual({ name: "fake", state: "not running", pid: null, pidFile: gone, uptimeSeconds: null, startedAt: null, configFile: null, lastReload: null, workers: null, exitCode: 3 });
    expect((await ctl("status", gone, { ready: true })).code).toBe(3);
    writeFileSync(join(d, "stale.pid"), "999999\n");
    r = await ctl("status", join(d, "stale.pid"), { json: true });
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({ state: "dead", pid: 999999, exitCode: 1 });
    writeFileSync(join(d, "junk.pid"), "not a pid\n");
    r = await ctl("status", join(d, "junk.pid"), { json: true });
    expect(r.code).toBe(4);
    expect(JSON.parse(r.stdout)).toMatchObject({ state: "unknown", pid: null, exitCode: 4 });
  }, 60_000);
});
