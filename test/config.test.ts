/**
 * Config files (src/config.ts): real files in a temporary directory, read and validated with zod
 * (a devDependency: the library depends on no validator) and with hand-written Standard Schema
 * objects; an unreadable file is read as nobody; then a seeded fuzz of 10 000 generated files.
 */
import { describe, expect, test } from "bun:test";
import { chmodSync, mkdirSync, readFileSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { configProblems, formatProblem, libraryKeys, loadConfig, readConfigFile, type ConfigProblem, type StandardSchemaV1 } from "../src/config.ts";
import { DaemonError } from "../src/errors.ts";
import { cleanupProcesses, forOtherUsers, prng, ROOT, run, tempDir } from "./helpers.ts";

cleanupProcesses();

const FIXTURES = join(ROOT, "test/fixtures/config");
const dir = tempDir("bd-config-");
chmodSync(dir, 0o755); // nobody reads a file in here below
let n = 0;
/** A fresh file in the temporary directory. */
function file(name: string, content: string | Uint8Array): string {
  const sub = join(dir, `c${++n}`);
  mkdirSync(sub);
  chmodSync(sub, 0o755);
  const path = join(sub, name);
  writeFileSync(path, content);
  return path;
}

/** The CONFIG error a call throws (fails the test if it throws anything else, or nothing). */
function configErrorOf(fn: () => unknown): DaemonError {
  let thrown: unknown;
  try {
    fn();
  } catch (err) {
    thrown = err;
  }
  expect(thrown).toBeInstanceOf(DaemonError);
  expect((thrown as DaemonError).code).toBe("CONFIG");
  return thrown as DaemonError;
}
async function configErrorOfAsync(fn: () => Promise<unknown>): Promise<DaemonError> {
  let thrown: unknown;
  try {
    await fn();
  } catch (err) {
    thrown = err;
  }
  expect(thrown).toBeInstanceOf(DaemonError);
  expect((thrown as DaemonError).code).toBe("CONFIG");
  return thrown as DaemonError;
}

const seedSchema = z.object({
  port: z.number().int().min(1).max(65535),
  max_connections: z.number().int(),
  name: z.string().default("mydaemon"),
  mode: z.enum(["fast", "safe"]).default("safe"),
});

type Equal<X, Y> = (<T>() => T extends X ? 1 : 2) extends <T>() => T extends Y ? 1 : 2 ? true : false;
const same = <X, Y>(_check: Equal<X, Y>) => {};

describe("the seed daemon.conf", () => {
  test("parses to typed values with a zod schema; log_level and pid_file are the library's", async () => {
    const r = await loadConfig({ schema: seedSchema }, join(FIXTURES, "daemon.conf"));
    same<typeof r.config, { port: number; max_connections: number; name: string; mode: "fast" | "safe" }>(true);
    expect(r).toEqual({
      file: join(FIXTURES, "daemon.conf"),
      config: { port: 8080, max_connections: 100, name: "mydaemon", mode: "safe" },
      library: { logLevel: "info", pidFile: "/var/run/mydaemon.pid" },
    });
  });

  test("the same config as TOML and as JSON gives the same result with the same schema", async () => {
    const conf = await loadConfig({ schema: seedSchema }, join(FIXTURES, "daemon.conf"));
    for (const f of ["daemon.toml", "daemon.json"]) {
      const r = await loadConfig({ schema: seedSchema }, join(FIXTURES, f));
      expect({ ...r, file: undefined }).toEqual({ ...conf, file: undefined });
    }
  });

  test("readConfigFile + libraryKeys (the launcher's synchronous path) see the raw values and each key's line", () => {
    const read = readConfigFile(join(FIXTURES, "daemon.conf"))!;
    expect(read.values).toEqual({ port: 8080, log_level: "INFO", max_connections: 100, pid_file: "/var/run/mydaemon.pid" });
    expect([...read.lines]).toEqual([["port", 2], ["log_level", 3], ["max_connections", 4], ["pid_file", 5]]);
    expect(libraryKeys(read)).toEqual({ logLevel: "info", pidFile: "/var/run/mydaemon.pid" });
  });
});

describe("key=value lines", () => {
  test("comments, blanks, whitespace, quotes, escapes, inline comments, types", () => {
    const p = file(
      "app.conf",
      [
        "# comment",
        "",
        "   \t",
        "  spaced   =   value with  inner  spaces   ",
        "int=-42",
        "dec=3.25",
        "yes=true",
        "no=false",
        "True=True",
        'quoted_num="8080"',
        'dq="a \\"b\\" \\\\ c\\nd\\te"',
        "sq='C:\\dir \"x\" # not a comment'",
        "commented=80 # http",
        'dq_commented="x" # after a quote',
        "hash=#fff",
        "url=http://h/#top",
        "empty=",
        "empty_commented= # nothing",
        "crlf=yes\r",
        "dotted.key-1=ok",
        "_under=1",
        "__proto__=polluted?",
      ].join("\n"),
    );
    const r = readConfigFile(p)!;
    expect(r.values).toEqual({
      spaced: "value with  inner  spaces",
      int: -42,
      dec: 3.25,
      yes: true,
      no: false,
      True: "True",
      quoted_num: "8080",
      dq: 'a "b" \\ c\nd\te',
      sq: 'C:\\dir "x" # not a comment',
      commented: 80,
      dq_commented: "x",
      hash: "#fff",
      url: "http://h/#top",
      empty: "",
      empty_commented: "",
      crlf: "yes",
      "dotted.key-1": "ok",
      _under: 1,
      ["__proto__"]: "polluted?",
    });
    expect(Object.hasOwn(r.values, "__proto__")).toBe(true);
    expect(Object.getPrototypeOf(r.values)).toBe(Object.prototype);
    expect(r.lines.get("spaced")).toBe(4);
    expect(r.lines.get("crlf")).toBe(19);
  });

  test("a line without '=' is an error naming file:line", () => {
    const p = file("d.conf", "port=1\nthis line has no equals sign\n");
    const e = configErrorOf(() => readConfigFile(p));
    expect(e.message).toBe(`${p}:2: expected key=value, found "this line has no equals sign"`);
    expect(configProblems(e)).toEqual([{ file: p, line: 2, message: 'expected key=value, found "this line has no equals sign"' }]);
  });

  test("a bad key is an error naming file:line and the key", () => {
    const p = file("d.conf", "ok=1\n9lives=1\n");
    expect(configErrorOf(() => readConfigFile(p)).message).toBe(`${p}:2: bad key "9lives": a key is a letter or "_", then letters, digits, "_", "." or "-"`);
    const q = file("d.conf", "=1\n");
    expect(configErrorOf(() => readConfigFile(q)).message).toBe(`${q}:1: missing key before "=": expected key=value, found "=1"`);
  });

  test("a duplicate key names both lines", () => {
    const p = file("d.conf", "a=1\nb=2\nport=80\nc=3\n\n# x\nport=8080\n");
    expect(configErrorOf(() => readConfigFile(p)).message).toBe(`${p}:7: port: duplicate key (first set on line 3)`);
  });

  test("every problem of a file is reported, not just the first", () => {
    const p = file("d.conf", "good=1\nbad line\nother bad\nx=\"unterminated\ny='also\nz=\"a\\qb\"\nn=99999999999999999999\nq=\"v\" tail\nx=2\n");
    const e = configErrorOf(() => readConfigFile(p));
    expect(e.message.split("\n")).toEqual([
      `${p}:2: expected key=value, found "bad line"`,
      `${p}:3: expected key=value, found "other bad"`,
      `${p}:4: x: unterminated double-quoted value: add the closing " (values are one line each)`,
      `${p}:5: y: unterminated single-quoted value: add the closing ' (values are one line each)`,
      `${p}:6: z: unknown escape \\q in a double-quoted value (known: \\" \\\\ \\n \\t; single quotes take text literally)`,
      `${p}:7: n: "99999999999999999999" is too large a number to hold exactly: quote it to keep it as text`,
      `${p}:8: q: unexpected text after the closing quote: "tail" (quote the whole value)`,
      `${p}:9: x: duplicate key (first set on line 4)`,
    ]);
    expect(configProblems(e)).toHaveLength(8);
  });

  test(".env and no extension are key=value too; a file of a thousand bad lines is cut off with a count", () => {
    expect(readConfigFile(file("app.env", "A=1\n"))!.values).toEqual({ A: 1 });
    expect(readConfigFile(file(".env", "A=2\n"))!.values).toEqual({ A: 2 });
    expect(readConfigFile(file("config", "A=3\n"))!.values).toEqual({ A: 3 });
    const p = file("many.conf", "junk\n".repeat(1000));
    const lines = configErrorOf(() => readConfigFile(p)).message.split("\n");
    expect(lines).toHaveLength(101);
    expect(lines[100]).toBe(`${p}: ... and 900 more problems`);
  });

  test("control characters in a bad line are escaped: a problem is one line and cannot drive the terminal", () => {
    const p = file("d.conf", "\u001b[31mred\u0007\n");
    const e = configErrorOf(() => readConfigFile(p));
    expect(e.message).toBe(`${p}:1: expected key=value, found "\\u001b[31mred\\u0007"`);
    expect(formatProblem({ file: "f", line: 1, key: "k", message: "two\nlines\x1b" })).toBe("f:1: k: two\\nlines\\x1b");
  });
});

describe("TOML and JSON", () => {
  test("TOML syntax errors carry the line (Bun's parser gives none: found by bisection)", () => {
    const p = file("a.toml", 'a = 1\n\n[server]\nport = 80\nlist = [\n  1,\n  2,\n]\nname = "x"\nbad = tru\nlater = 1\n');
    expect(configErrorOf(() => readConfigFile(p)).message).toBe(`${p}:10: TOML: Strings must be quoted: "tru"`);
    const q = file("b.toml", "a = 1\nb = 2\na = 3\n");
    expect(configErrorOf(() => readConfigFile(q)).message).toBe(`${q}:3: TOML: Cannot redefine key 'a'`);
    const r = file("c.toml", "a = 1\nb = [\n  1,\n");
    expect(configErrorOf(() => readConfigFile(r)).message).toBe(`${r}:3: TOML: Unterminated array; expected ']' (at the end of the file)`);
  });

  test("TOML values and the lines of top-level keys and tables", () => {
    const p = file("a.toml", 'title = "x"\ndesc = """\nport = 1\n"""\nport = 2\n"quoted key" = true\n\n[server]\nhost = "h"\n[[jobs]]\nn = 1\n');
    const r = readConfigFile(p)!;
    expect(r.values).toEqual({ title: "x", desc: "port = 1\n", port: 2, "quoted key": true, server: { host: "h" }, jobs: [{ n: 1 }] });
    expect(Object.fromEntries(r.lines)).toEqual({ title: 1, desc: 2, port: 5, "quoted key": 6, server: 8, jobs: 10 });
  });

  test("JSON syntax errors carry line and column; duplicate keys name both lines; the top level must be an object", () => {
    const p = file("a.json", '{\n  "port": 8080,\n  "name": "x",\n  "list": [1, 2,],\n}\n');
    expect(configErrorOf(() => readConfigFile(p)).message).toBe(`${p}:4:17: JSON: expected a value but found "]" (a trailing comma?)`);
    expect(configProblems(configErrorOf(() => readConfigFile(p)))).toEqual([{ file: p, line: 4, column: 17, message: 'JSON: expected a value but found "]" (a trailing comma?)' }]);
    const q = file("b.json", '{\n  "port": 1,\n  "s": {"k": 1,\n    "k": 2},\n  "port": 2\n}\n');
    expect(configErrorOf(() => readConfigFile(q)).message.split("\n")).toEqual([`${q}:4: s: duplicate key "k" (first set on line 3)`, `${q}:5: port: duplicate key (first set on line 2)`]);
    const r = file("c.json", "\n\n[1, 2]\n");
    expect(configErrorOf(() => readConfigFile(r)).message).toBe(`${r}:3: JSON: the top level must be an object ({ ... }), not an array`);
    const s = file("d.json", "");
    expect(configErrorOf(() => readConfigFile(s)).message).toBe(`${s}:1:1: JSON: the file is empty: write {} for an empty config`);
    const t = file("e.json", "{'a': 1}");
    expect(configErrorOf(() => readConfigFile(t)).message).toBe(`${t}:1:2: JSON: expected a key in double quotes but found "'"`);
  });

  test("JSON top-level key lines; a deeply nested file is no stack overflow", () => {
    const p = file("a.json", '{\n  "a": 1,\n  "b": {\n    "a": 2\n  },\n  "c": [\n    {"a": 3}\n  ]\n}\n');
    expect(Object.fromEntries(readConfigFile(p)!.lines)).toEqual({ a: 2, b: 3, c: 6 });
    const q = file("deep.json", `{"a": ${"[".repeat(200_000)}`);
    expect(configErrorOf(() => readConfigFile(q)).message).toBe(`${q}:1:200007: JSON: unexpected end of the file: a value is missing`);
  });

  test("an unknown extension says which are known", () => {
    const p = file("app.yaml", "a: 1\n");
    expect(configErrorOf(() => readConfigFile(p)).message).toBe(`${p}: unknown config file extension ".yaml": known are .conf, .env (key=value lines, as a file without extension), .toml and .json`);
  });
});

describe("reading the file", () => {
  test("a missing file: ENOENT with the path and what to do; optional gives undefined", () => {
    const p = join(dir, "nope.conf");
    const e = configErrorOf(() => readConfigFile(p));
    expect(e.message).toBe(`${p}: cannot read the config file: open failed: ENOENT (no such file: create it, or name another with --config)`);
    expect({ errno: e.errnoName, syscall: e.syscall, path: e.path }).toEqual({ errno: "ENOENT", syscall: "open", path: p });
    expect(readConfigFile(p, { optional: true })).toBeUndefined();
  });

  test("a directory: EISDIR", () => {
    const d = join(dir, "adir.conf");
    mkdirSync(d);
    const e = configErrorOf(() => readConfigFile(d));
    expect(e.message).toBe(`${d}: cannot read the config file: read failed: EISDIR (that path is a directory: name a file)`);
    expect(e.errnoName).toBe("EISDIR");
    // optional covers a missing file only, not a wrong one
    configErrorOf(() => readConfigFile(d, { optional: true }));
  });

  test("a 10 MB file is refused after fstat, without reading it", () => {
    const p = file("big.conf", "");
    truncateSync(p, 10 * 1024 * 1024);
    const rchar = () => Number(/^rchar:\s*(\d+)/m.exec(readFileSync("/proc/self/io", "utf8"))![1]);
    const before = rchar();
    const e = configErrorOf(() => readConfigFile(p));
    const read = rchar() - before;
    expect(e.message).toBe(`${p}: the config file is 10485760 bytes, more than the limit of 1048576 (1 MiB): is this the right file?`);
    expect(read).toBeLessThan(64 * 1024);
    // just under the limit is read
    const q = file("ok.conf", `${"# pad\n".repeat(174_762)}a=1\n`);
    expect(readConfigFile(q)!.values).toEqual({ a: 1 });
  });

  test("a FIFO is refused at once rather than waited on", async () => {
    const p = join(dir, "fifo.conf");
    expect((await run(["mkfifo", p])).code).toBe(0);
    expect(configErrorOf(() => readConfigFile(p)).message).toBe(`${p}: cannot read the config file: not a regular file (a FIFO, socket or device): name a file`);
  });

  test("not UTF-8: the line and the byte", () => {
    const p = file("latin1.conf", Uint8Array.from([...Buffer.from("a=1\nname=caf"), 0xe9, ...Buffer.from("\n")]));
    expect(configErrorOf(() => readConfigFile(p)).message).toBe(`${p}:2: not UTF-8 text: byte 0xe9 (byte 9 of the line) is not valid UTF-8: save the file as UTF-8`);
    const q = file("bom.conf", Uint8Array.from([0xef, 0xbb, 0xbf, ...Buffer.from("a=é\n")]));
    expect(readConfigFile(q)!.values).toEqual({ a: "é" });
    // an encoded surrogate (CESU-8) is not UTF-8 either
    const r = file("cesu.json", Uint8Array.from([...Buffer.from('{"a":"'), 0xed, 0xa0, 0x80, ...Buffer.from('"}')]));
    expect(configErrorOf(() => readConfigFile(r)).message).toBe(`${r}:1: not UTF-8 text: byte 0xed (byte 7 of the line) is not valid UTF-8: save the file as UTF-8`);
  });

  describe("an unreadable file (mode 000)", () => {
    // Root reads through mode bits: read it as nobody, from a copy of the runtime nobody may run.
    const asRoot = process.getuid!() === 0;
    const setpriv = Bun.which("setpriv");
    const others = asRoot && setpriv ? forOtherUsers() : undefined;
    const readAs = async (path: string) => {
      const r = await run([setpriv!, "--reuid=65534", "--regid=65534", "--clear-groups", others!.bun, others!.fixture("test/fixtures/config/read-as.ts"), path], { cwd: others!.root });
      expect(r.stderr).toBe("");
      return JSON.parse(r.stdout);
    };

    test.skipIf(asRoot && !setpriv)("EACCES with the path and what to do (as nobody when the tests run as root)", async () => {
      const p = file("secret.conf", "token=abc\n");
      const message = `${p}: cannot read the config file: open failed: EACCES (permission denied: make it readable by this user, or run as a user who may read it)`;
      if (asRoot) {
        expect(await readAs(p)).toEqual({ ok: true, values: { token: "abc" } }); // nobody can read it while it is 0644
        chmodSync(p, 0o000);
        expect(await readAs(p)).toEqual({ ok: false, name: "DaemonError", code: "CONFIG", errnoName: "EACCES", message });
      } else {
        chmodSync(p, 0o000);
        const e = configErrorOf(() => readConfigFile(p));
        expect({ message: e.message, errno: e.errnoName }).toEqual({ message, errno: "EACCES" });
      }
    }, 60_000);
  });
});

describe("library keys", () => {
  test("log_level in any case is lowercased; relative pid_file/log_file resolve against the file's directory; ids stay numbers", async () => {
    const p = file("d.conf", "log_level=WaRn\npid_file=run/d.pid\nlog_file=../d.log\nuser=65534\ngroup=nogroup\nport=1\n");
    const r = await loadConfig({}, p);
    const d = join(p, "..");
    expect(r.library).toEqual({ logLevel: "warn", pidFile: join(d, "run/d.pid"), logFile: join(d, "../d.log"), user: 65534, group: "nogroup" });
    expect(r.config).toEqual({ port: 1 });
    same<typeof r.config, Record<string, unknown>>(true);
  });

  test("bad library values are errors naming the line, all of them, also through libraryKeys", async () => {
    const p = file("d.conf", 'log_level=verbose\npid_file=""\nlog_file=12\nuser=a b\ngroup=-1\n');
    const lines = [
      `${p}:1: log_level: must be one of debug, info, warn, error (in any case), not "verbose"`,
      `${p}:2: pid_file: must be a path (non-empty text), not ""`,
      `${p}:3: log_file: must be a path (non-empty text), not 12`,
      `${p}:4: user: must be a user name or a whole-number uid (0-4294967294), not "a b"`,
      `${p}:5: group: must be a group name or a whole-number gid (0-4294967294), not -1`,
    ];
    expect(configErrorOf(() => libraryKeys(readConfigFile(p)!)).message.split("\n")).toEqual(lines);
    expect((await configErrorOfAsync(() => loadConfig({ schema: z.object({}) }, p))).message.split("\n")).toEqual(lines);
  });

  test("library keys never reach the app's schema: a strict schema need not list them", async () => {
    const r = await loadConfig({ schema: z.strictObject({ port: z.number(), max_connections: z.number() }) }, join(FIXTURES, "daemon.toml"));
    expect(r.library.logLevel).toBe("info");
  });
});

describe("validation", () => {
  test("a wrong type: the zod issue with file:line: key", async () => {
    const p = file("d.conf", "port=http\nmax_connections=10\n");
    const e = await configErrorOfAsync(() => loadConfig({ schema: seedSchema }, p));
    expect(e.message).toBe(`${p}:1: port: Invalid input: expected number, received string`);
    expect(configProblems(e)).toEqual([{ file: p, line: 1, key: "port", message: "Invalid input: expected number, received string" }]);
  });

  test("one problem per issue; a missing key has no line and comes last; nested paths name the rest", async () => {
    const p = file("d.toml", 'mode = "slow"\n\n[server]\nport = "x"\n');
    const schema = z.object({ port: z.number(), mode: z.enum(["fast", "safe"]), server: z.object({ port: z.number() }) });
    const e = await configErrorOfAsync(() => loadConfig({ schema }, p));
    expect(e.message.split("\n")).toEqual([
      `${p}:1: mode: Invalid option: expected one of "fast"|"safe"`,
      `${p}:3: server: port: Invalid input: expected number, received string`,
      `${p}: port: Invalid input: expected number, received undefined`,
    ]);
  });

  test("unknown keys under a strict schema: one problem per key, at its line", async () => {
    const p = file("d.json", '{\n  "port": 1,\n  "prot": 2,\n  "hots": "h"\n}\n');
    const e = await configErrorOfAsync(() => loadConfig({ schema: z.strictObject({ port: z.number() }) }, p));
    expect(e.message.split("\n")).toEqual([`${p}:3: prot: unknown key: the schema does not allow it`, `${p}:4: hots: unknown key: the schema does not allow it`]);
    const q = file("d.conf", "port=1\nprot=2\n");
    expect((await configErrorOfAsync(() => loadConfig({ schema: z.strictObject({ port: z.number() }) }, q))).message).toBe(`${q}:2: prot: Unrecognized key: "prot"`);
  });

  test("a plain function schema: its return value, typed; a throw is one problem, at the line of a `key` it names", async () => {
    const p = file("d.conf", "port=80\nhost=h\n");
    const r = await loadConfig({ schema: (raw) => ({ port: Number(raw.port), host: String(raw.host) }) }, p);
    same<typeof r.config, { port: number; host: string }>(true);
    expect(r.config).toEqual({ port: 80, host: "h" });
    const asyncR = await loadConfig({ schema: async (raw) => ({ n: raw.port as number }) }, p);
    same<typeof asyncR.config, { n: number }>(true);
    expect(asyncR.config).toEqual({ n: 80 });

    const plain = await configErrorOfAsync(() => loadConfig({ schema: () => { throw new Error("port 80 needs root"); } }, p));
    expect(plain.message).toBe(`${p}: port 80 needs root`);
    const keyed = await configErrorOfAsync(() =>
      loadConfig({ schema: () => { throw Object.assign(new Error("must not be h"), { key: "host" }); } }, p),
    );
    expect(keyed.message).toBe(`${p}:2: host: must not be h`);
    const weird = await configErrorOfAsync(() => loadConfig({ schema: () => { throw null; } }, p));
    expect(weird.message).toBe(`${p}: null`);
  });

  test("a hand-written Standard Schema: async validate, { key } path segments, typed output", async () => {
    const schema: StandardSchemaV1<unknown, { port: number }> = {
      "~standard": {
        version: 1,
        vendor: "test",
        validate: async (v) => {
          const port = (v as Record<string, unknown>).port;
          return typeof port === "number" ? { value: { port } } : { issues: [{ message: "want a number", path: [{ key: "port" }] }, { message: "and more", path: [Symbol("sym")] }, { message: "root" }] };
        },
      },
    };
    const ok = await loadConfig({ schema }, file("d.conf", "port=9\n"));
    same<typeof ok.config, { port: number }>(true);
    expect(ok.config).toEqual({ port: 9 });
    const p = file("d.conf", "a=1\nport=x\n");
    expect((await configErrorOfAsync(() => loadConfig({ schema }, p))).message.split("\n")).toEqual([`${p}:2: port: want a number`, `${p}: sym: and more`, `${p}: root`]);
    const throwing: StandardSchemaV1 = { "~standard": { version: 1, vendor: "t", validate: () => { throw new TypeError("boom"); } } };
    expect((await configErrorOfAsync(() => loadConfig({ schema: throwing }, p))).message).toBe(`${p}: the config schema threw: boom`);
  });
});

describe("defaults and which file", () => {
  const schema = z.object({ port: z.number(), host: z.string() });

  test("defaults are merged under the file's values (the file wins)", async () => {
    const p = file("d.conf", "port=81\n");
    const r = await loadConfig({ file: p, schema, defaults: { port: 80, host: "localhost" } });
    expect(r).toEqual({ file: p, config: { port: 81, host: "localhost" }, library: {} });
  });

  test("a missing default file with defaults is fine: the config is the defaults", async () => {
    const missing = join(dir, "absent.conf");
    const r = await loadConfig({ file: missing, schema, defaults: { port: 80, host: "localhost", log_level: "DEBUG" } });
    expect(r).toEqual({ file: undefined, config: { port: 80, host: "localhost" }, library: { logLevel: "debug" } });
    // bad defaults are reported as such
    const e = await configErrorOfAsync(() => loadConfig({ file: missing, schema, defaults: { port: "80" } }));
    expect(e.message.split("\n")).toEqual(["config defaults: port: Invalid input: expected number, received string", "config defaults: host: Invalid input: expected string, received undefined"]);
  });

  test("a missing default file without defaults, or a missing explicit file, is an error", async () => {
    const missing = join(dir, "absent.conf");
    const enoent = `${missing}: cannot read the config file: open failed: ENOENT (no such file: create it, or name another with --config)`;
    expect((await configErrorOfAsync(() => loadConfig({ file: missing, schema }))).message).toBe(enoent);
    expect((await configErrorOfAsync(() => loadConfig({ file: join(FIXTURES, "daemon.conf"), schema, defaults: { port: 1, host: "h" } }, missing))).message).toBe(enoent);
  });

  test("the explicit path wins over the default file; no file at all validates the defaults", async () => {
    const a = file("a.conf", "port=1\nhost=a\n");
    const b = file("b.conf", "port=2\nhost=b\n");
    expect((await loadConfig({ file: a, schema }, b)).config).toEqual({ port: 2, host: "b" });
    expect(await loadConfig({ schema, defaults: { port: 3, host: "d" } })).toEqual({ file: undefined, config: { port: 3, host: "d" }, library: {} });
  });
});

// ---------------------------------------------------------------- fuzz

describe("fuzz", () => {
  test("10 000 generated config files: a result or a CONFIG error naming the file on every line, never anything else", async () => {
    const random = prng(0x5eed);
    const int = (k: number) => Math.floor(random() * k);
    const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
    const junkChars = ["=", '"', "'", "#", "\\", " ", "\t", "[", "]", "{", "}", ",", ":", "\u0000", "\u001b", "\r", "é", "\u2028", "\ud800", "😀", "\uFFFD"];
    const junk = (len: number) => Array.from({ length: len }, () => (random() < 0.5 ? pick(junkChars) : String.fromCharCode(32 + int(95)))).join("");
    const schema = z.strictObject({ port: z.number().int(), name: z.string().optional(), debug: z.boolean().optional(), ratio: z.number().optional() });
    const fuzzDir = join(dir, "fuzz");
    mkdirSync(fuzzDir);

    const kvClean = () => {
      const lines = [pick(["port=8080", "port = 80", " port=1 # c"])];
      if (random() < 0.5) lines.push(pick(['name="x \\"y\\""', "name='lit'", "name=plain text"]));
      if (random() < 0.3) lines.push(pick(["debug=true", "debug=false"]));
      if (random() < 0.3) lines.push("ratio=0.5");
      if (random() < 0.3) lines.push(`log_level=${pick(["INFO", "debug", "Warn"])}`);
      if (random() < 0.3) lines.push("# comment", "");
      return lines;
    };

    let results = 0;
    let errors = 0;
    const t0 = performance.now();
    for (let i = 0; i < 10_000; i++) {
      const format = pick(["conf", "toml", "json"] as const);
      const path = join(fuzzDir, `f${i % 50}.${format}`);
      let text: string | Uint8Array;
      // Known-clean inputs must pass: the fuzz would notice a reader that rejects too much.
      const clean = random() < 0.2;
      if (format === "conf") {
        const lines = kvClean();
        if (!clean) {
          for (let k = int(6); k >= 0; k--) {
            const at = int(lines.length + 1);
            lines.splice(at, 0, pick([junk(1 + int(30)), `port=${junk(int(8))}`, `${junk(int(5))}=${junk(int(5))}`, "port=9", '"="', "'", "log_level=loud", `k${int(3)}=${junk(int(4))}`, `big=${"x".repeat(int(200_000))}`]));
          }
        }
        text = lines.join(random() < 0.1 ? "\r\n" : "\n");
      } else if (format === "toml") {
        const lines = ["port = 8080", 'name = "x"', ...(random() < 0.5 ? ["ratio = 0.5"] : []), ...(random() < 0.3 ? ["# c", ""] : [])];
        if (!clean) {
          for (let k = int(5); k >= 0; k--) lines.splice(int(lines.length + 1), 0, pick([junk(1 + int(20)), "port = 1", "[t]", "a = [", '"""', `k = "${junk(int(6))}"`, "[[x]]", `big = "${"y".repeat(int(200_000))}"`, "debug = yes"]));
        }
        text = lines.join("\n");
      } else {
        const obj: Record<string, unknown> = { port: 8080, ...(random() < 0.5 ? { name: "x" } : {}), ...(random() < 0.3 ? { debug: true } : {}) };
        let s = JSON.stringify(obj, null, random() < 0.5 ? 2 : undefined);
        if (!clean) {
          for (let k = int(4); k >= 0; k--) {
            const at = int(s.length + 1);
            const op = int(4);
            if (op === 0) s = s.slice(0, at) + junk(1 + int(4)) + s.slice(at);
            else if (op === 1) s = s.slice(0, at) + s.slice(at + 1 + int(3));
            else if (op === 2) s = s.replace("{", '{"port": 1, ');
            else s = s.slice(0, at);
          }
        }
        text = s;
      }
      if (!clean && random() < 0.05) {
        // raw bytes that may not be UTF-8
        const bytes = Buffer.from(text as string);
        for (let k = 0; k < 3; k++) bytes[int(bytes.length)] = 0x80 + int(128);
        text = bytes;
      }
      writeFileSync(path, text);
      try {
        const read = readConfigFile(path)!;
        libraryKeys(read);
        const r = await loadConfig({ schema }, path);
        expect(typeof r.config.port).toBe("number");
        results++;
      } catch (err) {
        if (!(err instanceof DaemonError) || err.code !== "CONFIG") throw new Error(`input ${i} (${path}) threw ${String(err)}: ${JSON.stringify(String(text).slice(0, 300))}`);
        for (const line of err.message.split("\n")) if (!line.startsWith(`${path}`)) throw new Error(`input ${i}: a line does not name the file: ${JSON.stringify(line)}`);
        const problems: ConfigProblem[] | undefined = configProblems(err);
        expect(problems?.length).toBeGreaterThan(0);
        if (clean) throw new Error(`clean input ${i} rejected: ${err.message}\n${JSON.stringify(String(text))}`);
        errors++;
      }
    }
    // Both outcomes happen: a generator that only ever made one kind would test little.
    expect(results).toBeGreaterThan(1000);
    expect(errors).toBeGreaterThan(1000);
    console.log(`fuzz: ${results} valid, ${errors} rejected, ${Math.round(performance.now() - t0)} ms`);
  }, 120_000);
});

// Type-level only (checked by `tsc --noEmit`, never run): a callable Standard Schema (as arktype's
// types are) is typed from its Standard Schema output, not its call signature.
declare class ArkErrorsLike {
  readonly summary: string;
}
interface CallableSchema<O> {
  (data: unknown): O | ArkErrorsLike;
  readonly "~standard": StandardSchemaV1.Props<unknown, O>;
}
export async function typeChecks(callable: CallableSchema<{ a: number }>) {
  const r = await loadConfig({ schema: callable });
  same<typeof r.config, { a: number }>(true);
  const untyped = await loadConfig({ file: "x.conf", defaults: {} });
  same<typeof untyped.config, Record<string, unknown>>(true);
}
