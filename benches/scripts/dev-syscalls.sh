#!/usr/bin/env bash
# Syscalls per request, nginx proxy_pass against Meridian (one worker each,
# core 1), same setup as dev-bench.sh: `perf stat` on the syscall
# tracepoints for SECS seconds while wrk (core 0) saturates each in turn.
#
#   MERIDIAN=/path/to/meridian bash benches/scripts/dev-syscalls.sh
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
SECS=${SECS:-4} W=${W:-/tmp/devbench-syscalls}
MERIDIAN=${MERIDIAN:-${CARGO_TARGET_DIR:-target}/release/meridian}
. "$HERE/dev-start.sh"
EV=raw_syscalls:sys_enter,syscalls:sys_enter_writev,syscalls:sys_enter_write,syscalls:sys_enter_sendto,syscalls:sys_enter_sendmsg,syscalls:sys_enter_recvfrom,syscalls:sys_enter_read,syscalls:sys_enter_readv,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_epoll_ctl,syscalls:sys_enter_futex,context-switches
for who in nginx meridian; do
  case $who in
    nginx) pid=$(pgrep -P "$(cat "$W/px.pid")" | head -1); port=19002 ;;
    meridian) pid=$MP; port=19004 ;;
  esac
  taskset -c 0 /usr/bin/wrk -t2 -c64 -d$((SECS + 3))s -s "$W/post.lua" http://127.0.0.1:$port/v1/chat/completions > "$W/wrk-$who.txt" 2>&1 &
  WP=$!
  sleep 1.5
  perf stat -e "$EV" -p "$pid" -o "$W/sys-$who.txt" -- sleep "$SECS"
  wait $WP
  rps=$(awk '/Requests\/sec/ {print $2}' "$W/wrk-$who.txt")
  echo "== $who: $rps req/s"
  awk -v r="$rps" -v s="$SECS" '$1 ~ /^[0-9,]+$/ {gsub(",","",$1); printf "  %-34s %6.2f per request\n", $2, $1/(r*s)}' "$W/sys-$who.txt"
done
kill $MP; wait $MP 2>/dev/null
kill "$(cat "$W/px.pid")" "$(cat "$W/up.pid")" 2>/dev/null
