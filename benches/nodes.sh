# Shared by the benches that run `tally node` processes of their own (restart.sh,
# snapshot_scale.sh, snapshot_install.sh): a CA and node certificates, an operator credential,
# node configs and a bounded wait for /ready. Source it after setting `bin` (the tally binary)
# and `w` (the work directory).
#
# Node N of a bench with base port B listens on B+3(N-1)+1 (clients), +2 (replicas) and +3
# (admin HTTP); its config is $w/node-N.toml, its data $w/data-N, its log $w/node-N.log.

# nodes_setup IDS CLUSTER_ID: certificates for IDS (comma-separated), a fresh operator
# credential, and the client environment (TALLY_CA, TALLY_CREDENTIAL, TALLY_CLUSTER_ID).
nodes_setup() {
    "$bin" certs --dir "$w/pki" --nodes "$1" --hosts localhost,127.0.0.1 >/dev/null
    local secret
    secret=$(od -An -tx1 -N24 /dev/urandom | tr -d ' \n')
    node_credential_hash=$(printf '%s\n' "$secret" | "$bin" hash-credential)
    node_cluster_id=$2
    export TALLY_CA=$w/pki/ca.pem TALLY_CREDENTIAL=$secret TALLY_CLUSTER_ID=$2
}

# node_port BASE N WHICH: WHICH is 1 (clients), 2 (replicas) or 3 (admin HTTP).
node_port() { echo $(($1 + 3 * ($2 - 1) + $3)); }

# node_config BASE N IDS RAFT: writes $w/node-N.toml for node N of the cluster IDS
# (comma-separated, every one a founding voter), with RAFT as the [raft] section's lines.
node_config() {
    local base=$1 n=$2 ids=$3 raft=$4 m bootstrap=""
    for m in ${ids//,/ }; do
        bootstrap+="$m = { client = \"127.0.0.1:$(node_port "$base" "$m" 1)\", peer = \"127.0.0.1:$(node_port "$base" "$m" 2)\" }"$'\n'
    done
    cat > "$w/node-$n.toml" <<TOML
id = $n
listen = "127.0.0.1:$(node_port "$base" "$n" 1)"
peer_listen = "127.0.0.1:$(node_port "$base" "$n" 2)"
admin_listen = "127.0.0.1:$(node_port "$base" "$n" 3)"
data_dir = "$w/data-$n"
[tls]
ca = "$w/pki/ca.pem"
cert = "$w/pki/node-$n.pem"
key = "$w/pki/node-$n.key"
[bootstrap]
$bootstrap[raft]
$raft
[gateway]
cluster_id = "$node_cluster_id"
[[gateway.credentials]]
name = "op"
hash = "$node_credential_hash"
role = "operator"
TOML
}

# node_wait_ready ADMIN_PORT [LOG]: until /ready answers 200; after 60 s, the log's tail and
# a failure.
node_wait_ready() {
    local tries
    for ((tries = 0; ; tries++)); do
        [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/ready") == 200 ]] && return 0
        if ((tries >= 3000)); then
            echo "the node on admin port $1 was not ready within 60 s"
            [[ -n ${2:-} ]] && tail -5 "$2"
            return 1
        fi
        sleep 0.02
    done
}
