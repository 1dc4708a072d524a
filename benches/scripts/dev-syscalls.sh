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
measure() {
  perf stat -e "$EV" -p "$2" -o "$W/sys-$1.txt" -- sleep "$SECS"
}
report() {
  echo "== $1: $2 req/s"
  awk -v r="$2" -v s="$SECS" '$1 ~ /^[0-9,]+$/ {gsub(",","",$1); printf "  %-34s %6.2f per request\n", $2, $1/(r*s)}' "$W/sys-$1.txt"
}
saturate_each
stop_all
