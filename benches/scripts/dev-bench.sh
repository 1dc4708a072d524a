#!/usr/bin/env bash
# Side by side on the 2-core development machine: nginx proxy_pass (keep-alive)
# against Meridian with one worker, same upstream, same cores, same load.
# Adapted from ../shared/bench/proxy-bench.sh (same nginx configs, same Meridian
# config, same request), with the closed-loop part only (no oha here).
#
#   MERIDIAN=/path/to/meridian bash benches/scripts/dev-bench.sh
#
# Cores (override with UP/PX/LG): upstream nginx on 0, the proxy under test
# alone on 1, wrk on 0 (sharing the upstream's core). ROUNDS rounds, each one
# nginx then Meridian (then MERIDIAN_B, when set, for a before/after pair),
# DUR seconds each after a 2 s warm-up (RUST_LOG, default warn, for Meridian;
# RUST_LOG_B for MERIDIAN_B, e.g. the same binary at the default `info`).
# ROUTES_B=N gives MERIDIAN_B a routing table of N routes over N/10
# upstreams (the measured route among them, unchanged), to show whether the
# cost grows with the table (issue #13); MERIDIAN_B may be the same binary.
# TLS=1 puts TLS between the proxies and the upstream (nginx listening
# with `ssl http2` on 19011, a private CA in $W/ca.pem): nginx proxies to it
# with keep-alive and verification, Meridian trusts it through `ca_file`.
# STREAM=1 streams instead: the upstream is meridian-mock (MOCK, beside
# MERIDIAN by default; one thread on UP, 8 chunks with no delay between
# them), the request asks for `"stream": true` and the usage (a last chunk
# with the figures, `"usage":null` in every chunk before it, as OpenAI
# writes them), and nginx relays with
# `proxy_buffering off`, so the CPU per request is a streamed answer's.
# FLOOR=<meridian-floor> adds a fourth contender in each round: the least
# a keep-alive proxy on Meridian's runtime does per request (no routing, no
# rewriting; plain answers over plain HTTP only), the floor Meridian's own
# work sits on (benches/src/floor).
# Prints one SAT line per run and the
# load average before each round; PERF=1 adds `perf stat` on the proxy under
# test (CPU time, its user/kernel split, context switches, migrations, page faults per request; this
# machine is a VM without hardware counters, so no cycles or instructions).
set -u; ulimit -n 65536 2>/dev/null || ulimit -n 20000
UP=${UP:-0} PX=${PX:-1} LG=${LG:-0} DUR=${DUR:-6} ROUNDS=${ROUNDS:-3}
WT=${WT:-2} WC=${WC:-64} PERF=${PERF:-0}
NGINX=${NGINX:-/usr/sbin/nginx} WRK=${WRK:-/usr/bin/wrk}
MERIDIAN=${MERIDIAN:-${CARGO_TARGET_DIR:-target}/release/meridian}
STREAM=${STREAM:-0} MOCK=${MOCK:-$(dirname "$MERIDIAN")/meridian-mock}
FLOOR=${FLOOR:-} MERIDIAN_B=${MERIDIAN_B:-} RUST_LOG_B=${RUST_LOG_B:-${RUST_LOG:-warn}} ROUTES_B=${ROUTES_B:-1}
if [ -n "$FLOOR" ] && { [ "${STREAM:-0}" = 1 ] || [ "${TLS:-0}" = 1 ]; }; then
  echo "dev-bench.sh: FLOOR measures plain answers over plain HTTP only (not STREAM=1 or TLS=1)" >&2
  exit 64
fi
W=${W:-/tmp/devbench}; rm -rf "$W"; mkdir -p "$W"
# (the shared script's 8-character admin token is refused now: 16 at least)
body='{"id":"chatcmpl-x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hello"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}'
TLS=${TLS:-0} UPURL=http://127.0.0.1:19001 PXUP="http://up" TLSUP="" TLSPX="" TLSPXLOC="" TLSM=""
STREAMLOC="" STREAMFIELD=""
if [ "$STREAM" = 1 ]; then STREAMLOC="proxy_buffering off;" STREAMFIELD='"stream":true,"stream_options":{"include_usage":true},'; fi
if [ "$TLS" = 1 ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=bench-ca \
    -keyout "$W/ca.key" -out "$W/ca.pem" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
    -keyout "$W/up.key" -out "$W/up.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > "$W/san.ext"
  openssl x509 -req -in "$W/up.csr" -CA "$W/ca.pem" -CAkey "$W/ca.key" -CAcreateserial -days 2 \
    -extfile "$W/san.ext" -out "$W/up.pem" 2>/dev/null
  UPURL=https://127.0.0.1:19011 PXUP="https://up_tls"
  TLSUP="server { listen 127.0.0.1:19011 ssl http2 reuseport backlog=4096; ssl_certificate $W/up.pem; ssl_certificate_key $W/up.key; ssl_session_cache shared:S:10m; location / { default_type application/json; return 200 '$body'; } }"
  TLSPX="upstream up_tls { server 127.0.0.1:19011; keepalive 256; }"
  TLSPXLOC="proxy_ssl_trusted_certificate $W/ca.pem; proxy_ssl_verify on; proxy_ssl_name localhost; proxy_ssl_session_reuse on;"
  TLSM="ca_file = \"$W/ca.pem\""
fi
cat > "$W/up.conf" <<NGX
worker_processes 1;
pid $W/up.pid; error_log $W/up.err; events { worker_connections 16384; }
http { access_log off; client_body_temp_path $W/t1; proxy_temp_path $W/t2; fastcgi_temp_path $W/t3; uwsgi_temp_path $W/t4; scgi_temp_path $W/t5; keepalive_requests 1000000;
  server { listen 127.0.0.1:19001 reuseport backlog=4096; location / { default_type application/json; return 200 '$body'; } }
  $TLSUP }
NGX
cat > "$W/px.conf" <<NGX
worker_processes 1;
pid $W/px.pid; error_log $W/px.err; events { worker_connections 16384; }
http { access_log off; client_body_temp_path $W/t1; proxy_temp_path $W/t2; fastcgi_temp_path $W/t3; uwsgi_temp_path $W/t4; scgi_temp_path $W/t5; keepalive_requests 1000000;
  upstream up { server 127.0.0.1:19001; keepalive 256; } $TLSPX
  server { listen 127.0.0.1:19002 reuseport backlog=4096; location / { proxy_pass $PXUP; proxy_http_version 1.1; proxy_set_header Connection ""; $STREAMLOC $TLSPXLOC } } }
NGX
cat > "$W/m.toml" <<TOML
[node]
id = 1
region = "us-east"
data_dir = "$W/mdata"
[listen]
api = "127.0.0.1:19004"
admin = "127.0.0.1:19005"
raft = "127.0.0.1:19006"
[cluster]
members = ["1@127.0.0.1:19006"]
[admin]
token_env = "ADMIN_TOKEN"
[proxy]
workers = 1
[[keys]]
name = "bench"
key_env = "CLIENT_KEY"
[[upstreams]]
id = "fast"
base_url = "$UPURL/v1"
region = "us-east"
api_key_env = "UP_KEY"
$TLSM
[[routes]]
model = "m"
tiers = [[{ upstream = "fast", model = "m" }]]
TOML
cp "$W/m.toml" "$W/m-b.toml"
if [ "$ROUTES_B" -gt 1 ]; then
  # Upstreams u1.. on the same nginx (every one a real address), routes
  # r1.. with a default tier of two and a fallback of one, each a
  # different mix; the measured route "m" sits in the middle of the file.
  ups=$(( ROUTES_B / 10 > 2 ? ROUTES_B / 10 : 2 ))
  {
    for u in $(seq 1 "$ups"); do
      printf '[[upstreams]]\nid = "u%d"\nbase_url = "http://127.0.0.1:19001/v1"\nregion = "%s"\napi_key_env = "UP_KEY"\n' "$u" "$([ $((u % 2)) = 0 ] && echo us-east || echo eu-west)"
    done
    for r in $(seq 1 $((ROUTES_B - 1))); do
      a=$(( r % ups + 1 )) b=$(( (r + 1 + (r * 7) % (ups - 1)) % ups + 1 )) c=$(( (r * 13) % ups + 1 ))
      printf '[[routes]]\nmodel = "r%d"\ntiers = [[{ upstream = "u%d", model = "m" }, { upstream = "u%d", model = "m" }], [{ upstream = "u%d", model = "m" }]]\n' "$r" "$a" "$b" "$c"
      [ "$r" = $((ROUTES_B / 2)) ] && sed -n '/^\[\[routes\]\]/,$p' "$W/m.toml"
    done
  } > "$W/big.toml"
  sed '/^\[\[upstreams\]\]/,$d' "$W/m.toml" > "$W/m-b.toml"
  sed -n '/^\[\[upstreams\]\]/,/^\[\[routes\]\]/p' "$W/m.toml" | sed '$d' >> "$W/m-b.toml"
  cat "$W/big.toml" >> "$W/m-b.toml"
fi
export ADMIN_TOKEN=admintok-admintok-admintok CLIENT_KEY=sk-bench-0123456789abcdef UP_KEY=upkey-0123456789abcdef RUST_LOG=${RUST_LOG:-warn}
cat > "$W/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"model":"m",STREAMFIELD"messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Say hello in one word."}]}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk-bench-0123456789abcdef"
LUA
sed -i "s/STREAMFIELD/$STREAMFIELD/" "$W/post.lua"
REQ='{"model":"m",'"$STREAMFIELD"'"messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Say hello in one word."}]}'
# A server an earlier run left behind would share these ports (reuseport)
# and skew every figure after it: refuse to start instead.
busy=$(ss -Hltn 'sport >= :19001 and sport <= :19011' | awk '{print $4}' | tr '\n' ' ')
if [ -n "$busy" ]; then
  echo "dev-bench.sh: something already listens on $busy(a server left by an earlier run?)" >&2
  exit 69
fi
if [ "$STREAM" = 1 ]; then
  taskset -c "$UP" "$MOCK" --listen 127.0.0.1:19001 --threads 1 > "$W/mock.log" 2>&1 &
  MOCKP=$!
else
  taskset -c "$UP" "$NGINX" -c "$W/up.conf" -p "$W" || echo "upstream nginx failed"
fi
taskset -c "$PX" "$NGINX" -c "$W/px.conf" -p "$W" || echo "proxy nginx failed"
sleep 0.5
start_meridian() { # binary [config]
  rm -rf "$W/mdata"
  taskset -c "$PX" "$1" serve --config "${2:-$W/m.toml}" > "$W/m.log" 2>&1 &
  MP=$!
  for _ in $(seq 200); do curl -s -o /dev/null http://127.0.0.1:19005/healthz && break; sleep 0.1; done
  curl -s -H "authorization: Bearer sk-bench-0123456789abcdef" -H 'content-type: application/json' -d "$REQ" http://127.0.0.1:19004/v1/chat/completions | head -c 120; echo
}
stop_meridian() { grep VmRSS /proc/$MP/status; kill $MP; wait $MP 2>/dev/null; }
sat() { # name url pid-to-perf-stat
  taskset -c "$LG" "$WRK" -t"$WT" -c"$WC" -d2s -s "$W/post.lua" "$2" >/dev/null 2>&1
  if [ "$PERF" = 1 ] && [ -n "${3:-}" ]; then
    perf stat -e task-clock,context-switches,cpu-migrations,page-faults -p "$3" -o "$W/stat-$1.txt" -- sleep "$DUR" &
    SP=$!
    T0=$(awk '{print $14, $15}' "/proc/$3/stat")
  fi
  r=$(taskset -c "$LG" "$WRK" -t"$WT" -c"$WC" -d"${DUR}"s --latency -s "$W/post.lua" "$2" 2>&1)
  [ -n "${SP:-}" ] && { wait $SP; SP=; T1=$(awk '{print $14, $15}' "/proc/$3/stat"); }
  n=$(echo "$r" | awk '/requests in/ {print $1}')
  echo "SAT $1 $(echo "$r" | awk '/Requests\/sec/ {print $2}') n=$n p50=$(echo "$r" | awk '$1=="50%" {print $2}') p99=$(echo "$r" | awk '$1=="99%" {print $2}') errs=$(echo "$r" | grep -E 'Non-2xx|errors' | tr '\n' ' ')"
  if [ -f "$W/stat-$1.txt" ]; then
    awk -v n="$n" -v d="$DUR" '/task-clock/ {gsub(",","",$1); printf "  PERF cpu %.1f us per request (%.0f%% of a core)\n", $1*1000/n, $1/10/d}
      /context-switches|cpu-migrations|page-faults/ {gsub(",","",$1); printf "  PERF %s %.3f per request\n", $2, $1/n}' "$W/stat-$1.txt"
    # The user/kernel split over the same run, from the process's own
    # accounting (clock ticks of all its threads).
    echo "$T0 $T1" | awk -v n="$n" -v hz="$(getconf CLK_TCK)" \
      '{printf "  PERF user %.1f us, kernel %.1f us per request\n", ($3-$1)/hz*1e6/n, ($4-$2)/hz*1e6/n}'
    rm -f "$W/stat-$1.txt"
  fi
}
NPX=$(pgrep -P "$(cat "$W/px.pid")" | head -1)  # the worker, not the master
for round in $(seq "$ROUNDS"); do
  echo "== round $round, load average $(cut -d' ' -f1-3 /proc/loadavg)"
  sat direct "$UPURL/v1/chat/completions"
  sat nginx http://127.0.0.1:19002/v1/chat/completions "$NPX"
  start_meridian "$MERIDIAN"
  sat meridian http://127.0.0.1:19004/v1/chat/completions "$MP"
  stop_meridian
  if [ -n "$MERIDIAN_B" ]; then
    RUST_LOG=$RUST_LOG_B start_meridian "$MERIDIAN_B" "$W/m-b.toml"
    sat meridian-b http://127.0.0.1:19004/v1/chat/completions "$MP"
    stop_meridian
  fi
  if [ -n "$FLOOR" ]; then
    taskset -c "$PX" "$FLOOR" --listen 127.0.0.1:19007 --upstream 127.0.0.1:19001 > "$W/floor.log" 2>&1 &
    FP=$!
    for _ in $(seq 50); do ss -Hltn 'sport = :19007' | grep -q . && break; sleep 0.1; done
    sat floor http://127.0.0.1:19007/v1/chat/completions "$FP"
    grep VmRSS /proc/$FP/status; kill $FP; wait $FP 2>/dev/null
  fi
done
kill "$(cat "$W/px.pid")" 2>/dev/null
if [ "$STREAM" = 1 ]; then kill "$MOCKP"; else kill "$(cat "$W/up.pid")" 2>/dev/null; fi
echo END
