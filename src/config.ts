/**
 * Config files: read, parse and validate one, reporting every problem as `file:line: key: message`.
 *
 * The keys the library understands are checked and taken out; the app's schema validates the rest.
 *
 * Formats, by the file's extension:
 * - `.conf`, `.env` or none (also a dotfile such as `.env`): `key=value` lines. Blank lines and
 *   lines starting with `#` are ignored; whitespace around the key, the `=` and at the line's
 *   ends is trimmed. Keys match `[A-Za-z_][A-Za-z0-9_.-]*` and are case-sensitive. A value is
 *   - double-quoted: `"a \"b\"\n"` with the escapes `\"` `\\` `\n` `\t` (any other is an error),
 *   - single-quoted: `'C:\dir'`, literal,
 *   - or unquoted: the rest of the line. An unquoted value ends at a `#` that follows
 *     whitespace (`port=80 # http` is 80), so `color=#fff` and `url=http://h/#top` keep
 *     their `#`. After a closing quote only whitespace or such a comment may follow.
 *   Unquoted values that are exactly an integer or decimal (`/^-?\d+(\.\d+)?$/`) become
 *   numbers (an integer beyond 2^53 is an error: quote it), exactly `true`/`false` booleans,
 *   anything else (also the empty value) a string; a quoted value is always a string. So
 *   `port=8080` reaches the schema as the number 8080, as `port = 8080` in TOML and
 *   `{"port": 8080}` in JSON do: one schema (`z.number()`) serves all three formats. Mind
 *   that `umask=0022` is the number 22: quote values whose leading zeros matter.
 *   A key set twice is an error naming both lines. Values are one line each.
 * - `.toml`: Bun's TOML parser. Its errors carry no position; the line is found by parsing
 *   prefixes of the file (an unterminated array or string is reported at the end of the file).
 * - `.json`: JSON.parse; syntax errors get line and column, duplicate keys are errors.
 * The top level is an object (table) in every format. Files are UTF-8 (a BOM is skipped),
 * regular files, at most 1 MiB.
 *
 * Library keys (top level only): `pid_file`, `log_file` (paths, relative ones resolved against
 * the config file's directory, as nginx resolves includes), `log_level` (debug, info, warn,
 * error in any case), `user`, `group` (a name or a whole-number id). They are checked here and
 * removed before the app's schema sees the values, so a strict schema need not list them.
 */
import { constants, fstatSync, openSync, closeSync, readSync } from "node:fs";
import { dirname, extname, resolve } from "node:path";
import { formatOf, isRecord, parseConfigText, show, type Parsed } from "./config-formats.ts";
import { DaemonError, errnoNumber, errorText } from "./errors.ts";

/** The Standard Schema v1 interface (https://standardschema.dev), as `@standard-schema/spec` publishes it. */
export interface StandardSchemaV1<Input = unknown, Output = Input> {
  /** The Standard Schema properties. */
  readonly "~standard": StandardSchemaV1.Props<Input, Output>;
}

export declare namespace StandardSchemaV1 {
  /** The Standard Schema properties interface. */
  export interface Props<Input = unknown, Output = Input> {
    /** The version number of the standard. */
    readonly version: 1;
    /** The vendor name of the schema library. */
    readonly vendor: string;
    /** Validates unknown input values. */
    readonly validate: (value: unknown, options?: Options | undefined) => Result<Output> | Promise<Result<Output>>;
    /** Inferred types associated with the schema. */
    readonly types?: Types<Input, Output> | undefined;
  }
  /** The result interface of the validate function. */
  export type Result<Output> = SuccessResult<Output> | FailureResult;
  /** The result interface if validation succeeds. */
  export interface SuccessResult<Output> {
    /** The typed output value. */
    readonly value: Output;
    /** The absence of issues indicates success. */
    readonly issues?: undefined;
  }
  /** Options of the validate function. */
  export interface Options {
    /** Implicit support for additional vendor-specific parameters, if needed. */
    readonly libraryOptions?: Record<string, unknown> | undefined;
  }
  /** The result interface if validation fails. */
  export interface FailureResult {
    /** The issues of failed validation. */
    readonly issues: ReadonlyArray<Issue>;
  }
  /** The issue interface of the failure output. */
  export interface Issue {
    /** The error message of the issue. */
    readonly message: string;
    /** The path of the issue, if any. */
    readonly path?: ReadonlyArray<PropertyKey | PathSegment> | undefined;
  }
  /** The path segment interface of the issue. */
  export interface PathSegment {
    /** The key representing a path segment. */
    readonly key: PropertyKey;
  }
  /** The Standard Schema types interface. */
  export interface Types<Input = unknown, Output = Input> {
    /** The input type of the schema. */
    readonly input: Input;
    /** The output type of the schema. */
    readonly output: Output;
  }
}

/**
 * Validates the app's keys (the library keys already taken out, `defaults` merged under):
 * a Standard Schema v1 validator (zod, valibot, arktype…), or a function that returns the
 * config (or a Promise of it) and throws on invalid input. A thrown error with a string `key`
 * property is reported at that key's line.
 */
export type ConfigSchema<T> = StandardSchemaV1<unknown, T> | ((raw: Record<string, unknown>) => T | Promise<T>);

/** Where the config comes from and how it is checked. */
export interface ConfigOptions<T> {
  /**
   * The default config file (relative: to the working directory). `--config PATH` (the
   * `explicitPath` of loadConfig) overrides it. When it is missing and `defaults` is given,
   * the config is the defaults; missing without `defaults`, it is an error.
   * Default: none (only `--config` names a file; without one the config is the defaults).
   */
  file?: string;
  /** Validates and types the app's keys. Default: none (the values are passed as they are, untyped). */
  schema?: ConfigSchema<T>;
  /**
   * Values merged under the file's (the file wins; shallow: a TOML table in the file replaces
   * the default's whole table) before validation. Default: none.
   */
  defaults?: Record<string, unknown>;
}

/** The keys the library itself understands, checked and normalized. */
export interface LibraryConfig {
  /** `pid_file`, absolute (a relative path is resolved against the config file's directory). */
  pidFile?: string;
  /** `log_file`, absolute (a relative path is resolved against the config file's directory). */
  logFile?: string;
  /** `log_level`, lowercased (`INFO` is `info`). */
  logLevel?: "debug" | "info" | "warn" | "error";
  /** `user`: a name, or a uid when the file gives a whole number. */
  user?: string | number;
  /** `group`: a name, or a gid when the file gives a whole number. */
  group?: string | number;
}

/** One thing wrong with a config, formatted by formatProblem. */
export interface ConfigProblem {
  /** The config file, absolute (or `config defaults` when the problem is in the defaults and no file was read). */
  file: string;
  /** 1-based line, when known. */
  line?: number;
  /** 1-based column (JSON syntax errors), when known. */
  column?: number;
  /** The top-level key the problem is about, when known. */
  key?: string;
  message: string;
}

/** A parsed config file: its absolute path, top-level values, and the line each top-level key is set on. */
export interface ConfigRead {
  file: string;
  values: Record<string, unknown>;
  lines: Map<string, number>;
}

/** What loadConfig returns. */
export interface LoadedConfig<T> {
  /** The file read (absolute); undefined when none was (no path, or a missing default file with defaults). */
  file: string | undefined;
  /** The schema's output (without a schema: the values, library keys taken out). */
  config: T;
  library: LibraryConfig;
}

const MAX_BYTES = 1 << 20;
/** More than this many problems are cut off with a count: a binary file must not produce a 50 MB message. */
const MAX_PROBLEMS = 100;
const LEVELS = ["debug", "info", "warn", "error"] as const;
const LIBRARY_KEYS = new Set(["pid_file", "log_file", "log_level", "user", "group"]);
const DEFAULTS_LABEL = "config defaults";

const problemsOf = new WeakMap<DaemonError, ConfigProblem[]>();

/** The problems behind a CONFIG error thrown by this module; undefined for any other value. */
export function configProblems(err: unknown): ConfigProblem[] | undefined {
  return err instanceof DaemonError ? problemsOf.get(err) : undefined;
}

// Control characters (a newline would split one problem into two lines, an ESC would drive the terminal) as escapes.
const printable = (s: string): string =>
  s.replace(/[\u0000-\u001f\u007f\u2028\u2029]/g, (c) => (c === "\t" ? "\\t" : c === "\n" ? "\\n" : `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`));

/** `file:line:column: key: message`, leaving out what is unknown; always one line. */
export function formatProblem(p: ConfigProblem): string {
  const where = p.line === undefined ? "" : p.column === undefined ? `:${p.line}` : `:${p.line}:${p.column}`;
  return printable(`${p.file}${where}: ${p.key === undefined ? "" : `${p.key}: `}${p.message}`);
}

function configError(problems: ConfigProblem[], opts: { errno?: number; syscall?: string; path?: string } = {}): DaemonError {
  // Stable: in file order, problems without a line (a missing key) last.
  let shown = [...problems].sort((a, b) => (a.line ?? Number.MAX_SAFE_INTEGER) - (b.line ?? Number.MAX_SAFE_INTEGER));
  if (problems.length > MAX_PROBLEMS) {
    shown = shown.slice(0, MAX_PROBLEMS);
    shown.push({ file: problems[0]!.file, message: `... and ${problems.length - MAX_PROBLEMS} more problems` });
  }
  const err = new DaemonError("CONFIG", shown.map(formatProblem).join("\n"), opts);
  problemsOf.set(err, shown);
  return err;
}

/** A short, quoted, escaped rendering of user text for a message. */

// ---------------------------------------------------------------- reading

const READ_HINTS: Record<string, string> = {
  ENOENT: "no such file: create it, or name another with --config",
  EACCES: "permission denied: make it readable by this user, or run as a user who may read it",
  EPERM: "not permitted: check the permissions",
  EISDIR: "that path is a directory: name a file",
  ENOTDIR: "a component of the path is not a directory",
  ELOOP: "too many symbolic links in the path",
  ENAMETOOLONG: "the path is too long",
  EMFILE: "too many open files: raise RLIMIT_NOFILE",
};

function readFailure(file: string, syscall: string, name: string): DaemonError {
  const hint = READ_HINTS[name];
  const errno = errnoNumber(name);
  return configError([{ file, message: `cannot read the config file: ${syscall} failed: ${name}${hint ? ` (${hint})` : ""}` }], {
    ...(errno === undefined ? {} : { errno }),
    syscall,
    path: file,
  });
}

function nodeErrorName(err: unknown): string {
  try {
    const code = (err as NodeJS.ErrnoException | undefined)?.code;
    return typeof code === "string" ? code : errorText(err);
  } catch {
    return errorText(err);
  }
}

/** The file's bytes, or undefined when `optional` and it does not exist. Never reads more than MAX_BYTES + 1. */
function readBytes(file: string, optional: boolean): Uint8Array | undefined {
  let fd: number;
  try {
    // O_NONBLOCK: a FIFO named as the config must not hang the launcher in open(2).
    fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    const name = nodeErrorName(err);
    if (optional && name === "ENOENT") return undefined;
    throw readFailure(file, "open", name);
  }
  try {
    let st: ReturnType<typeof fstatSync>;
    try {
      st = fstatSync(fd);
    } catch (err) {
      throw readFailure(file, "fstat", nodeErrorName(err));
    }
    if (st.isDirectory()) throw readFailure(file, "read", "EISDIR");
    if (!st.isFile()) throw configError([{ file, message: "cannot read the config file: not a regular file (a FIFO, socket or device): name a file" }], { path: file });
    if (st.size > MAX_BYTES) {
      throw configError([{ file, message: `the config file is ${st.size} bytes, more than the limit of ${MAX_BYTES} (1 MiB): is this the right file?` }], { path: file });
    }
    // One byte more than fstat said, to see a file that grew since.
    let buf = new Uint8Array(st.size + 1);
    let total = 0;
    for (;;) {
      if (total === buf.length) {
        if (buf.length > MAX_BYTES) throw configError([{ file, message: `the config file grew past the limit of ${MAX_BYTES} bytes (1 MiB) while it was read` }], { path: file });
        const bigger = new Uint8Array(Math.min(buf.length * 2, MAX_BYTES + 1));
        bigger.set(buf);
        buf = bigger;
      }
      let n: number;
      try {
        n = readSync(fd, buf, total, buf.length - total, null);
      } catch (err) {
        throw readFailure(file, "read", nodeErrorName(err));
      }
      if (n === 0) break;
      total += n;
    }
    return buf.subarray(0, total);
  } finally {
    try {
      closeSync(fd);
    } catch {}
  }
}

/** Offset of the first byte that is not part of valid UTF-8 (RFC 3629), or -1. */
function firstInvalidUtf8(b: Uint8Array): number {
  let i = 0;
  while (i < b.length) {
    const c = b[i]!;
    if (c < 0x80) {
      i++;
      continue;
    }
    let need: number;
    let lo = 0x80;
    let hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) need = 1;
    else if (c >= 0xe0 && c <= 0xef) {
      need = 2;
      if (c === 0xe0) lo = 0xa0; // overlong
      if (c === 0xed) hi = 0x9f; // surrogates
    } else if (c >= 0xf0 && c <= 0xf4) {
      need = 3;
      if (c === 0xf0) lo = 0x90;
      if (c === 0xf4) hi = 0x8f;
    } else return i;
    for (let k = 1; k <= need; k++) {
      const d = b[i + k];
      if (d === undefined) return i;
      // The sequence's first byte is the one to name: it starts what is broken.
      if (k === 1 ? d < lo || d > hi : d < 0x80 || d > 0xbf) return i;
    }
    i += need + 1;
  }
  return -1;
}

function decode(file: string, bytes: Uint8Array): string {
  try {
    // fatal: a Latin-1 file must not become U+FFFD soup that then validates.
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    const at = firstInvalidUtf8(bytes);
    if (at < 0) throw configError([{ file, message: "the config file is not UTF-8 text: save it as UTF-8" }], { path: file });
    let line = 1;
    let start = 0;
    for (let i = 0; i < at; i++) {
      if (bytes[i] === 0x0a) {
        line++;
        start = i + 1;
      }
    }
    const byte = bytes[at]!.toString(16).padStart(2, "0");
    throw configError([{ file, line, message: `not UTF-8 text: byte 0x${byte} (byte ${at - start + 1} of the line) is not valid UTF-8: save the file as UTF-8` }], { path: file });
  }
}

/**
 * Read and parse one config file (synchronously: the launcher calls it before it forks).
 * The format follows the extension (see the module's comment). Throws DaemonError CONFIG
 * naming the file (and line) for a file that is missing, unreadable, a directory, not a
 * regular file, over 1 MiB, not UTF-8, of an unknown extension, or malformed, with every
 * problem of the file (see configProblems).
 * @param path the file; a relative path is resolved against the working directory.
 * @param opts.optional a missing file (ENOENT) returns undefined instead of throwing. Default: false.
 * @returns the absolute path, the top-level values and each top-level key's line.
 */
export function readConfigFile(path: string, opts: { optional?: boolean } = {}): ConfigRead | undefined {
  if (typeof path !== "string" || path === "") throw configError([{ file: String(path), message: "the config file path is empty: name a file" }]);
  const file = resolve(path);
  const format = formatOf(file);
  if (format === undefined) {
    throw configError([{ file, message: `unknown config file extension ${show(extname(file).toLowerCase())}: known are .conf, .env (key=value lines, as a file without extension), .toml and .json` }], { path: file });
  }
  const bytes = readBytes(file, opts.optional === true);
  if (bytes === undefined) return undefined;
  const text = decode(file, bytes);
  let parsed: Parsed;
  try {
    parsed = parseConfigText(file, text, format);
  } catch (err) {
    // Should a parser of ours throw on some input after all, it is still this file's problem, not a stack trace.
    throw configError([{ file, message: `cannot parse the config file: ${errorText(err)}` }], { path: file });
  }
  if (parsed.problems.length > 0) throw configError(parsed.problems, { path: file });
  return { file, values: parsed.values, lines: parsed.lines };
}

/**
 * The file `opts` names, read (sync): `explicitPath` (--config) over
 * `opts.file`. Undefined when neither names one, or when the default file
 * is missing and `defaults` stand in for it; a missing --config file is
 * always an error. Throws CONFIG as readConfigFile does.
 */
export function readConfig(opts: ConfigOptions<unknown>, explicitPath?: string): ConfigRead | undefined {
  const path = explicitPath ?? opts.file;
  return path === undefined ? undefined : readConfigFile(path, { optional: explicitPath === undefined && opts.defaults !== undefined });
}

// ---------------------------------------------------------------- library keys

interface Origin {
  file: string;
  line?: number;
  /** Directory relative paths are resolved against. */
  base: string;
}

function libraryFrom(values: Record<string, unknown>, origin: (key: string) => Origin): { library: LibraryConfig; problems: ConfigProblem[] } {
  const library: LibraryConfig = {};
  const problems: ConfigProblem[] = [];
  const bad = (key: string, message: string): void => {
    const o = origin(key);
    problems.push({ file: o.file, ...(o.line === undefined ? {} : { line: o.line }), key, message });
  };
  const shown = (v: unknown): string => (typeof v === "string" ? show(v) : Array.isArray(v) ? "an array" : v === null ? "null" : typeof v === "object" ? "an object" : String(v));
  for (const [key, field] of [["pid_file", "pidFile"], ["log_file", "logFile"]] as const) {
    if (!Object.hasOwn(values, key)) continue;
    const v = values[key];
    if (typeof v !== "string" || v === "" || v.includes("\0")) bad(key, `must be a path (non-empty text), not ${shown(v)}`);
    else library[field] = resolve(origin(key).base, v);
  }
  if (Object.hasOwn(values, "log_level")) {
    const v = values.log_level;
    const level = typeof v === "string" ? v.toLowerCase() : undefined;
    if (level !== undefined && (LEVELS as readonly string[]).includes(level)) library.logLevel = level as LibraryConfig["logLevel"];
    else bad("log_level", `must be one of ${LEVELS.join(", ")} (in any case), not ${shown(v)}`);
  }
  for (const [key, id] of [["user", "uid"], ["group", "gid"]] as const) {
    if (!Object.hasOwn(values, key)) continue;
    const v = values[key];
    if (typeof v === "number" ? Number.isInteger(v) && v >= 0 && v <= 4294967294 : typeof v === "string" && /^[^\s:/\0]+$/.test(v)) library[key] = v as string | number;
    else bad(key, `must be a ${key} name or a whole-number ${id} (0-4294967294), not ${shown(v)}`);
  }
  return { library, problems };
}

/**
 * The library's own keys of a file readConfigFile read (synchronous, no schema: the launcher
 * calls it before it forks). Relative `pid_file`/`log_file` are resolved against the file's
 * directory; `log_level` is lowercased. Throws DaemonError CONFIG with every bad key's line.
 */
export function libraryKeys(read: ConfigRead): LibraryConfig {
  const base = dirname(read.file);
  const line = (key: string) => read.lines.get(key);
  const { library, problems } = libraryFrom(read.values, (key) => ({ file: read.file, ...(line(key) === undefined ? {} : { line: line(key)! }), base }));
  if (problems.length > 0) throw configError(problems, { path: read.file });
  return library;
}

// ---------------------------------------------------------------- validation

function segmentKey(seg: unknown): string {
  const k = typeof seg === "object" && seg !== null ? (seg as { key?: unknown }).key : seg;
  return typeof k === "symbol" ? (k.description ?? String(k)) : String(k);
}

const isStandardSchema = (s: unknown): s is StandardSchemaV1 => {
  if ((typeof s !== "object" && typeof s !== "function") || s === null) return false;
  const std = (s as { "~standard"?: { version?: unknown; validate?: unknown } })["~standard"];
  return typeof std === "object" && std !== null && std.version === 1 && typeof std.validate === "function";
};

async function validate<T>(schema: ConfigSchema<T>, input: Record<string, unknown>, where: (key: string | undefined) => { file: string; line?: number }): Promise<{ value: T } | { problems: ConfigProblem[] }> {
  const problem = (key: string | undefined, message: string): ConfigProblem => {
    const w = where(key);
    return { file: w.file, ...(w.line === undefined ? {} : { line: w.line }), ...(key === undefined ? {} : { key }), message };
  };
  if (isStandardSchema(schema)) {
    let result: StandardSchemaV1.Result<T>;
    try {
      result = (await schema["~standard"].validate(input)) as StandardSchemaV1.Result<T>;
    } catch (err) {
      return { problems: [problem(undefined, `the config schema threw: ${errorText(err)}`)] };
    }
    if (typeof result !== "object" || result === null) return { problems: [problem(undefined, "the config schema returned no result")] };
    if (result.issues === undefined) return { value: result.value };
    const problems: ConfigProblem[] = [];
    for (const issue of Array.isArray(result.issues) ? (result.issues as StandardSchemaV1.Issue[]) : []) {
      const message = typeof issue?.message === "string" ? issue.message : errorText(issue?.message);
      const path = Array.isArray(issue?.path) ? issue.path.map(segmentKey) : [];
      // zod reports unknown keys of a strict object as one issue at the root listing them: one problem per key, at its line.
      const unknownKeys = (issue as { keys?: unknown }).keys;
      if (path.length === 0 && Array.isArray(unknownKeys) && unknownKeys.length > 0 && unknownKeys.every((k) => typeof k === "string")) {
        for (const k of unknownKeys as string[]) problems.push(problem(k, unknownKeys.length === 1 ? message : "unknown key: the schema does not allow it"));
        continue;
      }
      const [key, ...rest] = path;
      problems.push(problem(key, rest.length > 0 ? `${rest.join(".")}: ${message}` : message));
    }
    if (problems.length === 0) problems.push(problem(undefined, "the config schema rejected the config without saying why"));
    return { problems };
  }
  if (typeof schema !== "function") return { problems: [problem(undefined, "the config schema is neither a Standard Schema nor a function")] };
  try {
    return { value: await schema(input) };
  } catch (err) {
    let key: string | undefined;
    try {
      const k = (err as { key?: unknown } | null)?.key;
      if (typeof k === "string") key = k;
    } catch {}
    return { problems: [problem(key, errorText(err))] };
  }
}

/**
 * Load the daemon's config: read the file (`explicitPath`, i.e. `--config`, else
 * `opts.file`), merge it over `opts.defaults`, take out and check the library keys, validate
 * the rest with `opts.schema`. Throws DaemonError CONFIG listing every problem (one
 * `file:line: key: message` a line; configProblems(err) has them as objects). Only the schema
 * step is asynchronous.
 * @param explicitPath a path the user named: missing is always an error. Default: none.
 */
export function loadConfig<T>(opts: Omit<ConfigOptions<T>, "schema"> & { schema: StandardSchemaV1<unknown, T> }, explicitPath?: string): Promise<LoadedConfig<T>>;
// A Standard Schema first: arktype's types are callable too, and their call signature must not decide T.
export function loadConfig<T = Record<string, unknown>>(opts: ConfigOptions<T>, explicitPath?: string): Promise<LoadedConfig<T>>;
export async function loadConfig<T>(opts: ConfigOptions<T>, explicitPath?: string): Promise<LoadedConfig<T>> {
  const defaults = opts.defaults ?? {};
  if (!isRecord(defaults)) throw configError([{ file: DEFAULTS_LABEL, message: "defaults must be an object of key: value" }]);
  const read = readConfig(opts, explicitPath);
  const fileValues = read?.values ?? {};
  const merged: Record<string, unknown> = { ...defaults, ...fileValues };
  const label = read?.file ?? DEFAULTS_LABEL;
  const fromFile = (key: string | undefined): boolean => key !== undefined && read !== undefined && Object.hasOwn(fileValues, key);
  const where = (key: string | undefined): { file: string; line?: number } => {
    const line = fromFile(key) ? read!.lines.get(key!) : undefined;
    return line === undefined ? { file: label } : { file: label, line };
  };
  // Defaults' relative paths are the program's, not the file's: they resolve against the working directory.
  const lib = libraryFrom(merged, (key) => ({ ...where(key), base: fromFile(key) ? dirname(read!.file) : process.cwd() }));
  const input = Object.fromEntries(Object.entries(merged).filter(([k]) => !LIBRARY_KEYS.has(k)));
  const problems = [...lib.problems];
  let config = input as T;
  if (opts.schema !== undefined) {
    const v = await validate(opts.schema, input, where);
    if ("problems" in v) problems.push(...v.problems);
    else config = v.value;
  }
  if (problems.length > 0) throw configError(problems, read === undefined ? {} : { path: read.file });
  return { file: read?.file, config, library: lib.library };
}
