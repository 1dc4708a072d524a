#!/usr/bin/env bash
# Device benchmark, Meridian's copy of ../shared/bench/proxy-bench.sh (assembled into
# .bench/run.sh by device-bundle.sh): meridian vs nginx vs haproxy proxy_pass,
# same upstream, same cores; cores 0-3 upstream (nginx canned), 4-7 proxy
# under test, 8-15 load generators. Changes from the shared script: keys of
# 16+ characters, xz-compressed binaries, an earlier build (meridian-base)
# beside this one, and meridian-bench pinned the same way at the end.
set -u; ulimit -n 65536 2>/dev/null || ulimit -n 20000
UP=${UP:-0-3} PX=${PX:-4-7} LG=${LG:-8-15} DUR=${DUR:-8} OLD=${OLD:-10}
B=$(cd "$(dirname "$0")" && pwd)
export LD_LIBRARY_PATH=$B/lib
# (Meridian's bundle: binaries travel xz-compressed to fit the 64 MiB limit)
for f in $B/bin/*.xz; do [ -e "${f%.xz}" ] || python3 -c "import lzma,sys; open(sys.argv[2],'wb').write(lzma.open(sys.argv[1]).read())" "$f" "${f%.xz}"; chmod +x "${f%.xz}"; done
W=/tmp/db; rm -rf $W; mkdir -p $W
OUTD=${OUT:-/tmp/out}; mkdir -p $OUTD
exec > >(tee $OUTD/log.txt) 2>&1
nproc; uname -r; free -g | head -2
body='{"id":"chatcmpl-x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hello"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}'
cat > $W/up.conf <<NGX
worker_processes 4; worker_cpu_affinity 0001 0010 0100 1000;
pid $W/up.pid; error_log $W/up.err; events { worker_connections 16384; }
http { access_log off; client_body_temp_path $W/t1; proxy_temp_path $W/t2; fastcgi_temp_path $W/t3; uwsgi_temp_path $W/t4; scgi_temp_path $W/t5; keepalive_requests 1000000;
  server { listen 127.0.0.1:19001 reuseport backlog=4096; location / { default_type application/json; return 200 '$body'; } } }
NGX
cat > $W/px.conf <<NGX
worker_processes 4; worker_cpu_affinity 00010000 00100000 01000000 10000000;
pid $W/px.pid; error_log $W/px.err; events { worker_connections 16384; }
http { access_log off; client_body_temp_path $W/t1; proxy_temp_path $W/t2; fastcgi_temp_path $W/t3; uwsgi_temp_path $W/t4; scgi_temp_path $W/t5; keepalive_requests 1000000;
  upstream up { server 127.0.0.1:19001; keepalive 256; }
  server { listen 127.0.0.1:19002 reuseport backlog=4096; location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
NGX
cat > $W/ha.cfg <<HA
global
  nbthread 4
  cpu-map auto:1/1-4 4-7
  maxconn 9000
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend f
  bind 127.0.0.1:19003
  default_backend b
backend b
  server s1 127.0.0.1:19001 maxconn 4096
HA
cat > $W/m.toml <<TOML
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
workers = WORKERS
[[keys]]
name = "bench"
key_env = "CLIENT_KEY"
[[upstreams]]
id = "fast"
base_url = "http://127.0.0.1:19001/v1"
region = "us-east"
api_key_env = "UP_KEY"
[[routes]]
model = "m"
tiers = [[{ upstream = "fast", model = "m" }]]
TOML
export ADMIN_TOKEN=admintok-admintok-admintok CLIENT_KEY=sk-bench-0123456789abcdef UP_KEY=upkey-0123456789abcdef RUST_LOG=warn
cat > $W/post.lua <<'LUA'
wrk.method = "POST"
wrk.body = '{"model":"m","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Say hello in one word."}]}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk-bench-0123456789abcdef"
LUA
REQ='{"model":"m","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Say hello in one word."}]}'
taskset -c $UP $B/bin/nginx -c $W/up.conf -p $W || echo "upstream nginx failed"
sleep 0.5
start_meridian() { # workers cores [binary]
  sed "s/WORKERS/$1/" $W/m.toml > $W/m$1.toml
  rm -rf $W/mdata
  taskset -c $2 $B/bin/${3:-meridian} serve --config $W/m$1.toml > $W/m$1.log 2>&1 &
  MP=$!
  for i in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:19005/healthz && break; sleep 0.1; done
  curl -s -H "authorization: Bearer sk-bench-0123456789abcdef" -H 'content-type: application/json' -d "$REQ" http://127.0.0.1:19004/v1/chat/completions | head -c 200; echo
}
stop_meridian() { grep VmRSS /proc/$MP/status; kill $MP; wait $MP 2>/dev/null; }
sat() { # name url
  taskset -c $LG $B/bin/wrk -t8 -c256 -d2s -s $W/post.lua $2 >/dev/null 2>&1
  r=$(taskset -c $LG $B/bin/wrk -t8 -c256 -d${DUR}s --latency -s $W/post.lua $2 2>&1)
  echo "SAT $1 $(echo "$r" | awk '/Requests\/sec/ {print $2}') p50=$(echo "$r" | awk '$1=="50%" {print $2}') p99=$(echo "$r" | awk '$1=="99%" {print $2}') errs=$(echo "$r" | grep -E 'Non-2xx|errors' | tr '\n' ' ')"
}
ol() { # name url rate
  taskset -c $LG $B/bin/oha -z ${OLD}s -q $3 -c 512 --latency-correction --no-tui --output-format json -m POST -H "Authorization: Bearer sk-bench-0123456789abcdef" -H "Content-Type: application/json" -d "$REQ" $2 > $W/ol-$1.json 2>$W/ol-$1.err
  python3 - $1 $3 $W/ol-$1.json <<'PY'
import json,sys
d=json.load(open(sys.argv[3])); s=d.get("summary",{}); p=d.get("latencyPercentiles",{})
sc=d.get("statusCodeDistribution",{}); er=d.get("errorDistribution",{})
f=lambda k: (p.get(k) or 0)*1e6
print(f"OL {sys.argv[1]} rate={sys.argv[2]} rps={s.get('requestsPerSec',0):.0f} p50={f('p50'):.0f}us p99={f('p99'):.0f}us p99.9={f('p99.9'):.0f}us codes={sc} errors={er}")
PY
}
taskset -c $PX $B/bin/haproxy -f $W/ha.cfg -D -p $W/ha.pid || echo "haproxy failed"
taskset -c $PX $B/bin/nginx -c $W/px.conf -p $W || echo "proxy nginx failed"
sleep 0.5
echo "== saturation, proxies on 4 cores (4-7), wrk -t8 -c256, 8 s"
for round in 1 2; do
  sat direct http://127.0.0.1:19001/v1/chat/completions
  sat nginx http://127.0.0.1:19002/v1/chat/completions
  sat haproxy http://127.0.0.1:19003/v1/chat/completions
  start_meridian 4 $PX
  sat meridian http://127.0.0.1:19004/v1/chat/completions
  [ $round = 2 ] && { echo "== open loop at fixed rates (oha, latency-corrected)"; 
    for rate in 20000 40000 60000; do ol meridian-$rate http://127.0.0.1:19004/v1/chat/completions $rate; done; }
  stop_meridian
  # the previous build (main before this session), same cores
  [ -x $B/bin/meridian-base ] && { start_meridian 4 $PX meridian-base; sat meridian-base http://127.0.0.1:19004/v1/chat/completions; stop_meridian; }
done
for rate in 20000 40000 60000; do ol nginx-$rate http://127.0.0.1:19002/v1/chat/completions $rate; ol haproxy-$rate http://127.0.0.1:19003/v1/chat/completions $rate; done
ol direct-40000 http://127.0.0.1:19001/v1/chat/completions 40000
echo "== one core each (proxy on core 4)"
kill $(cat $W/px.pid); sleep 0.3
sed -e 's/worker_processes 4; worker_cpu_affinity 00010000 00100000 01000000 10000000;/worker_processes 1;/' $W/px.conf > $W/px1.conf
taskset -c 4 $B/bin/nginx -c $W/px1.conf -p $W; sleep 0.3
sat nginx-1core http://127.0.0.1:19002/v1/chat/completions
start_meridian 1 4
sat meridian-1core http://127.0.0.1:19004/v1/chat/completions
ol meridian-1core-10000 http://127.0.0.1:19004/v1/chat/completions 10000
stop_meridian
# the floor: a proxy on Meridian's runtime doing nothing per request (benches/src/floor)
if [ -x $B/bin/meridian-floor ]; then
  taskset -c 4 $B/bin/meridian-floor --listen 127.0.0.1:19007 --upstream 127.0.0.1:19001 > $W/floor.log 2>&1 &
  FP=$!; sleep 0.3
  sat floor-1core http://127.0.0.1:19007/v1/chat/completions
  kill $FP; wait $FP 2>/dev/null
fi
ol nginx-1core-10000 http://127.0.0.1:19002/v1/chat/completions 10000
kill $(cat $W/px.pid) $(cat $W/up.pid) $(cat $W/ha.pid) 2>/dev/null
cp $W/*.log $OUTD/ 2>/dev/null
echo "== meridian-bench, pinned like the above (upstream $UP, proxy $PX, load $LG)"
(cd /tmp && timeout 260 $B/bin/meridian-bench --mock-bin $B/bin/meridian-mock --meridian-bin $B/bin/meridian --baseline-bin $B/bin/meridian-base --nginx-bin $B/bin/nginx \
  --cores "$UP:$PX:$LG" --client-threads 4 --rounds 2 --duration 4 --high-load --out $OUTD/e2e.json > $OUTD/e2e.md 2> $OUTD/e2e.err; echo "meridian-bench rc=$?")
cat $OUTD/e2e.md; tail -3 $OUTD/e2e.err
echo END
