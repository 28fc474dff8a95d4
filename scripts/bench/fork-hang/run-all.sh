#!/bin/sh
# Part 1 of the fork-hang evaluation: every child shape N times from a GC-busy
# process, then the interleaved start-up timing. One JSON line per run.
#   sh scripts/bench/fork-hang/run-all.sh [N] [K] > results.jsonl
set -eu
N=${1:-3000}
K=${2:-200}
here=$(dirname "$0")
bun=${BUN:-$(dirname "$0")/../../../node_modules/.bin/bun}
echo "{\"nproc\":$(nproc),\"kernel\":\"$(uname -r)\",\"glibc\":\"$(ldd --version | head -1)\",\"bun\":\"$("$bun" --version)\",\"loadavg\":\"$(cut -d' ' -f1-3 /proc/loadavg)\"}"
for shape in a b c cn e1 e2 e3 e3c; do
  "$bun" "$here/harness.ts" hang "$shape" "$N"
done
"$bun" "$here/harness.ts" hang a "$N" --gc-before
"$bun" "$here/harness.ts" hang b "$N" --quiet-gc
"$bun" "$here/harness.ts" timing "$K"
echo "{\"loadavg_end\":\"$(cut -d' ' -f1-3 /proc/loadavg)\"}"
