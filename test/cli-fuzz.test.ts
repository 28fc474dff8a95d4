/**
 * Bounded, seeded fuzz of the command line and the config files it reads
 * (issue 10): never a crash, never a stack trace at the user, never exit 0
 * on invalid input. 10 000 command lines through the parser in-process, then
 * a few hundred real runs of a daemon's CLI, each with a generated command
 * line and a generated config file whose validity is known by construction.
 */
import { describe, expect, test } from "bun:test";
import { chmodSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { COMMANDS, parseArgv } from "../src/argv.ts";
import { DaemonError } from "../src/errors.ts";
import { BUN, cleanupProcesses, prng, ROOT, run, tempDir } from "./helpers.ts";

cleanupProcesses();
const APP = join(ROOT, "test/fixtures/config-app.ts");
const dir = tempDir("bd-fuzz-");
chmodSync(dir, 0o755);

const TOKENS = [
  ...COMMANDS, "--pid-file", "--pid-file=/tmp/x.pid", "/tmp/x.pid", "--log-file", "--ready-timeout", "100", "-1", "1e3", "0x10", "--timeout", "2.5", "2.5555",
  "--kill", "--daemon", "--user", "nobody", "--group", "--config", "a.conf", "--log-level", "INFO", "loud", "--log-target", "syslog", "nowhere",
  "--no-wait", "--json", "--ready", "--type", "forking", "--shutdown-hooks", "--port", "8080", "-p", "--verbose", "--no-verbose", "--", "-", "",
  "--=", "-h", "--help=1", "--bogus", "\u0000", "é", "--port=", "x".repeat(300),
];

describe("the parser, in-process", () => {
  test("10 000 seeded command lines: a result or a one-line USAGE error (exit 2), nothing else", () => {
    const rand = prng(0xb0d);
    const appArgs = { port: { type: "string", alias: "p", default: "8090" }, verbose: { type: "boolean" } } as const;
    let ok = 0;
    for (let i = 0; i < 10_000; i++) {
      const argv = Array.from({ length: Math.floor(rand() * 7) }, () => TOKENS[Math.floor(rand() * TOKENS.length)]!);
      try {
        parseArgv(argv, appArgs);
        ok++;
      } catch (err) {
        if (!(err instanceof DaemonError) || err.code !== "USAGE" || err.exitCode !== 2 || err.message.includes("\n")) {
          throw new Error(`argv ${JSON.stringify(argv)}: ${err instanceof DaemonError ? `${err.code} ${err.exitCode}` : "not a DaemonError"}: ${String(err)}`);
        }
      }
    }
    // Both outcomes were reached: the generator is not all garbage.
    expect(ok).toBeGreaterThan(500);
    expect(ok).toBeLessThan(9_500);
  });
});

type Validity = "valid" | "syntax" | "schema";

/**
 * A config file for config-app.ts (strict zod schema) and what is wrong
 * with it: "syntax" (a bad line or library key: every command reads those),
 * "schema" (only the schema, which check and the daemon apply, rejects it).
 */
function config(rand: () => number, n: number): { text: string; validity: Validity } {
  const lines = [`port=${1024 + Math.floor(rand() * 60000)}`, `pid_file=${join(dir, `f${n}.pid`)}`];
  if (rand() < 0.5) lines.push(`greeting="${"hé #x'".slice(0, Math.floor(rand() * 6))}"`);
  if (rand() < 0.5) lines.push(`log_level=${["INFO", "debug", "Warn", "error"][Math.floor(rand() * 4)]}`);
  if (rand() < 0.3) lines.push("# a comment", "");
  const syntax = ["greeting", "=x", "log_level=loud", 'greeting="unterminated', "k y=1", "\u0000=\u0001", "pid_file=", `max_connections=${Number.MAX_SAFE_INTEGER}0`, "port=1", "log_file="];
  const schema = ["unknown_key=1", "max_connections=-5", "fail_reload=maybe", "slow_reload_ms=fast", "max_connections=1.5"];
  const r = rand();
  const validity: Validity = r < 0.3 ? "syntax" : r < 0.55 ? "schema" : "valid";
  const pool = validity === "syntax" ? syntax : schema;
  if (validity !== "valid") lines.splice(Math.floor(rand() * (lines.length + 1)), 0, pool[Math.floor(rand() * pool.length)]!);
  return { text: `${lines.join("\n")}\n`, validity };
}

/** A command line for `cmd` and whether the parser must accept it. */
function commandLine(rand: () => number, cmd: "check" | "status" | "stop" | "reload", conf: string): { argv: string[]; valid: boolean } {
  const own: Record<typeof cmd, string[][]> = {
    check: [],
    status: [["--json"], ["--ready"]],
    stop: [["--timeout", "1"], ["--kill"]],
    reload: [["--no-wait"], ["--timeout", "1"]],
  };
  const argv = [cmd, "--config", conf];
  for (const opt of own[cmd]) if (rand() < 0.5) argv.push(...opt);
  const wrong = [["--bogus"], ["--timeout"], ["--timeout=abc"], ["extra"], ["--port", "1"], ["--json", "--json"], ["--config"], ["-x"], ...(cmd === "status" ? [] : [["--ready"]]), ...(cmd === "check" ? [["--pid-file", "/tmp/p"]] : [])];
  const invalid = rand() < 0.4;
  if (invalid) argv.splice(1 + Math.floor(rand() * argv.length), 0, ...wrong[Math.floor(rand() * wrong.length)]!);
  // Options go before or after the command word alike.
  if (rand() < 0.5 && !invalid) argv.push(argv.shift()!);
  return { argv, valid: !invalid };
}

describe("real runs of the CLI", () => {
  test("300 seeded command lines and config files: the exit status follows from the input, never 0 when it is invalid, never a stack trace", async () => {
    const rand = prng(0x5eed);
    const cmds = ["check", "status", "stop", "reload"] as const;
    // check validates everything; the others read only the library's keys (a schema error is the daemon's to find).
    const expected: Record<(typeof cmds)[number], Record<Validity, number>> = {
      check: { valid: 0, syntax: 1, schema: 1 },
      status: { valid: 3, syntax: 4, schema: 3 },
      stop: { valid: 0, syntax: 1, schema: 0 },
      reload: { valid: 7, syntax: 1, schema: 7 },
    };
    const cases = Array.from({ length: 300 }, (_, n) => {
      const conf = join(dir, `f${n}.conf`);
      const c = config(rand, n);
      writeFileSync(conf, c.text);
      const cmd = cmds[Math.floor(rand() * cmds.length)]!;
      const line = commandLine(rand, cmd, conf);
      const want = !line.valid ? 2 : expected[cmd][c.validity];
      return { n, cmd, argv: line.argv, want, text: c.text };
    });
    const failures: string[] = [];
    // A few at a time: each is a process start.
    for (let i = 0; i < cases.length; i += 8) {
      await Promise.all(cases.slice(i, i + 8).map(async (k) => {
        const r = await run([BUN, APP, ...k.argv], { env: { CFG_NAME: `fuzz${process.pid}-${k.n}` } });
        const trace = /^\s+at \S/m.test(r.stderr) || r.stderr.includes("error: ");
        // A usage error or a bad config says why on stderr.
        if (r.code !== k.want || trace || ((k.want === 1 || k.want === 2) && r.stderr === "")) {
          failures.push(`#${k.n} ${JSON.stringify(k.argv)} with ${JSON.stringify(k.text)}: exit ${r.code}, wanted ${k.want}; stderr ${JSON.stringify(r.stderr.slice(0, 300))}`);
        }
      }));
    }
    expect(failures).toEqual([]);
  }, 180_000);
});
