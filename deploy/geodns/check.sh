#!/usr/bin/env bash
# Proves the GeoDNS recipe on this machine: PowerDNS serves
# deploy/geodns/meridian.example.zone on loopback (the nodes' addresses
# replaced by 127.0.0.11-13), three Meridian nodes run on those addresses, and
# the answers follow the nodes' /readyz: a killed node leaves the answers
# within the health-check interval and comes back after a restart.
#
#   deploy/geodns/check.sh            (as root, or with sudo, if it must install packages)
#
# Installs pdns-server, pdns-backend-bind and dnsutils with apt-get when they
# are missing, without starting the system's pdns service. Builds meridian
# and meridian-mock (release) when they are missing. Everything it starts
# runs from a temporary directory and is stopped on exit; KEEP=1 keeps the
# directory (configs, logs) for a look afterwards.
#
# Environment: DNS_PORT (default 5354), MERIDIAN_BIN, MERIDIAN_MOCK_BIN, KEEP.
# Ports used on each of 127.0.0.11-13: 8080 (API), 9080 (admin), 7080/udp (Raft).
# Prints one PASS or FAIL line per check and exits 1 if any failed.
set -euo pipefail
cd "$(dirname "$0")/../.."

DNS_PORT=${DNS_PORT:-5354}
BIN=${MERIDIAN_BIN:-target/release/meridian}
MOCK=${MERIDIAN_MOCK_BIN:-target/release/meridian-mock}
ZONE_SRC=deploy/geodns/meridian.example.zone
ZONE=meridian.example
INTERVAL=1                       # lua-health-checks-interval, seconds
CHECK_TIMEOUT=2                  # the zone's ifurlup timeout option, seconds
DROP_BOUND=$((INTERVAL + CHECK_TIMEOUT + 1))
IPS=(127.0.0.11 127.0.0.12 127.0.0.13)
REGIONS=(us-east eu-west ap-south)
VICTIM=2                         # the node that is killed (eu-west)

passed=0
failed=0
pass() { passed=$((passed + 1)); printf 'PASS  %s\n' "$*"; }
fail() { failed=$((failed + 1)); printf 'FAIL  %s\n' "$*"; }
say() { printf '==> %s\n' "$*"; }
now() { printf '%s' "${EPOCHREALTIME/,/.}"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

WORK=$(mktemp -d /tmp/meridian-geodns.XXXXXX)
declare -A pids=()
pdns_pid=""
mock_pid=""
cleanup() {
  local status=$?
  for i in "${!pids[@]}"; do kill "${pids[$i]}" 2>/dev/null || true; done
  for pid in "$mock_pid" "$pdns_pid"; do
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi
  done
  wait 2>/dev/null || true
  if [ "${KEEP:-0}" = 1 ]; then
    echo "kept $WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- packages -------------------------------------------------------------
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}
bind_backend() { compgen -G '/usr/lib/*/pdns/libbindbackend.so' >/dev/null; }
need=()
[ -x /usr/sbin/pdns_server ] || need+=(pdns-server)
bind_backend || need+=(pdns-backend-bind)
command -v dig >/dev/null || need+=(dnsutils)
if [ "${#need[@]}" -gt 0 ]; then
  say "installing ${need[*]} (apt-get; the system's pdns service is not started)"
  policy_added=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    # Debian's maintainer scripts ask this before starting a service: 101 = no.
    printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null
    as_root chmod 755 /usr/sbin/policy-rc.d
    policy_added=1
  fi
  install() {
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
      -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
      "${need[@]}" >"$WORK/apt.log" 2>&1
  }
  install || { as_root apt-get update >>"$WORK/apt.log" 2>&1 && install; } || {
    [ "$policy_added" = 1 ] && as_root rm -f /usr/sbin/policy-rc.d
    tail -n 20 "$WORK/apt.log"
    fail "apt-get install ${need[*]}"
    exit 1
  }
  [ "$policy_added" = 1 ] && as_root rm -f /usr/sbin/policy-rc.d
  # Where systemd runs, the package enables pdns.service: this script runs
  # its own server, so leave no system DNS server behind.
  if [[ " ${need[*]} " == *" pdns-server "* ]] && [ -d /run/systemd/system ]; then
    as_root systemctl disable --now pdns.service >/dev/null 2>&1 || true
  fi
fi

# --- binaries -------------------------------------------------------------
if [ ! -x "$BIN" ] || [ ! -x "$MOCK" ]; then
  say "building meridian and meridian-mock (release)"
  cargo build --release -p meridian -p meridian-mock
fi

# --- PowerDNS -------------------------------------------------------------
mkdir -p "$WORK/pdns"
sed -e 's/192\.0\.2\.11/127.0.0.11/g' -e 's/198\.51\.100\.12/127.0.0.12/g' \
  -e 's/203\.0\.113\.13/127.0.0.13/g' "$ZONE_SRC" >"$WORK/pdns/$ZONE.zone"
cat >"$WORK/pdns/named.conf" <<CONF
zone "$ZONE" { type master; file "$WORK/pdns/$ZONE.zone"; };
CONF
# No packet or query cache: each answer is computed from the current health
# state, as a resolver would see it once its own TTL runs out. No security
# poll (a DNS query to the outside world).
cat >"$WORK/pdns/pdns.conf" <<CONF
launch=bind
bind-config=$WORK/pdns/named.conf
local-address=127.0.0.1
local-port=$DNS_PORT
enable-lua-records=yes
lua-health-checks-interval=$INTERVAL
cache-ttl=0
query-cache-ttl=0
negquery-cache-ttl=0
socket-dir=$WORK/pdns
daemon=no
guardian=no
disable-syslog=yes
security-poll-suffix=
webserver=no
api=no
loglevel=6
CONF
/usr/sbin/pdns_server --config-dir="$WORK/pdns" >"$WORK/pdns.log" 2>&1 &
pdns_pid=$!

dns() { # NAME -> the A records, sorted, space-separated ("" on no answer)
  { dig +short +time=1 +tries=1 -p "$DNS_PORT" @127.0.0.1 "$1" A 2>/dev/null || true; } |
    { grep -E '^[0-9]+(\.[0-9]+){3}$' || true; } | sort | paste -sd' ' -
}
soa() { dig +short +time=1 +tries=1 -p "$DNS_PORT" @127.0.0.1 "$ZONE" SOA 2>/dev/null | grep -q "^ns1\.$ZONE\. "; }
started=$(now)
for _ in $(seq 100); do
  soa && break
  kill -0 "$pdns_pid" 2>/dev/null || break
  sleep 0.1
done
if ! soa || ! kill -0 "$pdns_pid" 2>/dev/null; then
  tail -n 20 "$WORK/pdns.log"
  fail "pdns_server answers for $ZONE on 127.0.0.1:$DNS_PORT"
  exit 1
fi
version=$(/usr/sbin/pdns_server --version 2>&1 | grep -oE 'Authoritative Server [0-9.]+' | head -n 1 || true)
say "pdns_server (PowerDNS ${version:-?}) answers for $ZONE on 127.0.0.1:$DNS_PORT after $(since "$started") s; lua-health-checks-interval=$INTERVAL s, ifurlup timeout $CHECK_TIMEOUT s, no packet cache"

# --- three Meridian nodes -------------------------------------------------
"$MOCK" --listen 127.0.0.1:0 --control 127.0.0.1:0 >"$WORK/mock.out" 2>"$WORK/mock.log" &
mock_pid=$!
for _ in $(seq 50); do [ -s "$WORK/mock.out" ] && break; sleep 0.1; done
mock_api=$(sed -E 's/.*"api":"([^"]+)".*/\1/' "$WORK/mock.out")

members=""
for i in 1 2 3; do members+="${members:+, }\"$i@${IPS[$((i - 1))]}:7080\""; done
for i in 1 2 3; do
  ip=${IPS[$((i - 1))]}
  # Each node's certificate names the address its peers dial.
  "$BIN" certs --dir "$WORK/certs" "n$i" --san "$ip" >/dev/null
  cat >"$WORK/n$i.toml" <<TOML
[node]
id = $i
region = "${REGIONS[$((i - 1))]}"
data_dir = "$WORK/data/n$i"

[listen]
api = "$ip:8080"
admin = "$ip:9080"
raft = "$ip:7080"

[cluster]
members = [$members]
heartbeat_ms = 200
election_timeout_ms = 2000

[tls]
ca = "$WORK/certs/ca.pem"
cert = "$WORK/certs/n$i.pem"
key = "$WORK/certs/n$i.key"

[[upstreams]]
id = "mock"
base_url = "http://$mock_api/v1"
region = "local"

[[routes]]
model = "fast"
tiers = [[{ upstream = "mock", model = "mock-model" }]]
TOML
done

start_node() {
  : >"$WORK/n$1.out"
  "$BIN" serve --config "$WORK/n$1.toml" >"$WORK/n$1.out" 2>>"$WORK/n$1.log" &
  pids[$1]=$!
}
wait_ready() { # ID TIMEOUT_S
  local deadline=$((SECONDS + $2))
  while [ "$SECONDS" -lt "$deadline" ]; do
    grep -q "meridian ready" "$WORK/n$1.out" 2>/dev/null && return 0
    kill -0 "${pids[$1]}" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
started=$(now)
for i in 1 2 3; do start_node "$i"; done
for i in 1 2 3; do
  if ! wait_ready "$i" 30; then
    tail -n 20 "$WORK/n$i.log"
    fail "node $i (${REGIONS[$((i - 1))]}) ready"
    exit 1
  fi
done
say "three nodes ready after $(since "$started") s: ${IPS[*]} (admin :9080, /readyz $(curl -s -o /dev/null -w '%{http_code}' "http://${IPS[0]}:9080/readyz") $(curl -s -o /dev/null -w '%{http_code}' "http://${IPS[1]}:9080/readyz") $(curl -s -o /dev/null -w '%{http_code}' "http://${IPS[2]}:9080/readyz"))"

# --- checks ----------------------------------------------------------------
ALL="${IPS[*]}"
victim_ip=${IPS[$((VICTIM - 1))]}
survivors=$(printf '%s\n' "${IPS[@]}" | grep -vxF "$victim_ip" | paste -sd' ' -)
victim_name="${REGIONS[$((VICTIM - 1))]}.api.$ZONE"

wait_for() { # START TIMEOUT_S PREDICATE ARGS... -> prints seconds since START; fails on timeout
  local start=$1 deadline=$((SECONDS + $2))
  shift 2
  until "$@"; do
    if [ "$SECONDS" -gt "$deadline" ]; then since "$start"; return 1; fi
    sleep 0.05
  done
  since "$start"
}
answers() { [ "$(dns "$1")" = "$2" ]; }                 # NAME "A B": exactly these
answers_among() { subset_of "$(dns "$1")" "$2"; }      # NAME "A B": some of these, nothing else
sample() { # NAME COUNT -> the distinct answers over COUNT queries
  local i
  for i in $(seq "$2"); do dns "$1"; done | tr ' ' '\n' | sed '/^$/d' | sort -u | paste -sd' ' -
}
subset_of() { # "A B" "A B C": is every word of $1 in $2?
  local a
  for a in $1; do [[ " $2 " == *" $a "* ]] || return 1; done
  [ -n "$1" ]
}

# The first query of a name registers its health checks and gets the backup
# answer (PowerDNS counts an unchecked address as down); ask every name once.
for name in "healthy.$ZONE" "api.$ZONE" "$victim_name"; do dns "$name" >/dev/null; done
first=$(now)
checked() { # every address has had a health check (PowerDNS logs each first verdict)
  local ip
  for ip in "${IPS[@]}"; do
    grep -q "monitoring declaring $ip \(UP\|DOWN\)" "$WORK/pdns.log" || return 1
  done
}
if t=$(wait_for "$first" 10 checked); then
  say "PowerDNS has checked every node's /readyz ${t} s after the first query"
else
  fail "PowerDNS checks every node's /readyz within 10 s of the first query"
fi

if t=$(wait_for "$first" 10 answers "healthy.$ZONE" "$ALL"); then
  pass "healthy.$ZONE lists all three nodes ($ALL) ${t} s after the first query"
else
  fail "healthy.$ZONE lists all three nodes within 10 s: got '$(dns "healthy.$ZONE")'"
fi
if t=$(wait_for "$first" 10 answers "$victim_name" "$victim_ip"); then
  pass "$victim_name answers its own node, $victim_ip (${t} s after the first query)"
else
  fail "$victim_name answers $victim_ip: got '$(dns "$victim_name")'"
fi
seen=$(sample "api.$ZONE" 30)
if [ "$seen" = "$ALL" ]; then
  pass "api.$ZONE: 30 queries, one healthy node each, all three seen: $seen (pickclosest without GeoIP: every address at distance 0, so a random healthy node)"
else
  fail "api.$ZONE: 30 queries should see every node and nothing else; seen: '$seen'"
fi

say "killing node $VICTIM (${REGIONS[$((VICTIM - 1))]}, $victim_ip) with SIGKILL"
killed=$(now)
exec 3>&2 2>/dev/null # no "Killed" notice from bash when it reaps the node
kill -KILL "${pids[$VICTIM]}"
wait "${pids[$VICTIM]}" || true
exec 2>&3 3>&-
unset "pids[$VICTIM]"
within() { awk -v t="$1" -v b="$2" 'BEGIN { exit !(t <= b) }'; }
if t=$(wait_for "$killed" 15 answers "healthy.$ZONE" "$survivors") && within "$t" "$DROP_BOUND"; then
  pass "healthy.$ZONE drops $victim_ip ${t} s after the kill (bound ${DROP_BOUND} s = interval $INTERVAL s + check timeout $CHECK_TIMEOUT s + 1 s)"
else
  fail "healthy.$ZONE drops $victim_ip within ${DROP_BOUND} s of the kill: '$(dns "healthy.$ZONE")' after ${t} s"
fi
if t=$(wait_for "$killed" 15 answers_among "$victim_name" "$survivors") && within "$t" "$DROP_BOUND"; then
  pass "$victim_name fails over to $(dns "$victim_name") ${t} s after the kill"
else
  fail "$victim_name fails over within ${DROP_BOUND} s of the kill: '$(dns "$victim_name")' after ${t} s"
fi
seen=$(sample "api.$ZONE" 30)
if subset_of "$seen" "$survivors"; then
  pass "api.$ZONE: 30 queries, none answered $victim_ip; seen: $seen"
else
  fail "api.$ZONE: 30 queries after the kill should see only $survivors; seen: '$seen'"
fi
for ip in $survivors; do
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://$ip:9080/readyz" || true)
  if [ "$code" = 200 ]; then
    pass "the node at $ip keeps serving: /readyz 200"
  else
    fail "the node at $ip keeps serving: /readyz answers $code"
  fi
done

say "restarting node $VICTIM on its data directory"
restarted=$(now)
start_node "$VICTIM"
if wait_ready "$VICTIM" 30; then
  pass "node $VICTIM ready again $(since "$restarted") s after the restart"
else
  tail -n 20 "$WORK/n$VICTIM.log"
  fail "node $VICTIM ready again within 30 s"
fi
ready_at=$(now)
if t=$(wait_for "$ready_at" 15 answers "healthy.$ZONE" "$ALL"); then
  pass "healthy.$ZONE lists $victim_ip again ${t} s after it was ready ($(since "$restarted") s after the restart)"
else
  fail "healthy.$ZONE lists $victim_ip again within 15 s of it being ready: '$(dns "healthy.$ZONE")'"
fi
if t=$(wait_for "$ready_at" 15 answers "$victim_name" "$victim_ip"); then
  pass "$victim_name answers $victim_ip again ${t} s after it was ready"
else
  fail "$victim_name answers $victim_ip again: got '$(dns "$victim_name")'"
fi
seen=$(sample "api.$ZONE" 30)
if [ "$seen" = "$ALL" ]; then
  pass "api.$ZONE: 30 queries see all three nodes again: $seen"
else
  fail "api.$ZONE: 30 queries should see all three nodes again; seen: '$seen'"
fi

# Fail-static: the two other nodes frozen (SIGSTOP: their /readyz times out),
# the victim alone hears no quorum. /readyz?strict=true says so (503), plain
# /readyz stays 200, and the names still answer with it: the first group
# (nodes that hear their cluster) is empty, the next (nodes that serve) is it.
others=()
for i in 1 2 3; do [ "$i" = "$VICTIM" ] || others+=("$i"); done
say "freezing nodes ${others[*]} (SIGSTOP): node $VICTIM is left without a quorum"
frozen=$(now)
for i in "${others[@]}"; do kill -STOP "${pids[$i]}"; done
strict_503() { [ "$(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://$victim_ip:9080/readyz?strict=true")" = 503 ]; }
if t=$(wait_for "$frozen" 20 strict_503); then
  pass "node $VICTIM says it is cut off (/readyz?strict=true 503) ${t} s after the others froze; plain /readyz $(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://$victim_ip:9080/readyz")"
else
  fail "node $VICTIM says it is cut off within 20 s: /readyz?strict=true never answered 503"
fi
cut_off_at=$(now)
if t=$(wait_for "$cut_off_at" 15 answers "api.$ZONE" "$victim_ip"); then
  pass "api.$ZONE answers the cut-off node that still serves, $victim_ip (fail-static), ${t} s after it said so"
else
  fail "api.$ZONE answers $victim_ip while it is the only node serving: '$(dns "api.$ZONE")'"
fi
other_name="${REGIONS[$((others[0] - 1))]}.api.$ZONE"
if t=$(wait_for "$cut_off_at" 15 answers "$other_name" "$victim_ip"); then
  pass "$other_name (its own node frozen) answers $victim_ip ${t} s after it said so"
else
  fail "$other_name answers $victim_ip while it is the only node serving: '$(dns "$other_name")'"
fi
for i in "${others[@]}"; do kill -CONT "${pids[$i]}"; done
thawed=$(now)
strict_200() { [ "$(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://$victim_ip:9080/readyz?strict=true")" = 200 ]; }
if t=$(wait_for "$thawed" 20 strict_200); then
  pass "node $VICTIM hears its cluster again (/readyz?strict=true 200) ${t} s after the others woke"
else
  fail "node $VICTIM hears its cluster again within 20 s of the others waking"
fi
if t=$(wait_for "$thawed" 20 answers "healthy.$ZONE" "$ALL"); then
  pass "healthy.$ZONE lists all three nodes again ${t} s after the others woke"
else
  fail "healthy.$ZONE lists all three nodes again: '$(dns "healthy.$ZONE")'"
fi

if grep -q "GeoIPBackend" "$WORK/pdns.log"; then
  say "pdns logged (pickclosest without a GeoIP backend): $(grep -m1 -io 'LUA record attempted to use GeoIPBackend.*' "$WORK/pdns.log")"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
