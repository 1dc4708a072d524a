#!/usr/bin/env bash
# CPU per request and its kernel/user split, nginx proxy_pass against
# Meridian, same setup as dev-bench.sh (proxy alone on core 1, upstream and
# wrk on core 0): `perf stat` (task-clock) and a flat `perf record` (no call
# graph) on each while wrk saturates it, then `perf report --sort dso`.
#
#   MERIDIAN=/path/to/meridian bash benches/scripts/dev-split.sh
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
SECS=${SECS:-4} W=${W:-/tmp/devbench-split}
MERIDIAN=${MERIDIAN:-${CARGO_TARGET_DIR:-target}/release/meridian}
. "$HERE/dev-start.sh"
measure() {
  perf stat -e task-clock -p "$2" -o "$W/cpu-$1.txt" -- perf record -q -F 997 -p "$2" -o "$W/flat-$1.data" -- sleep "$SECS" >/dev/null 2>&1
}
report() {
  local ms
  ms=$(awk '/task-clock/ {gsub(",","",$1); print $1}' "$W/cpu-$1.txt")
  echo "== $1: $2 req/s, $(awk -v m="$ms" -v r="$2" -v s="$SECS" 'BEGIN {printf "%.1f", m*1000/(r*s)}') us CPU per request"
  perf report -i "$W/flat-$1.data" --sort dso --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -6
}
saturate_each
stop_all
