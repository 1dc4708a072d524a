#!/usr/bin/env bash
# CPU and kernel time per request, nginx proxy_pass against Meridian held at
# the SAME rate (oha open loop, RATE req/s on core 0), rather than each at
# its own saturation: a slower proxy leaves its peers more time to fall
# asleep, and waking a sleeping reader is paid by the writer, so kernel
# time per request at saturation is not comparable between proxies. Setup
# of dev-bench.sh (upstream nginx and the load on core 0, the proxy alone
# on core 1); `perf stat` and `perf record -g` on each proxy for SECS
# seconds, ROUNDS rounds; prints µs per request under the kernel paths
# that differ (inflated alike by the recording). Needs oha.
#
#   MERIDIAN=target/release/meridian bash benches/scripts/dev-equal-rate.sh
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
SECS=${SECS:-5} RATE=${RATE:-20000} ROUNDS=${ROUNDS:-2} W=${W:-/tmp/devbench-equal}
MERIDIAN=${MERIDIAN:-${CARGO_TARGET_DIR:-target}/release/meridian}
OHA=${OHA:-$(command -v oha || echo /tmp/oha/bin/oha)}
. "$HERE/dev-start.sh"
REQ='{"model":"m","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Say hello in one word."}]}'
for round in $(seq "$ROUNDS"); do
  for who in nginx meridian; do
    case $who in
      nginx) pid=$(pgrep -P "$(cat "$W/px.pid")" | head -1); port=19002 ;;
      meridian) pid=$MP; port=19004 ;;
    esac
    taskset -c 0 "$OHA" -z $((SECS + 4))s -q "$RATE" -c 64 --no-tui --output-format json -m POST \
      -H "Authorization: Bearer sk-bench-0123456789abcdef" -H "Content-Type: application/json" \
      -d "$REQ" http://127.0.0.1:$port/v1/chat/completions > "$W/ol-$who.json" 2>/dev/null &
    op=$!
    sleep 2
    perf stat -e task-clock -p "$pid" -o "$W/cpu-$who.txt" -- \
      perf record -q -g -F 1999 -p "$pid" -o "$W/g-$who.data" -- sleep "$SECS" >/dev/null 2>&1
    wait $op
    perf script -i "$W/g-$who.data" -F ip,sym 2>/dev/null > "$W/s-$who.txt"
  done
  echo "== round $round, $RATE req/s"
  python3 - "$W" "$SECS" <<'PY'
import json, sys
w, secs = sys.argv[1], float(sys.argv[2])
paths = [("all syscalls", "entry_SYSCALL_64"), ("writev", "do_writev"),
         ("receiver's input in softirq", "net_rx_action"),
         ("waking the reader", "sock_def_readable"), ("epoll_wait", "do_epoll_wait")]
rows = {}
for who in ("nginx", "meridian"):
    rps = json.load(open(f"{w}/ol-{who}.json"))["summary"]["requestsPerSec"]
    ms = next(float(l.split()[0].replace(",", "")) for l in open(f"{w}/cpu-{who}.txt") if "task-clock" in l)
    us = ms * 1000 / (rps * secs)
    stacks, cur = [], []
    for line in open(f"{w}/s-{who}.txt"):
        if not line.strip():
            if cur: stacks.append(cur); cur = []
            continue
        parts = line.split(None, 1)
        cur.append(parts[1].strip() if len(parts) > 1 else "")
    if cur: stacks.append(cur)
    n = max(len(stacks), 1)
    rows[who] = [("CPU (task-clock)", us)] + [
        (label, us * sum(any(f.startswith(fn) for f in s) for s in stacks) / n) for label, fn in paths]
print(f"{'us per request':32s} {'nginx':>8s} {'meridian':>9s}")
for (label, a), (_, b) in zip(rows["nginx"], rows["meridian"]):
    print(f"{label:32s} {a:8.2f} {b:9.2f}")
PY
done
stop_all
