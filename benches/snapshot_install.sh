#!/usr/bin/env bash
# What sending and installing a snapshot cost in memory: three nodes loaded with N transfers
# (default 10,000,000, the TigerBeetle preset's shape); a follower is stopped, the others take
# 300,000 more, the leader snapshots and purges its log past the follower; the follower is
# started again: it restores its own state, then installs the leader's snapshot over it.
# Prints each side's resident memory just before and its peak during the catch-up (sampled
# every 20 ms), and the follower's own `tally_snapshot_rss_growth_bytes{phase="install"}`.
# Figures: docs/performance.md.
#
#   cargo build --release && benches/snapshot_install.sh [EVENTS]
#
# TALLY_BIN overrides the binary; KEEP=1 keeps the work directory. Uses ports 7421-7429 and
# needs curl. Needs memory for three states (~130 bytes per transfer each).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${TALLY_BIN:-$repo/target/release/tally}
events=${1:-10000000}
w=$(mktemp -d /tmp/snapshot-install.XXXX)
# shellcheck source=benches/nodes.sh
source "$repo/benches/nodes.sh"
nodes_setup 1,2,3 0x7
for n in 1 2 3; do
    node_config 7420 $n 1,2,3 "snapshot_every_entries = 100000000
logs_kept_after_snapshot = 10"
done
port() { node_port 7420 "$1" "$2"; } # node, 1 client / 2 peer / 3 admin
declare -A pid
start() { "$bin" node --config "$w/node-$1.toml" >>"$w/node-$1.log" 2>&1 & pid[$1]=$!; }
stop() { kill -TERM "${pid[$1]}"; wait "${pid[$1]}" || true; unset "pid[$1]"; }
cleanup() {
    for n in "${!pid[@]}"; do kill -TERM "${pid[$n]}" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [[ ${KEEP:-0} == 1 ]]; then echo "kept $w"; else rm -rf "$w"; fi
}
trap cleanup EXIT
metrics() { curl -s "http://127.0.0.1:$(port "$1" 3)/metrics"; }
metric() { metrics "$1" | awk -v name="$2" '$1 == name { print $2 }'; }
rss() { awk '/VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/${pid[$1]}/status"; }
for n in 1 2 3; do start $n; done
for n in 1 2 3; do node_wait_ready "$(port $n 3)" "$w/node-$n.log"; done
cluster="127.0.0.1:$(port 1 1),127.0.0.1:$(port 2 1),127.0.0.1:$(port 3 1)"
echo "loading $events transfers"
"$bin" loadgen --cluster "$cluster" --preset tigerbeetle --events "$events" 2>&1 | grep -E "^transfers " | head -1
leader=$(metric 1 tally_raft_leader_id)
follower=$(( leader % 3 + 1 ))
behind=$(metric "$follower" tally_raft_applied_index)
echo "leader node $leader; stopping follower node $follower at index $behind (rss $(rss "$follower") MiB)"
stop "$follower"
"$bin" loadgen --cluster "$cluster" --preset tigerbeetle --events 300000 --seed 2 2>&1 | grep -E "^transfers " | head -1
"$bin" admin --node "127.0.0.1:$(port "$leader" 1)" snapshot >/dev/null
until [[ $(metric "$leader" 'tally_snapshots_total{origin="built"}') == 1 ]]; do sleep 0.5; done
until (( $(metric "$leader" tally_raft_purged_index) > behind )); do sleep 0.5; done
leader_before=$(rss "$leader")
term_before=$(metric "$leader" tally_raft_term)
echo "leader rss before the catch-up $leader_before MiB; starting node $follower"
start "$follower"
peak_leader=0 peak_follower=0 ready_rss=""
t0=$(date +%s.%N)
while [[ $(metric "$follower" 'tally_snapshots_total{origin="installed"}' 2>/dev/null) != 1 ]]; do
    if (( $(echo "$(date +%s.%N) - $t0 > 300" | bc) )); then
        echo "node $follower did not catch up by snapshot in 300 s; its log:"
        grep -v "requesting vote" "$w/node-$follower.log" | tail -8 | cut -c1-240
        exit 1
    fi
    l=$(rss "$leader") f=$(rss "$follower")
    (( l > peak_leader )) && peak_leader=$l
    (( f > peak_follower )) && peak_follower=$f
    # The follower's own state is restored once its admin port answers.
    [[ -z $ready_rss ]] && metrics "$follower" >/dev/null 2>&1 && ready_rss=$f
    sleep 0.02
done
t1=$(date +%s.%N)
echo "caught up by snapshot $(echo "$t1 - $t0" | bc) s after the start; elections meanwhile: $(( $(metric "$leader" tally_raft_term) - term_before )) (the term's rise)"
echo "follower: rss with its own state restored ${ready_rss:-?} MiB, peak $peak_follower MiB, now $(rss "$follower") MiB"
echo "leader:   rss before $leader_before MiB, peak while sending $peak_leader MiB"
metrics "$follower" | grep -E '^tally_snapshot_rss_growth_bytes\{phase="install"\}'
grep -E "snapshot installed|state restored" "$w/node-$follower.log" | sed -E 's/ snapshot=\{[^}]*\}[^ ]*//' | cut -c1-160
