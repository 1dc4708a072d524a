#!/usr/bin/env bash
# What a proxy costs its peers: while wrk saturates nginx proxy_pass, then
# Meridian (then MERIDIAN_B, when set), `perf stat` counts CPU time and
# context switches per request of the proxy, of the upstream nginx worker
# and of wrk's threads, over SECS seconds, ROUNDS rounds. A peer's context
# switches per request are how often the proxy's writes found it asleep
# (and the proxy's `writev` paid for waking it). Setup of dev-bench.sh
# (upstream nginx and wrk on core 0, the proxy alone on core 1).
#
#   MERIDIAN=target/release/meridian [MERIDIAN_B=/path/b] bash benches/scripts/dev-peers.sh
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
SECS=${SECS:-5} ROUNDS=${ROUNDS:-2} W=${W:-/tmp/devbench-peers}
MERIDIAN=${MERIDIAN:-${CARGO_TARGET_DIR:-target}/release/meridian}
MERIDIAN_B=${MERIDIAN_B:-}
. "$HERE/dev-start.sh"
kill "$MP"; wait "$MP" 2>/dev/null
UPPID=$(pgrep -P "$(cat "$W/up.pid")" | head -1)
measure_one() { # label pid port
  taskset -c 0 /usr/bin/wrk -t2 -c64 -d$((SECS + 3))s -s "$W/post.lua" \
    http://127.0.0.1:$3/v1/chat/completions > "$W/wrk.txt" 2>&1 &
  local wp=$!
  sleep 1.5
  perf stat -e task-clock,context-switches -p "$2" -o "$W/px.txt" -- sleep "$SECS" &
  local a=$!
  perf stat -e task-clock,context-switches -p "$UPPID" -o "$W/up.txt" -- sleep "$SECS" &
  local b=$!
  perf stat -e task-clock,context-switches --per-thread -p "$wp" -o "$W/wrkst.txt" -- sleep "$SECS" &
  local c=$!
  wait $a $b $c; wait $wp
  python3 - "$1" "$(awk '/Requests\/sec/ {print $2}' "$W/wrk.txt")" "$SECS" "$W" <<'PY'
import re, sys
label, rps, secs, w = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
def counts(path):
    clock = switches = 0.0
    for line in open(path):
        num = [x for x in line.split() if re.match(r"^[0-9][0-9.,]*$", x)]
        if not num:
            continue
        if "task-clock" in line:
            clock += float(num[0].replace(",", ""))
        elif "context-switches" in line:
            switches += float(num[0].replace(",", ""))
    return clock, switches
n = rps * secs
cells = [f"{label:10s} {rps:8.0f} req/s"]
for who, path in (("proxy", "px"), ("upstream", "up"), ("wrk", "wrkst")):
    clock, switches = counts(f"{w}/{path}.txt")
    cells.append(f"{who} {clock * 1000 / n:5.2f} us {switches / n:.3f} cs")
print("PEERS " + "  ".join(cells))
PY
}
run_meridian() { # label binary
  rm -rf "$W/mdata"
  taskset -c 1 "$2" serve --config "$W/m.toml" > "$W/m.log" 2>&1 &
  MP=$!
  for _ in $(seq 200); do curl -s -o /dev/null http://127.0.0.1:19005/healthz && break; sleep 0.1; done
  measure_one "$1" "$MP" 19004
  kill "$MP"; wait "$MP" 2>/dev/null
}
for _ in $(seq "$ROUNDS"); do
  measure_one nginx "$(pgrep -P "$(cat "$W/px.pid")" | head -1)" 19002
  run_meridian meridian "$MERIDIAN"
  [ -z "$MERIDIAN_B" ] || run_meridian meridian-b "$MERIDIAN_B"
done
kill "$(cat "$W/px.pid")" "$(cat "$W/up.pid")" 2>/dev/null
