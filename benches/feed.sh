#!/usr/bin/env bash
# Feed and export throughput of one node holding N transfers (default 3,000,000, the
# TigerBeetle preset's shape), on loopback over TLS: `tally client follow --until-caught-up`
# (every event as a JSON line, written to /dev/null) and `tally client export events` (CSV to
# a file), timed whole (connecting and the client's JSON/CSV formatting included). Figures
# and their reading: docs/performance.md ("The change feed").
#
#   cargo build --release && benches/feed.sh [EVENTS]
#
# TALLY_BIN overrides the binary; KEEP=1 keeps the work directory. Uses ports 7501-7503.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${TALLY_BIN:-$repo/target/release/tally}
events=${1:-3000000}
w=$(mktemp -d /tmp/feed.XXXX)
# shellcheck source=benches/nodes.sh
source "$repo/benches/nodes.sh"
nodes_setup 1 0x6
node_config 7500 1 1 ""
"$bin" node --config "$w/node-1.toml" >>"$w/node-1.log" 2>&1 &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; [[ -n ${KEEP:-} ]] || rm -rf "$w"' EXIT
node_wait_ready 7503 "$w/node-1.log"
"$bin" loadgen --cluster 127.0.0.1:7501 --preset tigerbeetle --events "$events" 2>&1 | grep -E "^transfers" | head -1
export TALLY_CLUSTER=127.0.0.1:7501
for round in 1 2; do
    t0=$(date +%s.%N)
    lines=$("$bin" client follow --from 0 --until-caught-up | wc -l)
    t1=$(date +%s.%N)
    echo "follow, round $round: $lines events in $(echo "$t1 - $t0" | bc) s: $(echo "$lines / ($t1 - $t0)" | bc) events/s"
done
last=$("$bin" client --output csv query transfers --newest-first --max 1 | tail -1 | awk -F, '{print $NF}')
t0=$(date +%s.%N)
"$bin" client export events --from 1 --to "$last" --out "$w/events.csv" 2>/dev/null
t1=$(date +%s.%N)
echo "export events (CSV): $(($(wc -l < "$w/events.csv") - 1)) events in $(echo "$t1 - $t0" | bc) s"
