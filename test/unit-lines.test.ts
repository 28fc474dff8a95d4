/**
 * What `unit` prints for `user`/`group` and `env` (issue 9), from the CLI run
 * as a subprocess: User=/Group=, RuntimeDirectory= and --pid-file for the
 * default PID file under User=, Environment=/PassEnvironment= for env.
 * Pure output checks; test/systemd-unit.test.ts runs such a unit for real.
 */
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { BUN, ROOT, run } from "./helpers.ts";

const APP = join(ROOT, "test/fixtures/unit-priv-app.ts");

async function unit(args: string[], env: Record<string, string> = {}) {
  return run([BUN, APP, "unit", ...args], { env: { UNIT_NAME: "svc", ...env } });
}
async function printed(args: string[], env: Record<string, string> = {}): Promise<string> {
  const r = await unit(args, env);
  if (r.code !== 0) throw new Error(`unit failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}
const lines = (text: string, key: string) => text.split("\n").filter((l) => l.startsWith(`${key}=`));
const execStart = (text: string) => lines(text, "ExecStart")[0]!.replace(/^ExecStart=\S+ \S+unit-priv-app\.ts /, "");

describe("unit: User= and Group=", () => {
  test("no user: no User=, no RuntimeDirectory=, no --pid-file (root's default /run/svc.pid)", async () => {
    const t = await printed([]);
    expect(lines(t, "User")).toEqual([]);
    expect(lines(t, "Group")).toEqual([]);
    expect(lines(t, "RuntimeDirectory")).toEqual([]);
    expect(execStart(t)).toBe("run");
  });

  test("--user/--group given to unit: User=, Group=, RuntimeDirectory=svc, and ExecStart passes the PID file and both options on", async () => {
    const t = await printed(["--user", "nobody", "--group", "nogroup"]);
    expect(lines(t, "User")).toEqual(["User=nobody"]);
    expect(lines(t, "Group")).toEqual(["Group=nogroup"]);
    expect(lines(t, "RuntimeDirectory")).toEqual(["RuntimeDirectory=svc"]);
    expect(execStart(t)).toBe("run --pid-file /run/svc/svc.pid --user nobody --group nogroup");
    // Said before the settings: the daemon starts as the user, its drop only verifies.
    expect(t).toMatch(/^# systemd starts the daemon as nobody: .*only verifies every thread.*\nUser=nobody$/m);
  });

  test("config user: User= from the config, no --user in ExecStart (the daemon has it), a uid taken as is", async () => {
    const t = await printed(["--type", "forking"], { UNIT_USER: "65534" });
    expect(lines(t, "User")).toEqual(["User=65534"]);
    expect(lines(t, "Group")).toEqual([]);
    expect(lines(t, "PIDFile")).toEqual(["PIDFile=/run/svc/svc.pid"]);
    expect(lines(t, "RuntimeDirectory")).toEqual(["RuntimeDirectory=svc"]);
    expect(execStart(t)).toBe("start --pid-file /run/svc/svc.pid");
  });

  test("--user overrides the config's user and group (the user's primary group, as the launcher does)", async () => {
    const t = await printed(["--user", "daemon"], { UNIT_USER: "nobody", UNIT_GROUP: "nogroup" });
    expect(lines(t, "User")).toEqual(["User=daemon"]);
    expect(lines(t, "Group")).toEqual([]);
  });

  test("with chroot: no User= (only root can chroot: the daemon drops itself after init, as under `start`), the PID file inside the root", async () => {
    const t = await printed(["--type", "forking", "--user", "nobody"], { UNIT_CHROOT: "/srv/svc-root" });
    expect(lines(t, "User")).toEqual([]);
    expect(lines(t, "RuntimeDirectory")).toEqual([]);
    expect(lines(t, "PIDFile")).toEqual(["PIDFile=/srv/svc-root/run/svc/svc.pid"]);
    expect(execStart(t)).toBe("start --pid-file /srv/svc-root/run/svc/svc.pid --user nobody");
    expect(t).toMatch(/^# chroot \/srv\/svc-root: systemd starts the daemon as root; .*\n/m);
    const plain = await printed([], { UNIT_CHROOT: "/srv/svc-root" });
    expect(execStart(plain)).toBe("run");
  });

  test("an explicit PID file under User=: kept as given, no RuntimeDirectory= (its directory is the admin's)", async () => {
    const t = await printed(["--user", "nobody", "--pid-file", "/var/lib/svc/svc.pid"]);
    expect(lines(t, "RuntimeDirectory")).toEqual([]);
    expect(execStart(t)).toBe("run --pid-file /var/lib/svc/svc.pid --user nobody");
  });

  test("group without user, or a user systemd would not take: exit 2, one line, nothing on stdout", async () => {
    for (const [args, env, msg] of [
      [["--group", "nogroup"], {}, "svc: unit: group is set without user; give user too\n"],
      [[], { UNIT_USER: "no body" }, `svc: unit: user "no body" is not a name or id systemd's User= takes\n`],
    ] as const) {
      const r = await unit([...args], env);
      expect(r.stdout).toBe("");
      expect(r.stderr).toBe(msg);
      expect(r.code).toBe(2);
    }
  });
});

describe("unit: env { keep, set }", () => {
  test("inherit (the default): no Environment= and no PassEnvironment=", async () => {
    const t = await printed([], { UNIT_ENV: '"inherit"' });
    expect(lines(t, "Environment")).toEqual([]);
    expect(lines(t, "PassEnvironment")).toEqual([]);
  });

  test("keep is PassEnvironment=, each of set an Environment= quoted as systemd reads it (% doubled, $ literal, blanks and quotes in C-escaped double quotes); a comment says systemd's environment is clean", async () => {
    const env = { keep: ["TERM", "LC_ALL"], set: { PLAIN: "/srv/x", SPACED: "a b", PCT: "50%", Q: 'say "hi"\\', DOLLAR: "$HOME", NL: "1\n2" } };
    const t = await printed([], { UNIT_ENV: JSON.stringify(env) });
    expect(lines(t, "PassEnvironment")).toEqual(["PassEnvironment=TERM LC_ALL"]);
    expect(lines(t, "Environment")).toEqual([
      "Environment=PLAIN=/srv/x",
      'Environment="SPACED=a b"',
      "Environment=PCT=50%%",
      'Environment="Q=say \\"hi\\"\\\\"',
      "Environment=DOLLAR=$HOME",
      'Environment="NL=1\\n2"',
    ]);
    expect(t).toMatch(/^# env: systemd's own environment is already clean/m);
  });

  test("keep empty, no set: neither line; a bad env is the usual one-line USAGE error", async () => {
    const t = await printed([], { UNIT_ENV: '{"keep":[]}' });
    expect(lines(t, "PassEnvironment")).toEqual([]);
    expect(lines(t, "Environment")).toEqual([]);
    const r = await unit([], { UNIT_ENV: '{"keep":["1X"]}' });
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain("env.keep: \"1X\" is not a variable name");
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.code).not.toBe(0);
  });
});

describe("unit: workers", () => {
  test("--workers given to unit is passed on in ExecStart (as N, or auto), so the service runs the workers it was asked for", async () => {
    expect(execStart(await printed(["--workers", "3"]))).toBe("run --workers 3");
    expect(execStart(await printed(["--workers", "auto"]))).toBe("run --workers auto");
  });
});
