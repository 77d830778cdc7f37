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
# shellcheck source=benches/nodes.sh
source "$repo/benches/nodes.sh"
nodes_setup 1 0x5
node_config 7400 1 1 "snapshot_every_entries = 100000000"
rounds=${ROUNDS:-2}
start() {
    local t0 t1 b=${1:-$bin}
    t0=$(date +%s.%N)
    "$b" node --config "$w/node-1.toml" >>"$w/node-1.log" 2>&1 &
    pid=$!
    node_wait_ready 7403 "$w/node-1.log"
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
until grep -q "snapshot built" "$w/node-1.log"; do sleep 0.5; done
ls -la "$w/data-1/snapshots"
curl -s http://127.0.0.1:7403/metrics | grep -E "^tally_snapshot_(rss_growth_bytes|apply_pause_seconds_(sum|count)|size_bytes)"
echo "rss now $(grep VmRSS /proc/$pid/status | awk '{print $2/1024}') MiB, peak $(grep VmHWM /proc/$pid/status | awk '{print $2/1024}') MiB"
stop
echo "restarts with a snapshot:"; restarts
du -sh "$w/data-1/wal" "$w/data-1/snapshots"
grep -E "committed log applied|state restored|snapshot not restored" "$w/node-1.log" |
    sed -E 's/ snapshot=\{[^}]*\}[^ ]*//; s/membership:.*seconds=/seconds=/' | cut -c1-220
if [[ ${KEEP:-0} == 1 ]]; then echo "kept $w"; else rm -rf "$w"; fi
