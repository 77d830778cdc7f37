#!/usr/bin/env bash
# `tally cdc`'s rate into RabbitMQ: one node holding N transfers (default 1,000,000, the
# TigerBeetle preset's shape), on loopback over TLS, and a fresh private broker (Debian's
# rabbitmq-server: `bash deploy/local/install-rabbitmq.sh`); `tally cdc --until-caught-up`
# into a new durable queue (persistent messages, publisher confirms, WINDOW unconfirmed at
# most) is timed whole, connecting included. Figures and their reading: docs/performance.md
# ("The change feed, exports and reconciliation").
#
#   cargo build --release && benches/cdc.sh [EVENTS] [WINDOW]
#
# TALLY_BIN overrides the binary; KEEP=1 keeps the work directory. Uses ports 7521-7523 (the
# node) and 7530-7532 (the broker: AMQP, Erlang distribution, its own epmd).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${TALLY_BIN:-$repo/target/release/tally}
events=${1:-1000000}
window=${2:-4096}
w=$(mktemp -d /tmp/cdc.XXXX)
# shellcheck source=benches/nodes.sh
source "$repo/benches/nodes.sh"

# Debian's /usr/sbin/rabbitmq-server is a wrapper that switches to the rabbitmq user; the
# broker's own script beside its target runs as us, with our environment.
server=$(command -v rabbitmq-server || echo /usr/sbin/rabbitmq-server)
[[ -x $server ]] || { echo "rabbitmq-server is not installed: bash deploy/local/install-rabbitmq.sh"; exit 1; }
real=$(readlink -f "$server")
[[ $(basename "$real") == rabbitmq-script-wrapper ]] && server=$(dirname "$real")/rabbitmq-server
amqp_port=7530
echo '[].' >"$w/enabled_plugins"
: >"$w/rabbitmq.conf"
: >"$w/rabbitmq-env.conf"
export HOME=$w RABBITMQ_NODENAME=cdc-bench-$$@localhost RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
    RABBITMQ_NODE_PORT=$amqp_port RABBITMQ_DIST_PORT=7531 ERL_EPMD_PORT=7532 \
    RABBITMQ_MNESIA_BASE=$w/mnesia RABBITMQ_LOG_BASE=$w/log \
    RABBITMQ_CONFIG_FILE=$w/rabbitmq.conf RABBITMQ_ENABLED_PLUGINS_FILE=$w/enabled_plugins \
    RABBITMQ_CONF_ENV_FILE=$w/rabbitmq-env.conf
setsid "$server" >"$w/broker.log" 2>&1 &
broker=$!

nodes_setup 1 0x7
node_config 7520 1 1 ""
"$bin" node --config "$w/node-1.toml" >>"$w/node-1.log" 2>&1 &
pid=$!
cleanup() {
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    kill -KILL -- "-$broker" 2>/dev/null || true
    wait "$broker" 2>/dev/null || true
    # The broker's epmd refuses -kill while it still lists the dead node: asked until gone.
    for _ in {1..50}; do
        epmd -port 7532 -kill >/dev/null 2>&1 || true
        epmd -port 7532 -names >/dev/null 2>&1 || break
        sleep 0.1
    done
    [[ -n ${KEEP:-} ]] || rm -rf "$w"
}
trap cleanup EXIT
node_wait_ready 7523 "$w/node-1.log"
"$bin" loadgen --cluster 127.0.0.1:7521 --preset tigerbeetle --events "$events" 2>&1 | grep -E "^transfers" | head -1
export TALLY_CLUSTER=127.0.0.1:7521
for ((tries = 0; ; tries++)); do
    grep -q "Starting broker.*completed" "$w/broker.log" && break
    ((tries < 600)) || { echo "the broker did not start within 60 s"; tail -5 "$w/broker.log"; exit 1; }
    sleep 0.1
done
amqp=amqp://guest:guest@127.0.0.1:$amqp_port/%2f
# CPU seconds of the broker's processes (its session: setsid above), to say where time goes.
broker_cpu() { ps -s "$broker" -o times= | awk '{s += $1} END {print s}'; }
cpu0=$(broker_cpu)
t0=$(date +%s.%N)
TIMEFORMAT="tally cdc's CPU: %U s user, %S s system"
time "$bin" cdc --amqp "$amqp" --queue bench --state "$w/cdc.state" --window "$window" --until-caught-up 2>"$w/cdc.log"
t1=$(date +%s.%N)
echo "the broker's CPU meanwhile: $(($(broker_cpu) - cpu0)) s"
published=$(grep -o '[0-9]* messages published' "$w/cdc.log" | cut -d' ' -f1)
echo "tally cdc --until-caught-up --window $window: $published messages in $(echo "$t1 - $t0" | bc) s: $(echo "$published / ($t1 - $t0)" | bc) events/s"
queued=$(env "RABBITMQ_NODENAME=$RABBITMQ_NODENAME" "$(dirname "$server")/rabbitmqctl" -n "$RABBITMQ_NODENAME" list_queues -q name messages 2>/dev/null | awk '$1 == "bench" {print $2}')
echo "the queue holds ${queued:-?} messages"
