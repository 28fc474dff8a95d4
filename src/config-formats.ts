/**
 * The config file formats: key=value lines, TOML (Bun's parser) and JSON,
 * each parsed to its top-level values with the line every key is on and
 * every problem found (src/config.ts reads the file and reports them).
 */
import { extname } from "node:path";
import type { ConfigProblem } from "./config.ts";
import { errorText } from "./errors.ts";

const KEY_RE = /^[A-Za-z_][A-Za-z0-9_.-]*$/;
const NUMBER_RE = /^-?\d+(\.\d+)?$/;

/** A value for a message: quoted, cut at 60 characters. */
export const show = (s: string): string => JSON.stringify(s.length > 60 ? `${s.slice(0, 60)}...` : s);

export type Format = "kv" | "toml" | "json";

/** The format of `file` by its extension; undefined for an extension no format has. */
export function formatOf(file: string): Format | undefined {
  const ext = extname(file).toLowerCase();
  if (ext === "" || ext === ".conf" || ext === ".env") return "kv";
  if (ext === ".toml") return "toml";
  if (ext === ".json") return "json";
  return undefined;
}

/** A file's top-level values, the line of each key, and every problem found. */
export interface Parsed {
  values: Record<string, unknown>;
  lines: Map<string, number>;
  problems: ConfigProblem[];
}

type ValueResult = { value: unknown } | { error: string };

/** The value after `=` (leading whitespace still there, the line's end trimmed). */
function kvValue(rest: string): ValueResult {
  const s = rest.trimStart();
  const afterQuote = (tail: string): string | undefined => {
    const t = tail.trim();
    return t === "" || t.startsWith("#") ? undefined : `unexpected text after the closing quote: ${show(t)} (quote the whole value)`;
  };
  if (s.startsWith('"')) {
    let out = "";
    for (let i = 1; i < s.length; i++) {
      const c = s[i]!;
      if (c === '"') {
        const bad = afterQuote(s.slice(i + 1));
        return bad === undefined ? { value: out } : { error: bad };
      }
      if (c === "\\") {
        const e = s[++i];
        if (e === '"' || e === "\\") out += e;
        else if (e === "n") out += "\n";
        else if (e === "t") out += "\t";
        else if (e === undefined) break;
        else return { error: `unknown escape \\${e} in a double-quoted value (known: \\" \\\\ \\n \\t; single quotes take text literally)` };
        continue;
      }
      out += c;
    }
    return { error: `unterminated double-quoted value: add the closing " (values are one line each)` };
  }
  if (s.startsWith("'")) {
    const end = s.indexOf("'", 1);
    if (end < 0) return { error: "unterminated single-quoted value: add the closing ' (values are one line each)" };
    const bad = afterQuote(s.slice(end + 1));
    return bad === undefined ? { value: s.slice(1, end) } : { error: bad };
  }
  const comment = /\s#/.exec(rest);
  const raw = (comment ? rest.slice(0, comment.index) : rest).trim();
  if (NUMBER_RE.test(raw)) {
    const n = Number(raw);
    if (!raw.includes(".") && !Number.isSafeInteger(n)) return { error: `${show(raw)} is too large a number to hold exactly: quote it to keep it as text` };
    if (!Number.isFinite(n)) return { error: `${show(raw)} is too large a number: quote it to keep it as text` };
    return { value: n };
  }
  if (raw === "true") return { value: true };
  if (raw === "false") return { value: false };
  return { value: raw };
}

function parseKeyValue(file: string, text: string): Parsed {
  const entries: [string, unknown][] = [];
  const lines = new Map<string, number>();
  const problems: ConfigProblem[] = [];
  const rows = text.split("\n");
  for (let i = 0; i < rows.length; i++) {
    const line = i + 1;
    const t = rows[i]!.trim();
    if (t === "" || t.startsWith("#")) continue;
    const eq = t.indexOf("=");
    if (eq < 0) {
      problems.push({ file, line, message: `expected key=value, found ${show(t)}` });
      continue;
    }
    const key = t.slice(0, eq).trim();
    if (key === "") {
      problems.push({ file, line, message: `missing key before "=": expected key=value, found ${show(t)}` });
      continue;
    }
    if (!KEY_RE.test(key)) {
      problems.push({ file, line, message: `bad key ${show(key)}: a key is a letter or "_", then letters, digits, "_", "." or "-"` });
      continue;
    }
    const first = lines.get(key);
    if (first !== undefined) {
      problems.push({ file, line, key, message: `duplicate key (first set on line ${first})` });
      continue;
    }
    // Recorded before the value is checked: a bad value and a later duplicate are both reported now.
    lines.set(key, line);
    const v = kvValue(t.slice(eq + 1));
    if ("error" in v) problems.push({ file, line, key, message: v.error });
    else entries.push([key, v.value]);
  }
  // fromEntries defines own properties: a key named __proto__ stays a key.
  return { values: Object.fromEntries(entries), lines, problems };
}

/** 1-based line and column of each offset of `text`. */
function positions(text: string): (at: number) => { line: number; column: number } {
  const starts = [0];
  for (let i = text.indexOf("\n"); i >= 0; i = text.indexOf("\n", i + 1)) starts.push(i + 1);
  return (at) => {
    let lo = 0;
    let hi = starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (starts[mid]! <= at) lo = mid;
      else hi = mid - 1;
    }
    return { line: lo + 1, column: at - starts[lo]! + 1 };
  };
}

export const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

const tomlParse = (text: string): unknown => Bun.TOML.parse(text);
const tomlMessage = (err: unknown): string => errorText(err).replace(/^TOML Parse error:\s*/, "");

/**
 * The line of a TOML syntax error. Bun's error has no position, but the parser stops at the
 * first error: every prefix of the file that ends after the bad line fails with the same
 * message, and every shorter one parses or fails only at its end. Binary search on that.
 */
function tomlErrorLine(text: string, message: string): number {
  const ends: number[] = [];
  for (let i = text.indexOf("\n"); i >= 0; i = text.indexOf("\n", i + 1)) ends.push(i + 1);
  if (ends.length === 0 || ends[ends.length - 1]! < text.length) ends.push(text.length);
  const fails = (k: number): boolean => {
    try {
      tomlParse(text.slice(0, ends[k - 1]));
      return false;
    } catch (err) {
      return tomlMessage(err) === message;
    }
  };
  let lo = 1;
  let hi = ends.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (fails(mid)) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/** Lines of the top-level keys and table headers of a TOML text that parsed (a hint: the first mention). */
function tomlKeyLines(text: string): Map<string, number> {
  const lines = new Map<string, number>();
  const KEY = String.raw`("(?:[^"\\]|\\.)*"|'[^']*'|[A-Za-z0-9_-]+)`;
  const header = new RegExp(String.raw`^\[\[?\s*${KEY}`);
  const pair = new RegExp(String.raw`^${KEY}\s*[.=]`);
  const unquote = (k: string): string => {
    if (k.startsWith("'")) return k.slice(1, -1);
    if (!k.startsWith('"')) return k;
    try {
      return JSON.parse(k) as string;
    } catch {
      return k.slice(1, -1);
    }
  };
  const count = (s: string, d: string): number => s.split(d).length - 1;
  let inTable = false;
  let multiline: string | undefined;
  const rows = text.split("\n");
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i]!;
    if (multiline !== undefined) {
      if (count(row, multiline) % 2 === 1) multiline = undefined;
      continue;
    }
    const t = row.trimStart();
    const h = header.exec(t);
    if (h) {
      inTable = true;
      const k = unquote(h[1]!);
      if (!lines.has(k)) lines.set(k, i + 1);
      continue;
    }
    const p = inTable ? null : pair.exec(t);
    if (p) {
      const k = unquote(p[1]!);
      if (!lines.has(k)) lines.set(k, i + 1);
    }
    for (const d of ['"""', "'''"]) if (count(row, d) % 2 === 1) multiline = d;
  }
  return lines;
}

function parseToml(file: string, text: string): Parsed {
  let values: unknown;
  try {
    values = tomlParse(text);
  } catch (err) {
    if (err instanceof RangeError) return { values: {}, lines: new Map(), problems: [{ file, message: `TOML: nested too deeply (${errorText(err)})` }] };
    const message = tomlMessage(err);
    // An unclosed array or multi-line string fails only at the end of the file, and so would every prefix inside it.
    if (/found end of file/i.test(message) || (/^unterminated/i.test(message) && !/newline/i.test(message))) {
      const line = text.split("\n").length - (text.endsWith("\n") ? 1 : 0);
      return { values: {}, lines: new Map(), problems: [{ file, line: Math.max(1, line), message: `TOML: ${message} (at the end of the file)` }] };
    }
    return { values: {}, lines: new Map(), problems: [{ file, line: tomlErrorLine(text, message), message: `TOML: ${message}` }] };
  }
  if (!isRecord(values)) return { values: {}, lines: new Map(), problems: [{ file, message: "TOML: the top level is not a table" }] };
  return { values, lines: tomlKeyLines(text), problems: [] };
}

interface JsonScan {
  error?: { at: number; message: string };
  keys: Map<string, number>;
  dups: { at: number; top: string; name: string; first: number; nested: boolean }[];
}

const JSON_NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;

/**
 * A JSON syntax check that knows positions (JSON.parse's errors carry none): the offset of
 * the first error, where each top-level key is, and the keys set twice in one object.
 * Iterative: a file of a million `[` must not overflow the stack.
 */
function scanJson(s: string): JsonScan {
  const keys = new Map<string, number>();
  const dups: JsonScan["dups"] = [];
  const frames: { obj: boolean; seen: Map<string, number> }[] = [];
  const n = s.length;
  let i = 0;
  let top = "";
  const fail = (message: string, at = i): JsonScan => ({ error: { at, message }, keys, dups });
  const found = (): string => (i >= n ? "the end of the file" : JSON.stringify(String.fromCodePoint(s.codePointAt(i)!)));
  const ws = (): void => {
    for (; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c !== 32 && c !== 9 && c !== 10 && c !== 13) break;
    }
  };
  // At a '"': past the closing quote, or the error.
  const string = (): string | undefined => {
    for (i++; i < n; ) {
      const c = s.charCodeAt(i);
      if (c === 34) {
        i++;
        return undefined;
      }
      if (c === 92) {
        const e = s[i + 1];
        if (e === "u") {
          if (!/^[0-9a-fA-F]{4}$/.test(s.slice(i + 2, i + 6))) return "bad \\u escape in a string: four hex digits must follow";
          i += 6;
        } else if (e !== undefined && '"\\/bfnrt'.includes(e)) i += 2;
        else return e === undefined ? "unterminated string" : `bad escape \\${e} in a string`;
        continue;
      }
      if (c < 0x20) return c === 10 ? "unterminated string (a string cannot span lines: write \\n)" : "control character in a string: escape it";
      i++;
    }
    return "unterminated string";
  };
  let state: "value" | "key" | "after" = "value";
  for (;;) {
    ws();
    if (state === "value") {
      if (i >= n) return fail(frames.length === 0 ? "the file is empty: write {} for an empty config" : "unexpected end of the file: a value is missing");
      const c = s[i]!;
      if (c === "{" || c === "[") {
        frames.push({ obj: c === "{", seen: new Map() });
        i++;
        ws();
        if (s[i] === (c === "{" ? "}" : "]")) {
          frames.pop();
          i++;
          state = "after";
        } else state = c === "{" ? "key" : "value";
        continue;
      }
      if (c === '"') {
        const e = string();
        if (e !== undefined) return fail(e);
        state = "after";
        continue;
      }
      if (c === "-" || (c >= "0" && c <= "9")) {
        JSON_NUMBER.lastIndex = i;
        const m = JSON_NUMBER.exec(s);
        if (!m) return fail("bad number");
        i += m[0].length;
        state = "after";
        continue;
      }
      const lit = ["true", "false", "null"].find((w) => s.startsWith(w, i));
      if (lit !== undefined) {
        i += lit.length;
        state = "after";
        continue;
      }
      const why = c === "]" || c === "}" ? " (a trailing comma?)" : c === "'" ? " (JSON strings take double quotes)" : "";
      return fail(`expected a value but found ${found()}${why}`);
    }
    if (state === "key") {
      if (s[i] !== '"') return fail(`expected a key in double quotes but found ${found()}${s[i] === "}" ? " (a trailing comma?)" : ""}`);
      const start = i;
      const e = string();
      if (e !== undefined) return fail(e);
      let name: string;
      try {
        name = JSON.parse(s.slice(start, i)) as string;
      } catch {
        name = s.slice(start + 1, i - 1);
      }
      const frame = frames[frames.length - 1]!;
      if (frames.length === 1) top = name;
      const first = frame.seen.get(name);
      if (first !== undefined) dups.push({ at: start, top, name, first, nested: frames.length > 1 });
      else {
        frame.seen.set(name, start);
        if (frames.length === 1) keys.set(name, start);
      }
      ws();
      if (s[i] !== ":") return fail(`expected ":" after the key but found ${found()}`);
      i++;
      state = "value";
      continue;
    }
    const frame = frames[frames.length - 1];
    if (frame === undefined) return i < n ? fail(`unexpected ${found()} after the end of the top-level value`) : { keys, dups };
    const close = frame.obj ? "}" : "]";
    if (s[i] === ",") {
      i++;
      state = frame.obj ? "key" : "value";
    } else if (s[i] === close) {
      frames.pop();
      i++;
    } else return fail(`expected "," or "${close}" but found ${found()}`);
  }
}

function parseJson(file: string, text: string): Parsed {
  const pos = positions(text);
  const scan = scanJson(text);
  let values: unknown;
  let parseError: unknown;
  try {
    values = JSON.parse(text);
  } catch (err) {
    parseError = err;
  }
  const problems: ConfigProblem[] = scan.dups.map((d) => ({
    file,
    line: pos(d.at).line,
    key: d.top,
    message: d.nested ? `duplicate key ${show(d.name)} (first set on line ${pos(d.first).line})` : `duplicate key (first set on line ${pos(d.first).line})`,
  }));
  // JSON.parse decides what is valid; the scan only says where (and is ignored should the two disagree).
  if (parseError !== undefined) {
    if (scan.error) problems.push({ file, ...pos(scan.error.at), message: `JSON: ${scan.error.message}` });
    else problems.push({ file, message: `JSON: ${errorText(parseError)}` });
    return { values: {}, lines: new Map(), problems };
  }
  if (!isRecord(values)) {
    const first = text.search(/\S/);
    const what = Array.isArray(values) ? "an array" : values === null ? "null" : `a ${typeof values}`;
    problems.push({ file, ...(first < 0 ? {} : { line: pos(first).line }), message: `JSON: the top level must be an object ({ ... }), not ${what}` });
    return { values: {}, lines: new Map(), problems };
  }
  const lines = new Map<string, number>();
  for (const [k, at] of scan.keys) lines.set(k, pos(at).line);
  return { values, lines, problems };
}

/** Parse `text` (the contents of `file`) as `format`. */
export function parseConfigText(file: string, text: string, format: Format): Parsed {
  return format === "kv" ? parseKeyValue(file, text) : format === "toml" ? parseToml(file, text) : parseJson(file, text);
}
