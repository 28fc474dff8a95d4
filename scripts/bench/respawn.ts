/**
 * The re-spawn approach of other JS daemonizers, for comparison with
 * bun-daemon's `start`: Bun.spawn the program again, detached (setsid), with
 * stdout on a pipe; wait for its ready line; leave it running.
 *
 *   bun scripts/bench/respawn.ts PROGRAM [ARGS...]   (PROGRAM run with this bun)
 *
 * Prints `started respawn (pid N)` and exits 0 once PROGRAM prints a line
 * starting with READY; exits 1 if it exits first or is not ready in 30 s.
 */
const [program, ...args] = process.argv.slice(2);
if (!program) {
  console.error("usage: respawn.ts PROGRAM [ARGS...]");
  process.exit(2);
}

const child = Bun.spawn([process.execPath, program, ...args], {
  detached: true,
  // Nothing of ours may keep the child's stdio, or it would hold the caller's pipes open.
  stdin: "ignore",
  stdout: "pipe",
  stderr: "ignore",
});

const timer = setTimeout(() => {
  child.kill("SIGKILL");
  console.error("respawn: not ready within 30 s");
  process.exit(1);
}, 30_000);

let seen = "";
const decoder = new TextDecoder();
for await (const chunk of child.stdout) {
  seen += decoder.decode(chunk, { stream: true });
  if (/^READY\b/m.test(seen)) {
    clearTimeout(timer);
    console.log(`started respawn (pid ${child.pid})`);
    child.unref();
    process.exit(0);
  }
}
console.error(`respawn: the program exited before it was ready (status ${await child.exited})`);
process.exit(1);
