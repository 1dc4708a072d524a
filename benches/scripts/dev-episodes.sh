#!/usr/bin/env bash
# Where an open loop's tail comes from: nginx proxy_pass and Meridian held
# at the same rate (oha, RATE req/s, latency-corrected, C connections, the
# issue's table's settings) in the setup of dev-bench.sh (upstream nginx
# and the load on core 0, the proxy alone on core 1), every request
# written out (oha's CSV), then: p99 and p99.9 over the whole run and
# after its first half second (when oha's connections have all opened),
# how busy each core was, and when the requests over 10 ms were sent, in
# 100 ms bins, so a burst at the start, one long stall and many short
# episodes look different. ROUNDS rounds, nginx then Meridian. Needs oha.
#
#   MERIDIAN=target/release/meridian bash benches/scripts/dev-episodes.sh
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
SECS=${SECS:-10} RATE=${RATE:-20000} C=${C:-512} ROUNDS=${ROUNDS:-2} W=${W:-/tmp/devbench-episodes}
MERIDIAN=${MERIDIAN:-${CARGO_TARGET_DIR:-target}/release/meridian}
OHA=${OHA:-$(command -v oha || echo /tmp/oha/bin/oha)}
. "$HERE/dev-start.sh"
REQ='{"model":"m","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Say hello in one word."}]}'
cores() { awk '/^cpu[01] / {busy = $2 + $3 + $4 + $7 + $8 + $9; print busy, busy + $5 + $6}' /proc/stat | tr '\n' ' '; }
for round in $(seq "$ROUNDS"); do
  for who in nginx meridian; do
    case $who in nginx) port=19002 ;; meridian) port=19004 ;; esac
    # Warm, as the table's saturation runs leave it: pools filled.
    taskset -c 0 /usr/bin/wrk -t2 -c64 -d2s -s "$W/post.lua" http://127.0.0.1:$port/v1/chat/completions >/dev/null 2>&1
    before=$(cores)
    taskset -c 0 "$OHA" -z "${SECS}s" -q "$RATE" -c "$C" --latency-correction --no-tui --output-format csv \
      -m POST -H "Authorization: Bearer sk-bench-0123456789abcdef" -H "Content-Type: application/json" \
      -d "$REQ" http://127.0.0.1:$port/v1/chat/completions > "$W/ol-$who.csv" 2>/dev/null
    after=$(cores)
    python3 - "$W/ol-$who.csv" "$who" "$round" "$before" "$after" <<'PY'
import collections, csv, sys
path, who, rnd, before, after = sys.argv[1:6]
rows = [(float(r["request-start"]), float(r["request-duration"]), r["status"])
        for r in csv.DictReader(open(path))]
def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * q))] * 1e3 if xs else 0.0
late = [d for s, d, _ in rows if s >= 0.5]
b, a = list(map(int, before.split())), list(map(int, after.split()))
busy = [100 * (a[i] - b[i]) / max(a[i + 1] - b[i + 1], 1) for i in (0, 2)]
failed = sum(1 for _, _, st in rows if st != "200")
print(f"EPISODES round {rnd} {who}: {len(rows)} requests, {failed} not 200; "
      f"p99 {pct([d for _, d, _ in rows], 0.99):.1f} ms, p99.9 {pct([d for _, d, _ in rows], 0.999):.1f} ms; "
      f"after 0.5 s p99 {pct(late, 0.99):.1f} ms, p99.9 {pct(late, 0.999):.1f} ms; "
      f"core 0 {busy[0]:.0f} % busy, core 1 {busy[1]:.0f} %")
bins = collections.Counter(int(s * 10) for s, d, _ in rows if d > 0.010)
print("  over 10 ms, by 100 ms bin of sending: "
      + ("; ".join(f"{k / 10:.1f} s: {v}" for k, v in sorted(bins.items())) or "none"))
PY
  done
done
stop_all
