# Sourced by dev-split.sh, dev-syscalls.sh and dev-profile.sh: writes
# dev-bench.sh's files (configs, lua) into $W by running it for zero
# rounds, then starts upstream nginx on core 0, nginx proxy_pass on core 1
# (unless START_PROXY=0) and Meridian ($MERIDIAN, one worker) on core 1,
# and waits until Meridian answers. Leaves Meridian's pid in MP.
ROUNDS=0 W=$W bash "$HERE/dev-bench.sh" >/dev/null 2>&1
export ADMIN_TOKEN=admintok-admintok-admintok CLIENT_KEY=sk-bench-0123456789abcdef UP_KEY=upkey-0123456789abcdef RUST_LOG=${RUST_LOG:-warn}
taskset -c 0 /usr/sbin/nginx -c "$W/up.conf" -p "$W"
[ "${START_PROXY:-1}" = 0 ] || taskset -c 1 /usr/sbin/nginx -c "$W/px.conf" -p "$W"
rm -rf "$W/mdata"
taskset -c 1 "$MERIDIAN" serve --config "$W/m.toml" > "$W/m.log" 2>&1 &
MP=$!
for _ in $(seq 200); do curl -s -o /dev/null http://127.0.0.1:19005/healthz && break; sleep 0.1; done
