#!/usr/bin/env bash
# A profile-guided build of `meridian` (PGO). The data plane's user-side
# time is spread thin over hundreds of functions (none above 2.4 % of the
# samples, docs/perf-profile.md step thirteen), the shape of code whose cost
# is instruction fetch and branches rather than any one hot loop: that is
# what PGO lays out better. Steps:
#   1. the training tools (meridian-bench, meridian-conns, meridian-mock)
#      built as usual;
#   2. `meridian` built with `-Cprofile-generate` into $PGO_DIR/gen;
#   3. that binary run through the project's own workloads: meridian-bench
#      --quick --messages (plain, streamed and translated requests, open and
#      closed loop, against meridian-mock) and meridian-conns over TLS
#      upstreams with HTTP/1.1 and h2c clients; every node is stopped with
#      SIGTERM, so its profile is written;
#   4. the profiles merged with the toolchain's llvm-profdata (rustup's
#      `llvm-tools` component, added if missing);
#   5. `meridian` built with `-Cprofile-use` into $PGO_DIR/use.
# Needs nothing else (no nginx); about three release builds' time.
#
#   bash benches/scripts/pgo-build.sh    # -> target/pgo/use/release/meridian
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
T=${CARGO_TARGET_DIR:-$ROOT/target}
PGO_DIR=${PGO_DIR:-$T/pgo}
DATA="$PGO_DIR/profiles"
cd "$ROOT"

profdata=$(ls "$(rustc --print sysroot)"/lib/rustlib/*/bin/llvm-profdata 2>/dev/null | head -1 || true)
if [ -z "$profdata" ]; then
  rustup component add llvm-tools
  profdata=$(ls "$(rustc --print sysroot)"/lib/rustlib/*/bin/llvm-profdata | head -1)
fi

echo "== 1/5 training tools" >&2
cargo build --release -p meridian-benches -p meridian-mock --bins

echo "== 2/5 instrumented meridian" >&2
rm -rf "$DATA"
mkdir -p "$DATA"
RUSTFLAGS="-Cprofile-generate=$DATA" CARGO_TARGET_DIR="$PGO_DIR/gen" \
  cargo build --release --bin meridian
GEN_BIN="$PGO_DIR/gen/release/meridian"
# The flag instruments the build scripts and proc-macros too: what they
# wrote while the build ran is not the node's.
rm -f "$DATA"/*.profraw

echo "== 3/5 training" >&2
"$T/release/meridian-bench" --meridian-bin "$GEN_BIN" --mock-bin "$T/release/meridian-mock" \
  --skip-nginx --messages --quick --out "$DATA/bench.json" >&2
for clients in "" "--http1"; do
  # shellcheck disable=SC2086 # an empty word when the clients are h2c
  "$T/release/meridian-conns" --meridian-bin "$GEN_BIN" --mock-bin "$T/release/meridian-mock" \
    --phases memory --streams 1000 --rounds 1 --settle 1 --tls $clients >&2
done
ls "$DATA"/*.profraw > /dev/null || { echo "pgo-build.sh: no profile was written" >&2; exit 70; }

echo "== 4/5 merge" >&2
"$profdata" merge -o "$DATA/merged.profdata" "$DATA"/*.profraw

echo "== 5/5 optimised meridian" >&2
RUSTFLAGS="-Cprofile-use=$DATA/merged.profdata" \
  CARGO_TARGET_DIR="$PGO_DIR/use" cargo build --release --bin meridian
echo "$PGO_DIR/use/release/meridian"
