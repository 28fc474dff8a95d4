/**
 * The `env` option (issue 9, daemon(7) step 4): with { keep } the daemon
 * starts from a clean environment, seen from outside (/proc/PID/environ)
 * and from everything it spawns; "inherit" keeps today's behaviour.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { DaemonError } from "../src/index.ts";
import { resolveOptions } from "../src/daemonize.ts";
import { accountOf, daemonEnvironment } from "../src/environment.ts";
import { alive, BUN, cleanupProcesses, ROOT, run, startedPid, tempDir, track, waitFor } from "./helpers.ts";

cleanupProcesses();
const dir = tempDir("bd-env-");
let n = 0;
const launcherEnv = { FOO: "foo-value", SECRET_TOKEN: "s3cret-launcher-token", LANG: "de_DE.UTF-8", TZ: "Asia/Tokyo", HOME: "/launcher/home" };

/** Start `entry`, return the daemon's pid and what its init hook recorded. */
async function startWith(entry: string) {
  n++;
  const pidFile = join(dir, `e${n}.pid`);
  const out = join(dir, `e${n}.json`);
  const r = await run([BUN, join(ROOT, "test/fixtures", entry), "start", "--pid-file", pidFile, "--out", out], { env: launcherEnv });
  const pid = track(startedPid(r.stdout));
  expect(r).toMatchObject({ code: 0, stderr: "" });
  const environ = Object.fromEntries(
    readFileSync(`/proc/${pid}/environ`, "utf8").split("\0").filter(Boolean).map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
  );
  const seen = JSON.parse(readFileSync(out, "utf8")) as Record<"processEnv" | "bunSpawn" | "childProcess" | "bunShell", Record<string, string>>;
  const stop = await run([BUN, join(ROOT, "test/fixtures", entry), "stop", "--pid-file", pidFile]);
  expect(stop.code).toBe(0);
  expect(await waitFor(() => !alive(pid!))).toBe(true);
  expect(existsSync(pidFile)).toBe(false);
  return { environ, ...seen };
}

afterAll(cleanupProcesses);

describe("env", () => {
  test("{ keep: [FOO] }: the daemon, Bun.spawn, node:child_process and Bun.$ see FOO, the set variable and the defaults, never the launcher's secret", async () => {
    // The oracle is getent (NSS), not os.userInfo(): Bun 1.4's reports the name "unknown".
    const [username, , , , , homedir] = Bun.spawnSync(["getent", "passwd", String(process.getuid!())]).stdout.toString().trim().split(":");
    const me = { username: username!, homedir: homedir! };
    const s = await startWith("env-keep.ts");
    for (const [where, env] of Object.entries(s)) {
      const got = { ...env };
      // What the shell or the runtime adds for its child (PWD, SHLVL, _) is not ours to judge.
      for (const k of ["PWD", "OLDPWD", "SHLVL", "_"]) delete got[k];
      expect({ where, env: got }).toEqual({
        where,
        env: {
          FOO: "foo-value",
          BAR: "set-by-option",
          PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
          LANG: "C.UTF-8",
          TZ: ":/etc/localtime",
          HOME: me.homedir,
          USER: me.username,
          LOGNAME: me.username,
        },
      });
      expect(JSON.stringify(env)).not.toContain("s3cret");
    }
  }, 60_000);

  test('"inherit" (the default): the daemon and its children keep the launcher\'s variables, SECRET_TOKEN included', async () => {
    const s = await startWith("env-inherit.ts");
    for (const [where, env] of Object.entries(s)) {
      expect({ where, secret: env.SECRET_TOKEN, foo: env.FOO, lang: env.LANG, home: env.HOME }).toEqual({
        where,
        secret: "s3cret-launcher-token",
        foo: "foo-value",
        lang: "de_DE.UTF-8",
        home: "/launcher/home",
      });
      // --no-orphans must still never reach the daemon.
      expect(env.BUN_FEATURE_FLAG_NO_ORPHANS).toBeUndefined();
    }
  }, 60_000);

  test("a bad env option is one USAGE line naming what is wrong", () => {
    for (const [env, text] of [
      [{ keep: "FOO" }, /^env\.keep must be an array of variable names, not string$/],
      [{ keep: ["A=B"] }, /^env\.keep: "A=B" is not a variable name/],
      [{ keep: [], set: { X: 1 } }, /^env\.set\.X must be a string without NUL bytes$/],
      ["clean", /^env must be "inherit" or \{ keep: string\[\]; set\?: Record<string, string> \}, not "clean"$/],
    ] as const) {
      // resolveOptions is what daemonize() and defineDaemon() check their options with;
      // daemonize() itself would detach this test runner were the check broken.
      let err: unknown;
      try {
        resolveOptions({ name: "envbad", env: env as never });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(DaemonError);
      expect((err as DaemonError).code).toBe("USAGE");
      expect((err as DaemonError).message).toMatch(text);
    }
  });

  test("HOME and USER of a user named by the `user` option come from the C library's lookup (NSS); `set` wins over keep and the defaults", () => {
    const fields = (line: string) => line.trim().split(":");
    const root = fields(Bun.spawnSync(["getent", "passwd", "root"]).stdout.toString());
    expect(accountOf("root")).toEqual({ name: "root", home: root[5]!, uid: 0 });
    expect(accountOf(0)).toEqual({ name: "root", home: root[5]!, uid: 0 });
    expect(accountOf("0")).toEqual({ name: "root", home: root[5]!, uid: 0 });
    expect(accountOf("ghost-bd-no-such-user")).toEqual({ name: "ghost-bd-no-such-user", home: "/", uid: undefined });
    const env = daemonEnvironment({ FOO: "1", HOME: "/elsewhere", NOTIFY_SOCKET: "/run/n" }, { keep: ["FOO", "HOME"], set: { FOO: "2" } }, () => accountOf("root"));
    expect(env).toEqual({ FOO: "2", HOME: "/elsewhere", USER: "root", LOGNAME: "root", PATH: env.PATH!, LANG: "C.UTF-8", TZ: ":/etc/localtime", NOTIFY_SOCKET: "/run/n" });
  });

  // A user that NSS knows but /etc/passwd does not (LDAP, userdb): nss-systemd
  // synthesizes "nobody" once it is missing from the file, so a private mount
  // namespace with a passwd file without it shows the difference.
  const nssSystemd = process.getuid?.() === 0 && Bun.which("unshare") !== null && /^passwd:.*\bsystemd\b/m.test(existsSync("/etc/nsswitch.conf") ? readFileSync("/etc/nsswitch.conf", "utf8") : "");
  test.skipIf(!nssSystemd)("a user only NSS knows (not in /etc/passwd) is found, as getpwnam finds it for the drop", async () => {
    const passwd = join(dir, "passwd-without-nobody");
    require("node:fs").writeFileSync(passwd, readFileSync("/etc/passwd", "utf8").split("\n").filter((l) => !l.startsWith("nobody:")).join("\n"));
    const probe = `const { accountOf } = await import(${JSON.stringify(join(ROOT, "src/environment.ts"))}); console.log(JSON.stringify(accountOf("nobody")));`;
    const r = await run(["unshare", "--mount", "--propagation", "private", "sh", "-c", 'mount --bind "$1" /etc/passwd && shift && getent passwd nobody && exec "$@"', "sh", passwd, BUN, "-e", probe]);
    expect(r.stderr).toBe("");
    const [getent, json] = r.stdout.trim().split("\n");
    const f = getent!.split(":");
    expect(JSON.parse(json!)).toEqual({ name: "nobody", home: f[5]!, uid: Number(f[2]) });
  });
});
