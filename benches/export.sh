#!/usr/bin/env bash
# What Parquet costs beside CSV: `tally client export events` of one node holding N transfers
# (default 1,000,000, the TigerBeetle preset's shape), on loopback over TLS, alternating the two
# formats ROUNDS times (default 3) against the same node; each command timed whole (connecting,
# formatting, the fsync and the manifest included), with the file's size and bytes per event.
# Figures and their reading: docs/performance.md ("Exports as Parquet").
#
#   cargo build --release --bin tally && benches/export.sh [EVENTS] [ROUNDS]
#
# TALLY_BIN overrides the binary; KEEP=1 keeps the work directory. Uses ports 7511-7513.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${TALLY_BIN:-$repo/target/release/tally}
events=${1:-1000000}
rounds=${2:-3}
w=$(mktemp -d /tmp/export.XXXX)
# shellcheck source=benches/nodes.sh
source "$repo/benches/nodes.sh"
nodes_setup 1 0x7
node_config 7510 1 1 ""
"$bin" node --config "$w/node-1.toml" >>"$w/node-1.log" 2>&1 &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; [[ -n ${KEEP:-} ]] || rm -rf "$w"' EXIT
node_wait_ready 7513 "$w/node-1.log"
"$bin" loadgen --cluster 127.0.0.1:7511 --preset tigerbeetle --events "$events" 2>&1 | grep -E "^transfers" | head -1
export TALLY_CLUSTER=127.0.0.1:7511
last=$("$bin" client --output csv query transfers --newest-first --max 1 | tail -1 | awk -F, '{print $NF}')
for round in $(seq "$rounds"); do
    for format in csv parquet; do
        out=$w/events.$format
        rm -f "$out" "$out.manifest.json"
        t0=$(date +%s.%N)
        "$bin" client export events --from 1 --to "$last" --format "$format" --out "$out" 2>/dev/null
        t1=$(date +%s.%N)
        n=$(grep -m1 -o '"transfers": [0-9]*' "$out.manifest.json" | grep -o '[0-9]*$')
        bytes=$(stat -c %s "$out")
        echo "round $round, $format: $n events in $(echo "$t1 - $t0" | bc) s" \
            "($(echo "$n / ($t1 - $t0)" | bc) events/s), $bytes bytes ($(echo "scale=1; $bytes / $n" | bc) bytes/event)"
    done
done
