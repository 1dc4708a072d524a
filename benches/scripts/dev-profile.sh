#!/usr/bin/env bash
# Where Meridian's time goes at saturation: the setup of dev-bench.sh
# (upstream nginx on core 0, Meridian with one worker alone on core 1, wrk
# on core 0), then `perf record --call-graph dwarf` on Meridian for SECS
# seconds while wrk saturates it, and the cost categories of
# perf-categories.py. This VM has no hardware counters: samples are cpu-clock.
#
#   MERIDIAN=/path/to/meridian bash benches/scripts/dev-profile.sh
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
SECS=${SECS:-4} FREQ=${FREQ:-997} W=${W:-/tmp/devbench-profile}
MERIDIAN=${MERIDIAN:-${CARGO_TARGET_DIR:-target}/release/meridian}
START_PROXY=0 . "$HERE/dev-start.sh"
taskset -c 0 /usr/bin/wrk -t2 -c64 -d$((SECS + 5))s -s "$W/post.lua" http://127.0.0.1:19004/v1/chat/completions > "$W/wrk-profile.txt" 2>&1 &
WP=$!
sleep 3
perf record -F "$FREQ" --call-graph dwarf,32768 -p "$MP" -o "$W/perf.data" -- sleep "$SECS" 2>&1 | tail -1
wait $WP
grep -E "Requests/sec" "$W/wrk-profile.txt"
kill $MP; wait $MP 2>/dev/null
kill "$(cat "$W/up.pid")" 2>/dev/null
perf script -i "$W/perf.data" -F comm,tid,ip,sym,dso 2>/dev/null > "$W/perf.script"
python3 "$HERE/perf-categories.py" < "$W/perf.script"
