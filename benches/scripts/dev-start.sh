# Sourced by dev-split.sh, dev-syscalls.sh and dev-profile.sh: writes
# dev-bench.sh's files (configs, lua) into $W by running it for zero
# rounds, then starts upstream nginx on core 0, nginx proxy_pass on core 1
# (unless START_PROXY=0) and Meridian ($MERIDIAN, one worker) on core 1,
# and waits until Meridian answers. Leaves Meridian's pid in MP; defines
# saturate_each and stop_all.
ROUNDS=0 W=$W bash "$HERE/dev-bench.sh" >/dev/null 2>"$W.err" || { cat "$W.err" >&2; exit 69; }
# Its servers are told to stop as it ends: wait until their ports are free.
for _ in $(seq 50); do
  [ -z "$(ss -Hltn 'sport >= :19001 and sport <= :19011')" ] && break
  sleep 0.1
done
export ADMIN_TOKEN=admintok-admintok-admintok CLIENT_KEY=sk-bench-0123456789abcdef UP_KEY=upkey-0123456789abcdef RUST_LOG=${RUST_LOG:-warn}
taskset -c 0 /usr/sbin/nginx -c "$W/up.conf" -p "$W"
[ "${START_PROXY:-1}" = 0 ] || taskset -c 1 /usr/sbin/nginx -c "$W/px.conf" -p "$W"
rm -rf "$W/mdata"
taskset -c 1 "$MERIDIAN" serve --config "$W/m.toml" > "$W/m.log" 2>&1 &
MP=$!
for _ in $(seq 200); do curl -s -o /dev/null http://127.0.0.1:19005/healthz && break; sleep 0.1; done

# For nginx's worker, then Meridian: saturates it with wrk (core 0) for
# SECS + 3 s, calls `measure WHO PID` 1.5 s in (it must take SECS seconds),
# then `report WHO RPS` with what wrk counted. Both are the caller's
# functions.
saturate_each() {
  local who pid port wp rps
  for who in nginx meridian; do
    case $who in
      nginx) pid=$(pgrep -P "$(cat "$W/px.pid")" | head -1); port=19002 ;;
      meridian) pid=$MP; port=19004 ;;
    esac
    taskset -c 0 /usr/bin/wrk -t2 -c64 -d$((SECS + 3))s -s "$W/post.lua" http://127.0.0.1:$port/v1/chat/completions > "$W/wrk-$who.txt" 2>&1 &
    wp=$!
    sleep 1.5
    measure "$who" "$pid"
    wait $wp
    rps=$(awk '/Requests\/sec/ {print $2}' "$W/wrk-$who.txt")
    report "$who" "$rps"
  done
}

# Stops Meridian and both nginx.
stop_all() {
  kill "$MP"; wait "$MP" 2>/dev/null
  kill "$(cat "$W/px.pid")" "$(cat "$W/up.pid")" 2>/dev/null
}
