#!/usr/bin/env bash
# Heap allocations and clock reads per proxied request: a uprobe on
# jemalloc's `malloc` and `realloc` in the binary and on libc's
# `clock_gettime` (perf probe), counted over a wrk run of DUR
# seconds in the setup of dev-bench.sh (upstream nginx on core 0, Meridian
# with one worker alone on core 1, wrk on core 0). Every probed call costs
# a trap into the kernel, so the count is exact and the request rate is
# not a throughput. With MERIDIAN_B, the second binary is counted after
# the first, the same way.
#
#   MERIDIAN=/path/a [MERIDIAN_B=/path/b] bash benches/scripts/dev-allocs.sh
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
DUR=${DUR:-6} W=${W:-/tmp/devbench-allocs}
MERIDIAN=${MERIDIAN:-${CARGO_TARGET_DIR:-target}/release/meridian}
MERIDIAN_B=${MERIDIAN_B:-}
GROUP=meridian_allocs
LIBC=${LIBC:-$(ldd "$MERIDIAN" | awk '/libc.so/ {print $3}')}

count() { # count LABEL BINARY
  local label=$1 bin=$2 requests
  perf probe -q -d "$GROUP:*" 2>/dev/null
  perf probe -q -x "$bin" -a "$GROUP:malloc=_rjem_malloc" || exit 1
  perf probe -q -x "$bin" -a "$GROUP:realloc=_rjem_realloc" || exit 1
  perf probe -q -x "$LIBC" -a "$GROUP:clock=__clock_gettime" || exit 1
  MERIDIAN=$bin
  START_PROXY=0 . "$HERE/dev-start.sh"
  perf stat -e "$GROUP:malloc,$GROUP:realloc,$GROUP:clock" -p "$MP" -o "$W/allocs-$label.txt" &
  local ps=$!
  sleep 0.5
  taskset -c 0 /usr/bin/wrk -t2 -c64 -d"${DUR}s" -s "$W/post.lua" \
    http://127.0.0.1:19004/v1/chat/completions > "$W/wrk-allocs-$label.txt" 2>&1
  sleep 0.5
  kill -INT $ps; wait $ps
  kill "$MP"; wait "$MP" 2>/dev/null
  kill "$(cat "$W/up.pid")" 2>/dev/null
  perf probe -q -d "$GROUP:*"
  requests=$(awk '/requests in/ {print $1}' "$W/wrk-allocs-$label.txt")
  awk -v r="$requests" -v who="$label" '/'"$GROUP"':/ {
      gsub(",", "", $1); split($2, e, ":"); printf "PER-REQUEST %s %s %.2f per request (%s requests)\n", who, e[2], $1 / r, r
    }' "$W/allocs-$label.txt"
}

count a "$MERIDIAN"
[ -z "$MERIDIAN_B" ] || count b "$MERIDIAN_B"
