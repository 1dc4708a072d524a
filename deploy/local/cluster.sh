#!/usr/bin/env bash
# Starts a local 3-node Meridian cluster on this machine: certificates from
# `meridian certs`, one meridian-mock per node as its provider, and three
# `meridian serve` processes (regions us-east, eu-west, ap-south) replicating
# through Raft over QUIC. Runs in the foreground; Ctrl-C stops everything.
#
#   deploy/local/cluster.sh [DIR]      (default DIR: /tmp/meridian-local)
#
# Ports: data plane 127.0.0.1:8081-8083, admin 9081-9083, Raft (UDP) 7081-7083.
set -euo pipefail
cd "$(dirname "$0")/../.."

DIR=${1:-/tmp/meridian-local}
BIN=${MERIDIAN_BIN:-target/release/meridian}
MOCK=${MERIDIAN_MOCK_BIN:-target/release/meridian-mock}
if [ ! -x "$BIN" ] || [ ! -x "$MOCK" ]; then
  echo "==> building meridian and meridian-mock (release)"
  cargo build --release -p meridian -p meridian-mock
fi

mkdir -p "$DIR"
pids=()
cleanup() {
  echo
  echo "==> stopping"
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

"$BIN" certs --dir "$DIR/certs" n1 n2 n3 >/dev/null

"$MOCK" --listen 127.0.0.1:0 --control 127.0.0.1:0 > "$DIR/mock.out" 2> "$DIR/mock.log" &
pids+=($!)
for _ in $(seq 50); do [ -s "$DIR/mock.out" ] && break; sleep 0.1; done
mock_api=$(sed -E 's/.*"api":"([^"]+)".*/\1/' "$DIR/mock.out")
mock_control=$(sed -E 's/.*"control":"([^"]+)".*/\1/' "$DIR/mock.out")

regions=(us-east eu-west ap-south)
for i in 1 2 3; do
  cat > "$DIR/n$i.toml" <<TOML
[node]
id = $i
region = "${regions[$((i - 1))]}"
data_dir = "$DIR/data/n$i"

[listen]
api = "127.0.0.1:808$i"
admin = "127.0.0.1:908$i"
raft = "127.0.0.1:708$i"

[cluster]
members = ["1@127.0.0.1:7081", "2@127.0.0.1:7082", "3@127.0.0.1:7083"]
heartbeat_ms = 200
election_timeout_ms = 2000

[tls]
ca = "$DIR/certs/ca.pem"
cert = "$DIR/certs/n$i.pem"
key = "$DIR/certs/n$i.key"

[[upstreams]]
id = "mock"
base_url = "http://$mock_api/v1"
region = "local"

[[routes]]
model = "fast"
tiers = [[{ upstream = "mock", model = "mock-model", input_per_mtok = 0.1, output_per_mtok = 0.4 }]]
TOML
  "$BIN" serve --config "$DIR/n$i.toml" > "$DIR/n$i.out" 2> "$DIR/n$i.log" &
  pids+=($!)
done

for i in 1 2 3; do
  for _ in $(seq 300); do grep -q "meridian ready" "$DIR/n$i.out" 2>/dev/null && break; sleep 0.1; done
  grep -q "meridian ready" "$DIR/n$i.out" || { echo "node $i did not start; see $DIR/n$i.log"; exit 1; }
done

"$BIN" members list --admin http://127.0.0.1:9081
cat <<INFO

A 3-node cluster is running (files in $DIR; logs in $DIR/n*.log).
  chat:     curl -s http://127.0.0.1:8082/v1/chat/completions -d '{"model":"fast","messages":[{"role":"user","content":"hi"}]}'
  cluster:  $BIN members list --admin http://127.0.0.1:9083
  a route:  curl -s -X PUT http://127.0.0.1:9082/admin/v1/routes/smart -d '{"tiers":[[{"upstream":"mock","model":"big"}]]}'
  faults:   curl -s -X PATCH http://$mock_control/_mock/behavior -d '{"error_rate":0.5}'
Ctrl-C stops it.
INFO
wait
