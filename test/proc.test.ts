/**
 * The launcher finds the runtime's MADV_DONTFORK region (JSC's JIT) in
 * /proc/self/maps rather than walking smaps: that shortcut holds only while
 * the anonymous rwx mappings are exactly the "dc" ones, in a fresh process
 * and after the JIT has worked. If Bun changes that, this fails first.
 */
import { expect, test } from "bun:test";
import { join } from "node:path";
import { BUN, ROOT, run } from "./helpers.ts";

test("the anonymous rwx mappings of /proc/self/maps are exactly smaps' MADV_DONTFORK ranges", async () => {
  const code = `
    const { dontForkRanges, dontForkRangesFromSmaps } = await import(${JSON.stringify(join(ROOT, "src/proc.ts"))});
    const show = (r) => r.map(([a, b]) => a.toString(16) + "-" + b.toString(16));
    const fresh = [show(dontForkRanges()), show(dontForkRangesFromSmaps())];
    // Make the JIT and the GC work, then look again.
    let x = 0; for (let i = 0; i < 3e6; i++) x += Math.sqrt(i) * (i & 7);
    const junk = []; for (let i = 0; i < 2e5; i++) junk.push({ i, s: "v" + i });
    Bun.gc(true);
    console.log(JSON.stringify({ fresh, warm: [show(dontForkRanges()), show(dontForkRangesFromSmaps())], x: x > 0, n: junk.length }));
  `;
  const r = await run([BUN, "-e", code]);
  expect(r.stderr).toBe("");
  const { fresh, warm } = JSON.parse(r.stdout);
  expect(fresh[1].length).toBeGreaterThan(0); // the region exists: the check means something
  expect(fresh[0]).toEqual(fresh[1]);
  expect(warm[0]).toEqual(warm[1]);
}, 30_000);
