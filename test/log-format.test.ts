/**
 * Issue 12 item 6, one event one line: a real process logs awkward events
 * (multi-line text, stacks, objects, a circular one, BigInts, format
 * strings, arguments that throw) through createLogger with fd 2 on a file,
 * as text, as JSON, under journald (JOURNAL_STREAM naming that file) and to
 * a real rsyslogd; the file and rsyslog's output are read from outside.
 */
import { describe, expect, test } from "bun:test";
import { closeSync, fstatSync, openSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { BUN, cleanupProcesses, ROOT, tempDir, track, waitFor } from "./helpers.ts";
import { RSYSLOGD, rsyslog, why, type Rsyslog } from "./rsyslog.ts";

cleanupProcesses();
const dir = tempDir("bd-logfmt-");
const FIXTURE = join(ROOT, "test/fixtures/logfmt-logger.ts");
const NAME = "lf-test";
const NAMES: string[] = JSON.parse(Bun.spawnSync([BUN, FIXTURE, "--list"]).stdout.toString());
/** Characters that must never reach the output raw (a line feed only ends a line; a tab may stay). */
const CONTROL = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]/;
const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
let n = 0;

interface Run {
  pid: number;
  /** fd 2, whole. */
  raw: string;
  /** fd 2's lines, keyed by the event that wrote each (the fixture's order). */
  by: Record<string, string>;
  lines: string[];
}

async function run(mode: "foreground" | "daemon", format: "text" | "json", o: { journal?: boolean; socket?: string } = {}): Promise<Run> {
  const file = join(dir, `stderr${++n}.log`);
  const fd = openSync(file, "w");
  const st = fstatSync(fd, { bigint: true });
  const p = Bun.spawn([BUN, FIXTURE, NAME, mode, format, ...(o.socket ? ["syslog", o.socket] : [])], {
    env: { ...process.env, JOURNAL_STREAM: o.journal ? `${st.dev}:${st.ino}` : "", CONSOLA_LEVEL: "" },
    stdin: "ignore",
    stdout: "pipe",
    stderr: fd,
  });
  track(p.pid);
  closeSync(fd);
  const stdout = await new Response(p.stdout).text();
  expect(await p.exited).toBe(0);
  expect(stdout).toBe("done\n");
  const raw = readFileSync(file, "utf8");
  const lines = raw === "" ? [] : raw.replace(/\n$/, "").split("\n");
  return { pid: p.pid, raw, lines, by: Object.fromEntries(NAMES.map((name, i) => [name, lines[i] ?? ""])) };
}

/** Every event is one line, nothing raw that a reader could take for a line break or an escape sequence. */
function oneLinePerEvent(r: Run): void {
  expect(r.lines).toHaveLength(NAMES.length);
  expect(r.raw.endsWith("\n")).toBe(true);
  expect(r.raw).not.toMatch(CONTROL);
}

/** The expected text of each event, after the `[type] [tag] ` or `<N>` part. */
function checkTextBodies(body: (name: string) => string): void {
  expect(body("multi")).toBe("first line\\nsecond line\\r\\nthird\ttabbed");
  expect(body("error")).toStartWith("Error: boom\\nsecond\\n    at ");
  expect(body("error")).toContain("logfmt-logger.ts");
  expect(body("error")).not.toContain("\\n\\n");
  expect(body("error-with-text")).toStartWith("hook failed: Error: boom2\\n    at ");
  expect(body("format-with-error")).toStartWith("hook failed: Error: boom3");
  expect(body("errno")).toStartWith("read failed Error: ENOENT: no such file or directory");
  expect(body("no-stack")).toBe("Error: bad stack");
  expect(body("object")).toBe('{ a: 1, nested: { b: "x\\ny" } }');
  expect(body("circular")).toBe("state { a: 1, self: [Circular] }");
  expect(body("bigint")).toBe("10n { n: 20n }");
  expect(body("format")).toBe("list has 3 items");
  expect(body("format-bigint-json")).toBe("%j { n: 30n }");
  expect(body("throwing-tostring")).toStartWith("%s ");
  expect(body("proxy")).toStartWith("proxy");
  expect(body("escape")).toBe("\\x1b[31mred\\x1b[0m and \\x00 nul \\u2028 ls");
  expect(body("trailing-newline")).toBe("ends with a newline");
  expect(body("debug")).toBe("a debug line");
  expect(body("fatal")).toBe("a fatal line");
  expect(body("last")).toBe("last");
}

const TYPES: Record<string, string> = { error: "error", "error-with-text": "warn", "format-with-error": "error", errno: "error", "no-stack": "error", debug: "debug", fatal: "fatal" };
const typeOf = (name: string) => TYPES[name] ?? "info";
const PRIORITY: Record<string, number> = { info: 6, warn: 4, error: 3, debug: 7, fatal: 2 };

/** The JSON record of each event, parsed and checked field by field. */
function checkRecords(recs: Record<string, Record<string, any>>, pid: number): void {
  for (const [name, rec] of Object.entries(recs)) {
    for (const k of Object.keys(rec)) expect(["time", "level", "name", "pid", "tag", "msg", "err"]).toContain(k);
    expect(rec.time).toMatch(ISO);
    expect(rec.level).toBe(typeOf(name));
    expect(rec.name).toBe(NAME);
    expect(rec.pid).toBe(pid);
    expect(typeof rec.msg).toBe("string");
    if (name !== "tagged") expect(rec).not.toHaveProperty("tag");
    if (!["error", "error-with-text", "format-with-error", "errno", "no-stack"].includes(name)) expect(rec).not.toHaveProperty("err");
  }
  expect(recs.multi!.msg).toBe("first line\nsecond line\r\nthird\ttabbed");
  expect(recs.error!.msg).toBe("boom\nsecond");
  expect(recs.error!.err.message).toBe("boom\nsecond");
  expect(recs.error!.err.stack).toStartWith("Error: boom\nsecond\n    at ");
  expect(recs.error!.err.stack).toContain("logfmt-logger.ts");
  expect(recs.error!.err).not.toHaveProperty("code");
  expect(recs["error-with-text"]!.msg).toBe("hook failed:");
  expect(recs["error-with-text"]!.err.message).toBe("boom2");
  expect(recs["error-with-text"]!.err.stack).toStartWith("Error: boom2\n    at ");
  expect(recs["format-with-error"]!.msg).toBe("hook failed: boom3");
  expect(recs["format-with-error"]!.err.message).toBe("boom3");
  expect(recs.errno!.msg).toBe("read failed");
  expect(recs.errno!.err.code).toBe("ENOENT");
  expect(recs.errno!.err.message).toStartWith("ENOENT: no such file or directory");
  expect(recs["no-stack"]!.msg).toBe("bad stack");
  expect(recs["no-stack"]!.err).toEqual({ message: "bad stack", stack: "Error: bad stack" });
  expect(recs.object!.msg).toBe('{ a: 1, nested: { b: "x\\ny" } }');
  expect(recs.circular!.msg).toBe("state { a: 1, self: [Circular] }");
  expect(recs.bigint!.msg).toBe("10n { n: 20n }");
  expect(recs.format!.msg).toBe("list has 3 items");
  expect(recs["format-bigint-json"]!.msg).toBe("%j { n: 30n }");
  expect(recs["throwing-tostring"]!.msg).toStartWith("%s ");
  expect(recs.proxy!.msg).toStartWith("proxy");
  expect(recs.escape!.msg).toBe("\x1b[31mred\x1b[0m and \x00 nul \u2028 ls");
  expect(recs["trailing-newline"]!.msg).toBe("ends with a newline");
  expect(recs.tagged!.tag).toBe("sub");
  expect(recs.tagged!.msg).toBe("from a sub-logger");
  expect(recs.fatal!.msg).toBe("a fatal line");
}

describe("text", () => {
  test("foreground: `[type] [name] message`, every event one line, line breaks and control characters escaped, no colour", async () => {
    const r = await run("foreground", "text");
    oneLinePerEvent(r);
    const head = (name: string) => `[${typeOf(name)}] [${NAME}${name === "tagged" ? ":sub" : ""}] `;
    for (const name of NAMES) expect(r.by[name]).toStartWith(head(name));
    checkTextBodies((name) => r.by[name]!.slice(head(name).length));
    expect(r.by.tagged).toBe(`[info] [${NAME}:sub] from a sub-logger`);
  }, 30_000);

  test("detached: the same lines after an ISO timestamp", async () => {
    const r = await run("daemon", "text");
    oneLinePerEvent(r);
    for (const l of r.lines) expect(l.slice(0, 24)).toMatch(ISO);
    const head = (name: string) => `[${typeOf(name)}] [${NAME}${name === "tagged" ? ":sub" : ""}] `;
    for (const name of NAMES) expect(r.by[name]!.slice(25)).toStartWith(head(name));
    checkTextBodies((name) => r.by[name]!.slice(25 + head(name).length));
  }, 30_000);

  test("under journald: one <N> prefix per event (a stack is one entry), no timestamp, no tag", async () => {
    const r = await run("daemon", "text", { journal: true });
    oneLinePerEvent(r);
    for (const name of NAMES) expect(r.by[name]).toStartWith(`<${PRIORITY[typeOf(name)]}>`);
    for (const l of r.lines) expect(l.match(/<[0-7]>/g)).toHaveLength(1);
    checkTextBodies((name) => r.by[name]!.slice(3));
    expect(r.by.tagged).toBe("<6>from a sub-logger");
  }, 30_000);
});

describe("json", () => {
  for (const mode of ["foreground", "daemon"] as const) {
    test(`${mode}: one object per line, with time, level, name, pid, msg, err {message, stack} and tag`, async () => {
      const r = await run(mode, "json");
      oneLinePerEvent(r);
      const recs = Object.fromEntries(NAMES.map((name) => [name, JSON.parse(r.by[name]!)]));
      checkRecords(recs, r.pid);
    }, 30_000);
  }

  test("under journald: `<N>` then the object, N the event's priority", async () => {
    const r = await run("foreground", "json", { journal: true });
    oneLinePerEvent(r);
    const recs: Record<string, Record<string, any>> = {};
    for (const name of NAMES) {
      const m = /^<([0-7])>(\{.*\})$/.exec(r.by[name]!);
      expect(m).not.toBeNull();
      expect(Number(m![1])).toBe(PRIORITY[typeOf(name)]!);
      recs[name] = JSON.parse(m![2]!);
    }
    checkRecords(recs, r.pid);
  }, 30_000);
});

describe.skipIf(!RSYSLOGD)(`syslog: one record per event${why}`, () => {
  const SEVERITY: Record<string, string> = { info: "info", warn: "warning", error: "err", debug: "debug", fatal: "crit" };
  const viaSyslog = async (r: Rsyslog, format: "text" | "json") => {
    const f = await run("foreground", format, { socket: r.sock });
    // Only the syslog reporter in the foreground: fd 2 stays empty.
    expect(f.raw).toBe("");
    const tag = `${NAME}[${f.pid}]: `;
    const mine = () => r.lines().filter((l) => l.includes(tag));
    expect(await waitFor(() => mine().some((l) => l.endsWith(format === "text" ? `${tag}last` : '"msg":"last"}')), 20_000)).toBe(true);
    const got = mine();
    expect(got).toHaveLength(NAMES.length);
    const by: Record<string, string> = {};
    NAMES.forEach((name, i) => {
      const l = got[i]!;
      expect(l).toStartWith(`${SEVERITY[typeOf(name)]} daemon ${tag}`);
      by[name] = l.slice(l.indexOf(tag) + tag.length);
    });
    return { by, pid: f.pid };
  };

  test("text: the escaped message, a stack in one record, [sub] for a sub-logger", async () => {
    const r = await rsyslog(dir);
    const { by } = await viaSyslog(r, "text");
    // rsyslog shows a received tab as #011 (its escapeControlCharacterTab); nothing else of ours needs escaping by it.
    checkTextBodies((name) => (name === "multi" ? by[name]!.replace("#011", "\t") : by[name]!));
    expect(by.tagged).toBe("[sub] from a sub-logger");
  }, 60_000);

  test("json: the object after the RFC 3164 header", async () => {
    const r = await rsyslog(dir);
    const { by, pid } = await viaSyslog(r, "json");
    checkRecords(Object.fromEntries(NAMES.map((name) => [name, JSON.parse(by[name]!)])), pid);
  }, 60_000);
});
