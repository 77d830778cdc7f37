#!/usr/bin/env bash
# Whether a snapshot's pause grows with the state: one node loaded with N transfers (default
# 100,000,000, ~13 GB; the TigerBeetle preset's shape), then a fixed rate of 16,667
# transfers/s in batches of 100 for SECONDS (default 120) while `tally admin snapshot` is
# forced every 30 s. Prints the load, the fixed-rate run's latencies, and from the node's
# metrics the snapshots built, the largest apply pause (histogram bucket) and the bytes the
# builds wrote and kept. Run it for 10M and 100M and compare. Figures: docs/performance.md.
#
#   cargo build --release && benches/snapshot_scale.sh [EVENTS] [SECONDS]
#
# TALLY_BIN overrides the binary; KEEP=1 keeps the work directory. Uses ports 7411-7413 and
# needs curl. Needs memory for the state (~130 bytes per transfer) and disk for the WAL and a
# snapshot (~250 bytes per transfer).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${TALLY_BIN:-$repo/target/release/tally}
events=${1:-100000000}
seconds=${2:-120}
w=$(mktemp -d /tmp/snapshot-scale.XXXX)
# shellcheck source=benches/nodes.sh
source "$repo/benches/nodes.sh"
nodes_setup 1 0x6
node_config 7410 1 1 "snapshot_every_entries = 100000000
snapshot_every_mib = 0"
"$bin" node --config "$w/node-1.toml" >>"$w/node-1.log" 2>&1 &
pid=$!
trap 'kill -TERM $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; [[ ${KEEP:-0} == 1 ]] && echo "kept $w" || rm -rf "$w"' EXIT
node_wait_ready 7413 "$w/node-1.log"
metrics() { curl -s http://127.0.0.1:7413/metrics; }
echo "loading $events transfers"
"$bin" loadgen --cluster 127.0.0.1:7411 --preset tigerbeetle --events "$events" 2>&1 |
    grep -E "^(transfers|total) " | head -1
echo "rss after loading $(grep VmRSS /proc/$pid/status | awk '{print $2/1024}') MiB"
# The first snapshot writes the whole state; the pauses measured are those of the forced
# snapshots during the fixed-rate run (the first included: its pause is the freeze alone).
(
    for ((at = 15; at < seconds; at += 30)); do
        sleep 15
        "$bin" admin --node 127.0.0.1:7411 snapshot >/dev/null
        sleep 15
    done
) &
forcer=$!
"$bin" loadgen --cluster 127.0.0.1:7411 --rate 16667 --batch-events 100 --seconds "$seconds" \
    --accounts 10000 2>&1 | grep -E "^(transfers|total) |slow" | head -3
wait $forcer || true
sleep 2
until [[ $(metrics | grep -c '^tally_snapshots_total{origin="built"} 0') == 0 ]]; do sleep 1; done
metrics | grep -E '^tally_snapshot_(apply_pause_seconds_(bucket|sum|count)|bytes_total|rss_growth_bytes|size_bytes)' |
    awk '/_bucket/ { if ($2 != last) print; last = $2; next } { print }'
grep -E "snapshot view taken|snapshot written" "$w/node-1.log" |
    sed -E 's/^([^ ]*) .*(snapshot view taken|snapshot written).* (events=[0-9]+ pause_us=[0-9]+|written_bytes=[0-9]+ kept_bytes=[0-9]+).*/\1 \2 \3/' 
echo "peak rss $(grep VmHWM /proc/$pid/status | awk '{print $2/1024}') MiB"
