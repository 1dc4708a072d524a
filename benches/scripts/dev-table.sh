#!/usr/bin/env bash
# The issue's table (#13) on a machine too small for the device split: the
# device script (device-run.sh, the shared proxy-bench.sh with Meridian's
# changes) run as it is, but for what two cores need, against the binaries
# installed here rather than a bundle. Differences from the device run:
#   - one worker each for nginx, haproxy and Meridian (no per-worker CPU
#     masks: the cores 4-7 they name do not exist here);
#   - open-loop rates RATES (default 10000 20000 30000: both proxies
#     saturate between 25k and 50k req/s here), the direct call at the
#     middle one;
#   - the "one core" part on PX's core; meridian-bench unpinned, its load
#     generator on one thread (pinned, its mock and load generator share
#     one core, which saturates before either proxy).
# Cores default to the upstream and the load on core 0, the proxy alone on
# core 1 (dev-bench.sh's split). Needs nginx, haproxy, wrk and oha
# (`apt-get install nginx haproxy wrk`, `cargo install oha --locked`).
#
#   MERIDIAN=target/release/meridian MERIDIAN_BASE=/path/to/before \
#     bash benches/scripts/dev-table.sh        # about 9 minutes; log in $OUT
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
T=${CARGO_TARGET_DIR:-$ROOT/target}/release
MERIDIAN=$(realpath "${MERIDIAN:-$T/meridian}")
RATES=${RATES:-10000 20000 30000}
set -- $RATES
MID=${2:-$1}
B=$(mktemp -d)
trap 'rm -rf "$B"' EXIT
mkdir -p "$B/bin" "$B/lib"
for tool in nginx haproxy wrk oha; do
  path=$(command -v "$tool" || ls "/usr/sbin/$tool" "/tmp/oha/bin/$tool" 2>/dev/null | head -1)
  [ -n "$path" ] || { echo "dev-table.sh: $tool is not installed" >&2; exit 69; }
  ln -s "$path" "$B/bin/$tool"
done
ln -s "$MERIDIAN" "$B/bin/meridian"
[ -z "${MERIDIAN_BASE:-}" ] || ln -s "$(realpath "$MERIDIAN_BASE")" "$B/bin/meridian-base"
ln -s "$T/meridian-mock" "$B/bin/meridian-mock"
ln -s "$T/meridian-bench" "$B/bin/meridian-bench"
sed -e '/for f in \$B\/bin\/\*.xz/d' \
  -e 's/worker_processes 4; worker_cpu_affinity 00010000 00100000 01000000 10000000;/worker_processes 1;/' \
  -e 's/worker_processes 4; worker_cpu_affinity 0001 0010 0100 1000;/worker_processes 1;/' \
  -e 's/  nbthread 4/  nbthread 1/' -e '/cpu-map auto/d' \
  -e 's/start_meridian 4 \$PX/start_meridian 1 $PX/g' \
  -e "s/for rate in 20000 40000 60000/for rate in $RATES/g" \
  -e "s/ol direct-40000 \(.*\) 40000/ol direct-$MID \1 $MID/" \
  -e 's/taskset -c 4 \$B/taskset -c $PX $B/' -e 's/start_meridian 1 4$/start_meridian 1 $PX/' \
  -e 's/--client-threads 4/--client-threads 1/' -e 's/--cores "\$UP:\$PX:\$LG"/--cores none/' \
  -e 's/== meridian-bench, pinned like the above.*/== meridian-bench, unpinned"/' \
  "$HERE/device-run.sh" > "$B/run.sh"
UP=${UP:-0} PX=${PX:-1} LG=${LG:-0} OUT=${OUT:-/tmp/dev-table} bash "$B/run.sh"
