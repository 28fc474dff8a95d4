/**
 * The `env` option: which of the launcher's environment variables the
 * detached daemon gets (daemon(7) step 4). Pure logic; the launcher turns
 * the result into the envp of its execve, so the daemon starts with a clean
 * environment and everything it spawns, through any API, inherits that.
 */
import { DaemonError } from "./errors.ts";

/**
 * `"inherit"`: the daemon gets the launcher's environment. `{ keep, set }`:
 * only the variables named in `keep` (when the launcher has them), then
 * `set`, then defaults for PATH, LANG, TZ, HOME, USER and LOGNAME.
 */
export type EnvOption = "inherit" | { keep: string[]; set?: Record<string, string> };

/**
 * A supervisor's protocol, not the launching shell's: kept whatever `keep`
 * says, or sd_notify, the watchdog and socket activation would break.
 */
const SUPERVISOR = ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "JOURNAL_STREAM", "INVOCATION_ID"];

/** systemd's default PATH for services: no ".", no user directories. */
export const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/** A UTF-8 locale every glibc has built in. */
export const DEFAULT_LANG = "C.UTF-8";
/** The system zone, read once by glibc instead of stat'ing /etc/localtime on every localtime(). */
export const DEFAULT_TZ = ":/etc/localtime";

const NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;
const bad = (what: string) => new DaemonError("USAGE", what);

/** Check an `env` option; throws USAGE with one line saying what is wrong. */
export function checkEnv(value: unknown): EnvOption {
  if (value === undefined || value === "inherit") return "inherit";
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw bad(`env must be "inherit" or { keep: string[]; set?: Record<string, string> }, not ${JSON.stringify(value) ?? typeof value}`);
  }
  const { keep, set } = value as { keep?: unknown; set?: unknown };
  if (!Array.isArray(keep)) throw bad(`env.keep must be an array of variable names, not ${typeof keep}`);
  for (const k of keep) {
    if (typeof k !== "string" || !NAME_RE.test(k)) throw bad(`env.keep: ${JSON.stringify(k)} is not a variable name (letters, digits, _; not starting with a digit)`);
  }
  const out: { keep: string[]; set?: Record<string, string> } = { keep: [...keep] };
  if (set !== undefined) {
    if (typeof set !== "object" || set === null || Array.isArray(set)) throw bad(`env.set must be an object of name: value strings, not ${typeof set}`);
    const copy: Record<string, string> = {};
    for (const [k, v] of Object.entries(set)) {
      if (!NAME_RE.test(k)) throw bad(`env.set: ${JSON.stringify(k)} is not a variable name (letters, digits, _; not starting with a digit)`);
      if (typeof v !== "string" || v.includes("\0")) throw bad(`env.set.${k} must be a string without NUL bytes`);
      copy[k] = v;
    }
    out.set = copy;
  }
  return out;
}

/** Name and home of a user, as the C library's lookup (NSS) has them. */
export interface Account {
  name: string;
  home: string;
  /** undefined when the user is not found (then name is what was asked for). */
  uid: number | undefined;
}

/** A user given as digits is a uid (as `chown 65534` reads it) when no user has that name. */
export function lookupUserSpec(user: string | number): ReturnType<typeof import("./ffi.ts").lookupUser> {
  // Loaded here, not at import: resolveOptions (imported by "bun-daemon") checks the option.
  const { lookupUser } = require("./ffi.ts") as typeof import("./ffi.ts");
  if (typeof user === "string" && /^\d+$/.test(user)) {
    const byName = lookupUser(user);
    return byName.entry ? byName : lookupUser(Number(user));
  }
  return lookupUser(user);
}

/**
 * The account the daemon will run as: `user` (a name or uid, when the
 * `user` option is given; digits are a uid unless a user has that name, as
 * for the drop) or the current user, through getpwnam/getpwuid, so LDAP and
 * userdb users are found as the drop finds them; else the name as given
 * and "/" as home.
 */
export function accountOf(user: string | number | undefined): Account {
  const wanted = user ?? process.getuid?.() ?? 0;
  const entry = lookupUserSpec(wanted).entry;
  if (entry) return { name: entry.name, home: entry.dir || "/", uid: entry.uid };
  return { name: String(wanted), home: "/", uid: typeof wanted === "number" ? wanted : undefined };
}

/**
 * The daemon's environment from the launcher's `source`. `"inherit"`
 * returns `source` minus `dropped`. Otherwise, in order of precedence:
 * `set`, then the kept variables the launcher has, then the defaults
 * (PATH, LANG, TZ; HOME, USER and LOGNAME of `account`); supervisor
 * variables (NOTIFY_SOCKET, LISTEN_*, WATCHDOG_*) always pass.
 */
export function daemonEnvironment(
  source: Record<string, string | undefined>,
  option: EnvOption,
  account: () => Account,
  dropped: ReadonlySet<string> = new Set(),
): Record<string, string> {
  const out: Record<string, string> = {};
  if (option === "inherit") {
    for (const [k, v] of Object.entries(source)) if (v !== undefined && !dropped.has(k)) out[k] = v;
    return out;
  }
  const a = account();
  Object.assign(out, { PATH: DEFAULT_PATH, LANG: DEFAULT_LANG, TZ: DEFAULT_TZ, HOME: a.home, USER: a.name, LOGNAME: a.name });
  for (const k of [...SUPERVISOR, ...option.keep]) {
    const v = source[k];
    if (v !== undefined && !dropped.has(k)) out[k] = v;
  }
  Object.assign(out, option.set ?? {});
  return out;
}
