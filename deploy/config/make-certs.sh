#!/usr/bin/env bash
# Makes the cluster CA and one certificate per node for the 3-region example
# (us-east.toml, eu-west.toml, ap-south.toml), with `meridian certs`. Run it on
# the operator's machine, not on a node: ca.key signs who may join the cluster
# and never leaves that machine. No private key is committed to the repository.
#
#   deploy/config/make-certs.sh [--dir DIR] [NAME=SAN[,SAN...] ...]
#
# Default DIR: deploy/config/certs (ignored by git). Default nodes: the
# example's three, each named by the address its peers dial (the IP in
# cluster.members) and its DNS name:
#   n1=192.0.2.11,n1.us-east.meridian.example
#   n2=198.51.100.12,n2.eu-west.meridian.example
#   n3=203.0.113.13,n3.ap-south.meridian.example
#
# NAME must be nID (n4 is node 4): the certificate names node ID, and peers
# refuse a node presenting a certificate of another id.
#
# An existing ca.pem/ca.key in DIR is reused, so the same command adds a node
# later (`make-certs.sh n4=192.0.2.44`) or reissues one (rotation: the node's
# files are replaced). Then copy to each node, as root:
#   install -d -m 0750 -o root -g meridian /etc/meridian/certs
#   install -m 0644 -o root -g meridian ca.pem nN.pem /etc/meridian/certs/
#   install -m 0640 -o root -g meridian nN.key        /etc/meridian/certs/
#
# MERIDIAN_BIN names the binary (default: `meridian` on PATH, else
# target/release/meridian of this repository).
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
dir="$repo/deploy/config/certs"
nodes=()
while [ $# -gt 0 ]; do
  case $1 in
    --dir)
      [ $# -ge 2 ] || { echo "--dir needs a directory" >&2; exit 64; }
      dir=$2
      shift 2
      ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
      exit 0
      ;;
    *=*)
      nodes+=("$1")
      shift
      ;;
    *)
      echo "expected NAME=SAN[,SAN...], got '$1'" >&2
      exit 64
      ;;
  esac
done
if [ "${#nodes[@]}" -eq 0 ]; then
  nodes=(
    "n1=192.0.2.11,n1.us-east.meridian.example"
    "n2=198.51.100.12,n2.eu-west.meridian.example"
    "n3=203.0.113.13,n3.ap-south.meridian.example"
  )
fi

if [ -n "${MERIDIAN_BIN:-}" ]; then
  bin=$MERIDIAN_BIN
elif command -v meridian >/dev/null; then
  bin=$(command -v meridian)
else
  bin="$repo/target/release/meridian"
  [ -x "$bin" ] || { echo "no meridian binary: build it (cargo build --release -p meridian) or set MERIDIAN_BIN" >&2; exit 1; }
fi

reused=no
[ -f "$dir/ca.pem" ] && [ -f "$dir/ca.key" ] && reused=yes
umask 077
for node in "${nodes[@]}"; do
  name=${node%%=*}
  IFS=, read -r -a sans <<<"${node#*=}"
  args=()
  for san in "${sans[@]}"; do args+=(--san "$san"); done
  # One call per node: `meridian certs` gives every node of a call the same
  # SANs, and each node must be named by its own address.
  "$bin" certs --dir "$dir" "$name" "${args[@]}" | sed 's/^/  /'
  echo "  ($name: ${sans[*]})"
done
chmod 0644 "$dir"/*.pem
echo "CA: $dir/ca.pem ($( [ "$reused" = yes ] && echo "reused" || echo "new"); keep $dir/ca.key on this machine, off the nodes)"
