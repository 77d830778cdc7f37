#!/usr/bin/env bash
# A local 3-node Tally cluster with Prometheus, for trying the metrics, alerts and operator
# commands on a laptop. Everything listens on loopback only.
#
#   deploy/local/run.sh [start]   start, wait until every node is ready, print URLs and example
#                                 commands, then stay in the foreground; Ctrl-C stops it all
#   deploy/local/run.sh stop      stop a cluster started by run.sh (from another terminal, or
#                                 after TALLY_LOCAL_DETACH=1)
#   deploy/local/run.sh status    which processes run, and each node's /ready answer
#
# Ports: clients (TLS) 127.0.0.1:7001-7003, replicas (mutual TLS) 127.0.0.1:7201-7203, admin
# HTTP (/metrics, /health, /ready) 127.0.0.1:9101-9103, Prometheus 127.0.0.1:9090 (config
# deploy/local/prometheus.yml, rules deploy/prometheus/alerts.yml).
#
# TLS: every start makes a fresh cluster CA and node certificates with `tally certs` in
# $TALLY_LOCAL_DIR/pki (naming localhost and 127.0.0.1); client commands need
# TALLY_CA=$TALLY_LOCAL_DIR/pki/ca.pem (printed with the example commands).
#
# Environment:
#   TALLY_BIN          the tally binary (default target/release/tally in this repository,
#                      built with `cargo build --release` when missing)
#   TALLY_LOCAL_DIR    work directory: node configs, certificates, data, logs, Prometheus
#                      storage (default /tmp/tally-local; wiped at every start, so each start
#                      is a fresh cluster with fresh credentials and a fresh CA)
#   TALLY_LOCAL_DETACH=1  return after start instead of staying in the foreground
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
work=${TALLY_LOCAL_DIR:-/tmp/tally-local}
marker="$work/.tally-local"
nodes=(1 2 3)
cluster_id=0x10ca1
prometheus_addr=127.0.0.1:9090
ready_timeout_s=60
stop_timeout_s=15

say() { printf 'run.sh: %s\n' "$*" >&2; }
die() {
    say "error: $*"
    exit 1
}

log_of() {
    case $1 in
    prometheus) echo "$work/prometheus.log" ;;
    *) echo "$work/$1/node.log" ;;
    esac
}

node_port() { echo $((7000 + $1)); }
peer_port() { echo $((7200 + $1)); }
admin_port() { echo $((9100 + $1)); }

# HTTP status code of a GET on 127.0.0.1 (000 when nothing answers).
http_status() {
    curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$1$2" || true
}

# Is something listening on 127.0.0.1:PORT?
port_busy() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# The pid in FILE if that process is alive and its command line contains WORD (so a recycled
# pid is never signalled).
live_pid() {
    local file=$1 word=$2 pid
    [[ -f $file ]] || return 1
    pid=$(<"$file")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [[ -r /proc/$pid/cmdline ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$word" || return 1
    echo "$pid"
}

# name|pidfile|word for every process run.sh starts.
processes() {
    local n
    for n in "${nodes[@]}"; do
        echo "node$n|$work/node$n/pid|$work/node$n/node.toml"
    done
    echo "prometheus|$work/prometheus.pid|$work/prometheus-data"
}

stop_all() {
    local name file word pid pids=() names=() waited=0 i
    while IFS='|' read -r name file word; do
        if pid=$(live_pid "$file" "$word"); then
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
            names+=("$name")
        fi
        rm -f "$file"
    done < <(processes)
    if ((${#pids[@]} > 0)); then
        say "sent SIGTERM to ${names[*]}; waiting (at most ${stop_timeout_s} s)"
    fi
    while ((waited < stop_timeout_s * 10)); do
        local alive=0
        for pid in "${pids[@]}"; do
            kill -0 "$pid" 2>/dev/null && alive=1
        done
        ((alive)) || break
        sleep 0.1
        waited=$((waited + 1))
    done
    for i in "${!pids[@]}"; do
        if kill -0 "${pids[$i]}" 2>/dev/null; then
            say "${names[$i]} (pid ${pids[$i]}) still runs ${stop_timeout_s} s after SIGTERM: SIGKILL"
            kill -KILL "${pids[$i]}" 2>/dev/null || true
        fi
    done
    rm -f "$work/running"
    if ((${#pids[@]} > 0)); then
        say "stopped; logs and data stay in $work until the next start"
    fi
}

status() {
    local name file word pid n
    while IFS='|' read -r name file word; do
        if pid=$(live_pid "$file" "$word"); then
            echo "$name: running (pid $pid)"
        else
            echo "$name: not running"
        fi
    done < <(processes)
    for n in "${nodes[@]}"; do
        echo "node$n /ready: HTTP $(http_status "$(admin_port "$n")" /ready)"
    done
}

find_binary() {
    if [[ -n ${TALLY_BIN:-} ]]; then
        [[ -x $TALLY_BIN ]] || die "TALLY_BIN=$TALLY_BIN is not an executable file"
        bin=$(cd "$(dirname "$TALLY_BIN")" && pwd)/$(basename "$TALLY_BIN")
        return
    fi
    bin="$repo/target/release/tally"
    if [[ ! -x $bin ]]; then
        command -v cargo >/dev/null 2>&1 || die "$bin is missing and cargo is not on PATH"
        say "$bin is missing: cargo build --release"
        (cd "$repo" && cargo build --release) || die "cargo build --release failed"
        [[ -x $bin ]] || die "cargo build --release did not produce $bin"
    fi
}

# A random credential secret: 48 hex characters (24 random bytes).
new_secret() {
    od -An -tx1 -N24 /dev/urandom | tr -d ' \n'
}

credential_hash() {
    printf '%s\n' "$1" | "$bin" hash-credential
}

write_config() {
    local n=$1 operator_hash=$2 submitter_hash=$3 m
    {
        echo "# Written by deploy/local/run.sh; regenerated at every start."
        echo "id = $n"
        echo "listen = \"127.0.0.1:$(node_port "$n")\"          # clients (TLS)"
        echo "peer_listen = \"127.0.0.1:$(peer_port "$n")\"     # replicas (mutual TLS)"
        echo "admin_listen = \"127.0.0.1:$(admin_port "$n")\""
        echo "data_dir = \"$work/node$n/data\""
        echo
        echo "[tls]                                   # tally certs, in $work/pki"
        echo "ca = \"$work/pki/ca.pem\""
        echo "cert = \"$work/pki/node-$n.pem\""
        echo "key = \"$work/pki/node-$n.key\""
        echo
        echo "[bootstrap]"
        for m in "${nodes[@]}"; do
            echo "$m = { client = \"127.0.0.1:$(node_port "$m")\", peer = \"127.0.0.1:$(peer_port "$m")\" }"
        done
        echo
        echo "[gateway]"
        echo "cluster_id = \"$cluster_id\""
        echo
        echo "[[gateway.credentials]]"
        echo "name = \"local-operator\""
        echo "hash = \"$operator_hash\""
        echo "role = \"operator\""
        echo
        echo "[[gateway.credentials]]"
        echo "name = \"local-submitter\""
        echo "hash = \"$submitter_hash\""
        echo "role = \"submitter\""
    } >"$work/node$n/node.toml"
}

start() {
    local n name file word pid port
    command -v curl >/dev/null 2>&1 || die "curl is needed to wait for /ready; install it"
    [[ -f $here/prometheus.yml ]] || die "$here/prometheus.yml is missing"
    while IFS='|' read -r name file word; do
        if pid=$(live_pid "$file" "$word"); then
            die "$name already runs (pid $pid): run '$0 stop' first"
        fi
    done < <(processes)
    for n in "${nodes[@]}"; do
        for port in "$(node_port "$n")" "$(peer_port "$n")" "$(admin_port "$n")"; do
            ! port_busy "$port" || die "127.0.0.1:$port is in use; stop what listens there"
        done
    done
    ! port_busy "${prometheus_addr##*:}" ||
        die "$prometheus_addr is in use (a Prometheus service? 'systemctl stop prometheus')"

    if [[ -e $work && ! -e $marker ]] && [[ -n $(ls -A "$work" 2>/dev/null) ]]; then
        die "$work exists, is not empty and was not made by run.sh; set TALLY_LOCAL_DIR"
    fi
    find_binary
    "$here/install-prometheus.sh"

    rm -rf "$work"
    mkdir -p "$work"
    touch "$marker"

    local operator submitter operator_hash submitter_hash
    operator=$(new_secret)
    submitter=$(new_secret)
    operator_hash=$(credential_hash "$operator")
    submitter_hash=$(credential_hash "$submitter")
    # A fresh cluster CA and a certificate per node (keys mode 0600), all in $work/pki.
    local nodes_ids
    nodes_ids=$(IFS=,; echo "${nodes[*]}")
    "$bin" certs --dir "$work/pki" --nodes "$nodes_ids" --hosts localhost,127.0.0.1 \
        >/dev/null || die "tally certs failed"

    # From here on a failure (or Ctrl-C) stops whatever was started.
    trap 'stop_all' EXIT
    trap 'exit 130' INT TERM

    for n in "${nodes[@]}"; do
        mkdir -p "$work/node$n/data"
        write_config "$n" "$operator_hash" "$submitter_hash"
        # setsid: the terminal's Ctrl-C reaches run.sh only, which stops the nodes itself.
        setsid "$bin" node --config "$work/node$n/node.toml" \
            </dev/null >"$work/node$n/node.log" 2>&1 &
        echo $! >"$work/node$n/pid"
    done
    mkdir -p "$work/prometheus-data"
    setsid prometheus \
        --config.file="$here/prometheus.yml" \
        --storage.tsdb.path="$work/prometheus-data" \
        --storage.tsdb.retention.time=1d \
        --web.listen-address="$prometheus_addr" \
        </dev/null >"$work/prometheus.log" 2>&1 &
    echo $! >"$work/prometheus.pid"
    touch "$work/running"

    say "waiting for every node's /ready (at most ${ready_timeout_s} s)"
    local deadline=$((SECONDS + ready_timeout_s)) waiting
    while :; do
        waiting=()
        while IFS='|' read -r name file word; do
            if ! live_pid "$file" "$word" >/dev/null; then
                say "$name exited during start; the end of $(log_of "$name"):"
                tail -n 5 "$(log_of "$name")" >&2 || true
                die "$name did not start"
            fi
        done < <(processes)
        for n in "${nodes[@]}"; do
            [[ $(http_status "$(admin_port "$n")" /ready) == 200 ]] || waiting+=("node$n")
        done
        [[ $(http_status "${prometheus_addr##*:}" /-/ready) == 200 ]] || waiting+=(prometheus)
        ((${#waiting[@]} == 0)) && break
        ((SECONDS < deadline)) ||
            die "not ready after ${ready_timeout_s} s: ${waiting[*]} (logs in $work)"
        sleep 0.5
    done

    local nodes_csv
    nodes_csv=$(printf '127.0.0.1:%s,' 7001 7002 7003)
    nodes_csv=${nodes_csv%,}
    cat <<EOF

Tally local cluster is ready (work directory $work).

  Metrics        http://127.0.0.1:9101/metrics  http://127.0.0.1:9102/metrics  http://127.0.0.1:9103/metrics
  Health/ready   http://127.0.0.1:9101/health   http://127.0.0.1:9101/ready    (9102, 9103 alike)
  Prometheus     http://$prometheus_addr        (alerts: http://$prometheus_addr/alerts)
  Node logs      $work/node{1,2,3}/node.log
  Cluster CA     $work/pki/ca.pem   (clients verify the nodes with it: TALLY_CA)

Credentials (printed only now; the nodes keep only their hashes):
  operator   $operator
  submitter  $submitter
  cluster id $cluster_id

Try:
  export TALLY_CA=$work/pki/ca.pem
  export TALLY_CREDENTIAL=$operator
  $bin admin --node 127.0.0.1:7001 status
  $bin loadgen --cluster $nodes_csv --cluster-id $cluster_id --clients 8 --seconds 30
  TALLY_CREDENTIAL=$submitter $bin client --cluster $nodes_csv --cluster-id $cluster_id --help

Grafana is not started here: import deploy/grafana/tally-dashboard.json into yours and
point it at http://$prometheus_addr.

EOF
    if [[ ${TALLY_LOCAL_DETACH:-0} == 1 ]]; then
        trap - EXIT INT TERM
        say "detached; stop with: $0 stop"
        return
    fi
    say "running; Ctrl-C (or '$0 stop' elsewhere) stops everything"
    # Wait until stopped: Ctrl-C runs the EXIT trap; `run.sh stop` removes $work/running.
    # A node that dies (or is killed to try a failover) does not end the demo.
    while [[ -e $work/running ]]; do
        sleep 1
    done
}

case ${1:-start} in
start) start ;;
stop) stop_all ;;
status) status ;;
-h | --help | help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//' ;;
*) die "unknown command '$1' (start, stop, status)" ;;
esac
