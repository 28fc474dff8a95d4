/**
 * Boot a real systemd 252 as PID 1 of a private pid + mount + uts namespace,
 * for tests of how a daemon behaves under it, following
 * /work/shared/SYSTEMD-IN-A-NAMESPACE.md to the letter: a tmpfs on /run, a
 * bare target, and every unit the distribution wants masked (they act on the
 * host: systemd-tmpfiles empties the host's /tmp, systemd-journald-dev-log
 * turns the host's /dev/log into a symlink into our /run). A sentinel file in
 * /tmp must survive the boot, and the namespace is torn down by SIGKILL of its
 * PID 1, which takes every process in it along.
 */
import { existsSync, lstatSync, readdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run, track, waitFor, type Result } from "./helpers.ts";

const SYSTEMD = "/lib/systemd/systemd";

/** Why systemd cannot be booted here, or undefined when it can. */
export function systemdSkipReason(): string | undefined {
  if (process.getuid?.() !== 0) return "booting systemd in a namespace needs root";
  for (const tool of ["unshare", "nsenter"]) if (!Bun.which(tool)) return `${tool} (util-linux) is missing`;
  if (!existsSync(SYSTEMD)) return `${SYSTEMD} is missing (Debian package systemd)`;
  return undefined;
}

/** Units named in SYSTEMD-IN-A-NAMESPACE.md on top of every *.target.wants entry. */
const ALSO_MASKED = [
  "systemd-tmpfiles-setup.service", "systemd-tmpfiles-setup-dev.service", "systemd-tmpfiles-clean.service", "systemd-tmpfiles-clean.timer",
  "systemd-sysctl.service", "systemd-modules-load.service", "systemd-binfmt.service",
  "proc-sys-fs-binfmt_misc.automount", "proc-sys-fs-binfmt_misc.mount",
  "systemd-sysusers.service", "systemd-firstboot.service", "systemd-machine-id-commit.service", "systemd-random-seed.service",
  "ldconfig.service", "systemd-hwdb-update.service", "systemd-update-utmp.service", "systemd-update-utmp-runlevel.service",
  "systemd-remount-fs.service", "systemd-journal-flush.service", "systemd-journald-dev-log.socket", "systemd-journald-audit.socket",
  "systemd-udevd.service", "systemd-udevd-control.socket", "systemd-udevd-kernel.socket", "systemd-udev-trigger.service", "systemd-udev-settle.service",
  "sys-kernel-debug.mount", "sys-kernel-tracing.mount", "dev-hugepages.mount", "sys-fs-fuse-connections.mount", "sys-kernel-config.mount", "dev-mqueue.mount",
  "getty.target", "getty@tty1.service", "getty-static.service", "systemd-logind.service", "dbus.service", "dbus.socket", "cron.service",
  "apt-daily.timer", "apt-daily-upgrade.timer", "man-db.timer", "fstrim.timer", "e2scrub_all.timer", "e2scrub_reap.service", "dpkg-db-backup.timer",
  "systemd-pstore.service", "systemd-timesyncd.service", "systemd-repart.service", "systemd-pcrphase.service", "systemd-pcrphase-sysinit.service",
];
/** The journal stays: `journalctl -u NAME` is how a test reads a service's output. */
const KEPT = new Set(["systemd-journald.service", "systemd-journald.socket"]);

/** Every unit a distribution target wants, plus the list above, minus the journal. */
export function unitsToMask(): string[] {
  const names = new Set(ALSO_MASKED);
  for (const base of ["/lib/systemd/system", "/etc/systemd/system", "/usr/lib/systemd/system"]) {
    let entries: string[] = [];
    try {
      entries = readdirSync(base).filter((d) => d.endsWith(".target.wants"));
    } catch {}
    for (const d of entries) for (const u of readdirSync(join(base, d))) names.add(u);
  }
  for (const k of KEPT) names.delete(k);
  return [...names].sort();
}

export interface Systemd {
  /** Host pid of the namespace's PID 1. */
  pid: number;
  /** Run a command inside the namespace (its mounts and pids). */
  exec(cmd: string[], timeoutMs?: number): Promise<Result>;
  systemctl(...args: string[]): Promise<Result>;
  /** `systemctl show -p NAME --value UNIT`. */
  prop(unit: string, name: string): Promise<string>;
  /** The unit's journal, message text only. */
  journal(unit: string): Promise<string>;
  /** Write /run/systemd/system/NAME (a unit, or a drop-in "X.service.d/Y.conf") inside the namespace and daemon-reload. */
  install(name: string, text: string): Promise<void>;
  /** What the boot must leave alone on the host: the sentinel in /tmp, /dev/log. */
  hostIntact(): { sentinel: boolean; devLog: string };
  /** SIGKILL the namespace's PID 1 (every process in it dies with it). */
  kill(): Promise<void>;
}

const devLogState = () => {
  try {
    const st = lstatSync("/dev/log");
    return st.isSymbolicLink() ? `symlink` : st.isSocket() ? "socket" : "other";
  } catch {
    return "absent";
  }
};

/**
 * The namespace's systemd has no cgroup namespace of its own: it makes its
 * units' cgroups in the host's tree (system.slice/UNIT). A unit still
 * running when PID 1 is SIGKILLed leaves its cgroup behind, empty once the
 * namespace is gone: those of the units we installed are removed (rmdir
 * only removes an empty cgroup, and only these names are tried).
 */
function removeUnitCgroups(units: Set<string>): void {
  for (const root of ["/sys/fs/cgroup", "/sys/fs/cgroup/unified", "/sys/fs/cgroup/systemd"]) {
    for (const u of units) {
      try {
        rmdirSync(join(root, "system.slice", u));
      } catch {}
    }
  }
}

/** Boot systemd; throws with the reason if it does not come up. */
export async function bootSystemd(): Promise<Systemd> {
  const sentinel = join(tmpdir(), `bd-systemd-sentinel-${process.pid}-${Date.now()}`);
  writeFileSync(sentinel, "must survive the boot\n");
  const devLogBefore = devLogState();
  const masks = unitsToMask();
  const bare = "[Unit]\nDescription=bare target for bun-daemon tests\nDefaultDependencies=no\n";
  const script = [
    "set -e",
    // Not propagated to the host: unshare(1) makes the new mount namespace private.
    "mount -t tmpfs -o mode=755 tmpfs /run",
    "mkdir -p /run/systemd/system",
    `printf '%s' '${bare}' > /run/systemd/system/bare.target`,
    `for u in ${masks.map((m) => `'${m}'`).join(" ")}; do ln -sf /dev/null "/run/systemd/system/$u"; done`,
    // Its own messages ("Watchdog timeout", job results) go to the namespace's journal, nowhere on the host.
    `exec ${SYSTEMD} --system --unit=bare.target --log-target=journal </dev/null >/dev/null 2>&1`,
  ].join("\n");
  const outer = Bun.spawn(["unshare", "--fork", "--pid", "--mount", "--mount-proc", "--uts", "bash", "-c", script], { stdin: "ignore", stdout: "ignore", stderr: "pipe" });
  track(outer.pid);
  let pid = 0;
  const child = () => {
    try {
      return Number(readFileSync(`/proc/${outer.pid}/task/${outer.pid}/children`, "utf8").trim().split(/\s+/)[0]) || 0;
    } catch {
      return 0;
    }
  };
  const isSystemd = (p: number) => {
    try {
      return readFileSync(`/proc/${p}/comm`, "utf8").trim() === "systemd";
    } catch {
      return false;
    }
  };
  await waitFor(() => {
    pid = child();
    return pid > 0 && isSystemd(pid);
  }, 10_000);
  if (!pid || !isSystemd(pid)) {
    outer.kill("SIGKILL");
    throw new Error(`systemd did not start in the namespace: ${await new Response(outer.stderr).text()}`);
  }
  const installed = new Set<string>();
  // Deliberately not track()ed: the test files' afterEach would SIGTERM it
  // between tests; the namespace lives for the file and dies by SIGKILL.
  const exec = (cmd: string[], timeoutMs = 60_000) => run(["nsenter", "-t", String(pid), "-m", "-p", "-u", ...cmd], { timeoutMs });
  const sd: Systemd = {
    pid,
    exec,
    systemctl: (...args) => exec(["systemctl", ...args]),
    async prop(unit, name) {
      return (await exec(["systemctl", "show", "-p", name, "--value", unit])).stdout.trim();
    },
    async journal(unit) {
      return (await exec(["journalctl", "--no-pager", "-o", "cat", "-u", unit])).stdout;
    },
    async install(name, text) {
      const unit = name.split("/")[0]!.replace(/\.d$/, "");
      if (/\.(service|socket)$/.test(unit)) installed.add(unit);
      const file = `/run/systemd/system/${name}`;
      const w = await exec(["sh", "-c", `mkdir -p "$(dirname '${file}')" && cat > '${file}' <<'BD_UNIT_EOF'\n${text}BD_UNIT_EOF\n`]);
      if (w.code !== 0) throw new Error(`writing ${name}: ${w.stderr}`);
      const r = await exec(["systemctl", "daemon-reload"]);
      if (r.code !== 0) throw new Error(`daemon-reload: ${r.stderr}`);
    },
    hostIntact: () => ({ sentinel: existsSync(sentinel), devLog: devLogState() === devLogBefore ? "unchanged" : `was ${devLogBefore}, now ${devLogState()}` }),
    async kill() {
      try {
        process.kill(pid, "SIGKILL");
      } catch {}
      await outer.exited;
      rmSync(sentinel, { force: true });
      removeUnitCgroups(installed);
    },
  };
  const up = await waitFor(async () => /^(running|degraded)$/.test((await exec(["systemctl", "is-system-running"])).stdout.trim()), 30_000, 200);
  if (!up) {
    const state = (await exec(["systemctl", "is-system-running"])).stdout.trim();
    await sd.kill();
    throw new Error(`systemd in the namespace did not come up (is-system-running: ${state})`);
  }
  return sd;
}
