/**
 * Which of Bun's runtime flags (process.execArgv) a re-executed daemon keeps:
 * shared by the launcher's re-exec and the `unit` command's ExecStart, in a
 * module of its own so that `unit` does not load the launcher's libc calls.
 */

/**
 * Runtime flags that make no sense in a detached re-exec: `--no-orphans`
 * kills the daemon when its launcher exits, the inspector would fight the
 * launcher for its port, watch/hot would restart a daemon under its PID
 * file, and an eval's code is not the program. Every other flag is kept.
 */
const DROPPED = /^--(no-orphans|watch|hot|inspect|inspect-brk|inspect-wait|eval|print)(=.*)?$/;
const DROPPED_WITH_VALUE = new Set(["-e", "--eval", "-p", "--print"]);

export function runtimeFlags(execArgv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < execArgv.length; i++) {
    const a = execArgv[i]!;
    if (DROPPED_WITH_VALUE.has(a)) i++;
    else if (!DROPPED.test(a)) out.push(a);
  }
  return out;
}
