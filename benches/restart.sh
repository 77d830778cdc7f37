#!/usr/bin/env bash
# Restart time of one node holding N transfers (default 10,000,000, the TigerBeetle preset's
# shape): start a node, load it, SIGTERM, start, time until /ready answers 200 (no snapshot);
# then `tally admin snapshot` (printing its apply pause and resident-memory growth), SIGTERM,
# start, time again. Figures and their reading: docs/performance.md.
#
#   cargo build --release && benches/restart.sh [EVENTS]
#
# TALLY_BIN overrides the binary; KEEP=1 keeps the work directory; ROUNDS=N restarts N times
# each way (default 2); VS=OTHER_BINARY alternates every restart between the two binaries on
# the same data (the honest before/after comparison on a noisy host). Uses ports 7401-7403
# and needs curl and bc.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${TALLY_BIN:-$repo/target/release/tally}
events=${1:-10000000}
w=$(mktemp -d /tmp/restart.XXXX)
"$bin" certs --dir "$w/pki" --nodes 1 --hosts localhost,127.0.0.1 >/dev/null
secret=$(od -An -tx1 -N24 /dev/urandom | tr -d ' \n')
hash=$(printf '%s\n' "$secret" | "$bin" hash-credential)
cat > "$w/node.toml" <<TOML
id = 1
listen = "127.0.0.1:7401"
peer_listen = "127.0.0.1:7402"
admin_listen = "127.0.0.1:7403"
data_dir = "$w/data"
[tls]
ca = "$w/pki/ca.pem"
cert = "$w/pki/node-1.pem"
key = "$w/pki/node-1.key"
[bootstrap]
1 = { client = "127.0.0.1:7401", peer = "127.0.0.1:7402" }
[raft]
snapshot_every_entries = 100000000
[gateway]
cluster_id = "0x5"
[[gateway.credentials]]
name = "op"
hash = "$hash"
role = "operator"
TOML
export TALLY_CA=$w/pki/ca.pem TALLY_CREDENTIAL=$secret TALLY_CLUSTER_ID=0x5
rounds=${ROUNDS:-2}
start() {
    local t0 t1 b=${1:-$bin}
    t0=$(date +%s.%N)
    "$b" node --config "$w/node.toml" >>"$w/node.log" 2>&1 &
    pid=$!
    until [[ $(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:7403/ready) == 200 ]]; do sleep 0.02; done
    t1=$(date +%s.%N)
    echo "ready after $(echo "$t1 - $t0" | bc) s (rss $(grep VmRSS /proc/$pid/status | awk '{print $2/1024}') MiB) [$b]"
}
stop() { kill -TERM $pid; wait $pid || true; }
restarts() {
    for ((round = 0; round < rounds; round++)); do
        start; stop
        if [[ -n ${VS:-} ]]; then start "$VS"; stop; fi
    done
}
start
"$bin" loadgen --cluster 127.0.0.1:7401 --preset tigerbeetle --events "$events" 2>&1 | grep -E "events/s|transfers" | head -3
stop
echo "restarts without a snapshot:"; restarts
start
"$bin" admin --node 127.0.0.1:7401 snapshot
sleep 1
until grep -q "snapshot built" "$w/node.log"; do sleep 0.5; done
ls -la "$w/data/snapshots"
curl -s http://127.0.0.1:7403/metrics | grep -E "^tally_snapshot_(rss_growth_bytes|apply_pause_seconds_(sum|count)|size_bytes)"
echo "rss now $(grep VmRSS /proc/$pid/status | awk '{print $2/1024}') MiB, peak $(grep VmHWM /proc/$pid/status | awk '{print $2/1024}') MiB"
stop
echo "restarts with a snapshot:"; restarts
du -sh "$w/data/wal" "$w/data/snapshots"
grep -E "committed log applied|state restored|snapshot not restored" "$w/node.log" |
    sed -E 's/ snapshot=\{[^}]*\}[^ ]*//; s/membership:.*seconds=/seconds=/' | cut -c1-220
if [[ ${KEEP:-0} == 1 ]]; then echo "kept $w"; else rm -rf "$w"; fi
