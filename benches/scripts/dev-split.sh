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
for who in nginx meridian; do
  case $who in
    nginx) pid=$(pgrep -P "$(cat "$W/px.pid")" | head -1); port=19002 ;;
    meridian) pid=$MP; port=19004 ;;
  esac
  taskset -c 0 /usr/bin/wrk -t2 -c64 -d$((SECS + 3))s -s "$W/post.lua" http://127.0.0.1:$port/v1/chat/completions > "$W/wrk-$who.txt" 2>&1 &
  WP=$!
  sleep 1.5
  perf stat -e task-clock -p "$pid" -o "$W/cpu-$who.txt" -- perf record -q -F 997 -p "$pid" -o "$W/flat-$who.data" -- sleep "$SECS" >/dev/null 2>&1
  wait $WP
  rps=$(awk '/Requests\/sec/ {print $2}' "$W/wrk-$who.txt")
  ms=$(awk '/task-clock/ {gsub(",","",$1); print $1}' "$W/cpu-$who.txt")
  echo "== $who: $rps req/s, $(awk -v m="$ms" -v r="$rps" -v s="$SECS" 'BEGIN {printf "%.1f", m*1000/(r*s)}') us CPU per request"
  perf report -i "$W/flat-$who.data" --sort dso --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -6
done
kill $MP; wait $MP 2>/dev/null
kill "$(cat "$W/px.pid")" "$(cat "$W/up.pid")" 2>/dev/null
