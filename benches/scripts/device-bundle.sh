#!/usr/bin/env bash
# Assembles .bench/, the self-contained bundle the 16-core device machine
# runs (../shared/bench/README.md), with Meridian's own additions:
#   - the device script is benches/scripts/device-run.sh: the shared
#     proxy-bench.sh with admin token and client key long enough for today's
#     config checks (16 characters at least), a previous Meridian build
#     measured beside this one (MERIDIAN_BASE, optional), and meridian-bench
#     pinned the same way at the end;
#   - Meridian's binaries travel xz-compressed (the run decompresses them):
#     stripped, two builds, the mock, meridian-bench and oha fit the 64 MiB a
#     device call carries.
#
# MERIDIAN (default target/release/meridian) picks the build measured, e.g.
# the profile-guided one of pgo-build.sh.
#
#   MERIDIAN_BASE=/path/to/earlier/meridian bash benches/scripts/device-bundle.sh
#   then, on the device: cd .bench && bash run.sh   (carry: .bench)
set -eu
cd "$(dirname "$0")/../.."
mkdir -p .bench/bin .bench/lib .git/info
grep -qx '/.bench/' .git/info/exclude 2>/dev/null || echo /.bench/ >> .git/info/exclude
D=$(mktemp -d)
(cd "$D" && apt-get download nginx nginx-common wrk libluajit-5.1-2 haproxy liblua5.3-0 \
  libopentracing-c-wrapper0 libopentracing1)
for f in "$D"/*.deb; do dpkg-deb -x "$f" "$D/root"; done
cp "$D/root/usr/sbin/nginx" "$D/root/usr/sbin/haproxy" "$D/root/usr/bin/wrk" .bench/bin/
command -v oha >/dev/null || [ -x /tmp/oha/bin/oha ] || cargo install oha --locked --root /tmp/oha
OHA=$(command -v oha || echo /tmp/oha/bin/oha)
cargo build --release -p meridian -p meridian-mock -p meridian-benches
pack() { strip -o "$D/$2" "$1" && xz -9 -T0 -c "$D/$2" > ".bench/bin/$2.xz"; }
pack "$OHA" oha
pack "${MERIDIAN:-target/release/meridian}" meridian
pack target/release/meridian-mock meridian-mock
pack target/release/meridian-bench meridian-bench
pack target/release/meridian-floor meridian-floor
rm -f .bench/bin/meridian-base.xz
[ -n "${MERIDIAN_BASE:-}" ] && pack "$MERIDIAN_BASE" meridian-base
export LD_LIBRARY_PATH=$D/root/usr/lib/x86_64-linux-gnu
for b in .bench/bin/nginx .bench/bin/haproxy .bench/bin/wrk; do ldd "$b"; done | awk '/=>/ {print $3}' | sort -u \
  | grep -v -E 'libc.so|libm.so|libpthread|libdl|librt|ld-linux' | xargs -I{} cp -L {} .bench/lib/
cp benches/scripts/device-run.sh .bench/run.sh
rm -rf "$D"
du -sh .bench
