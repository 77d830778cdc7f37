#!/usr/bin/env bash
# Write the compose cluster's node configs and certificates into config/generated/ (git
# ignores it):
#   node{1,2,3}.toml     from config/node.toml.in, with a fresh operator and submitter
#                        credential (the files hold only their BLAKE3 hashes; the secrets are
#                        printed once)
#   pki/                 the cluster CA made by `tally certs`: ca.pem, ca.key (never mounted
#                        into a container; keep it to sign a certificate for a 4th node with
#                        `tally certs --dir config/generated/pki --ca-exists --nodes 4 ...`)
#                        and every node's certificate and key
#   node{1,2,3}-pki/     what each node gets at /etc/tally/pki: ca.pem, node-N.pem, node-N.key
# Node certificates name node-N.tally and the hosts node1, node2, node3 (the compose service
# names clients dial), localhost and 127.0.0.1 (the published ports, from the host).
# Clients verify the nodes with config/generated/pki/ca.pem (TALLY_CA), or inside a node's
# container with /etc/tally/pki/ca.pem.
#
# Refuses to overwrite existing configs (their nodes' clients would lose access, and the new
# CA replaces the old one): pass --force to.
#
# Needs the tally binary: ${TALLY_BIN:-target/release/tally} (built with cargo if missing).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
out="$here/config/generated"
bin=${TALLY_BIN:-$repo/target/release/tally}
nodes=(1 2 3)

if [[ -e $out/node1.toml && ${1:-} != --force ]]; then
    echo "make-config.sh: $out already holds configs; pass --force to replace them" >&2
    exit 1
fi
if [[ ! -x $bin ]]; then
    if ! command -v cargo >/dev/null 2>&1; then
        cat >&2 <<MSG
make-config.sh: $bin is missing and cargo is not on PATH.
The configs need the tally binary: for the credential hashes (tally hash-credential) and the
certificates (tally certs). Point TALLY_BIN at a tally binary, or build the image first
(docker build -f deploy/container/Containerfile -t tally:local .) and copy its
/usr/local/bin/tally out, then run this again.
MSG
        exit 1
    fi
    echo "make-config.sh: building $bin" >&2
    (cd "$repo" && cargo build --release --bin tally)
fi

secret() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
operator=$(secret)
submitter=$(secret)
operator_hash=$(printf '%s\n' "$operator" | "$bin" hash-credential)
submitter_hash=$(printf '%s\n' "$submitter" | "$bin" hash-credential)

# Only this user may enter config/generated/ (it holds the CA key and the node keys); the
# containers see the files through their bind mounts, not through this directory.
mkdir -p "$out"
chmod 700 "$out"
umask 077
rm -rf "$out/pki"
for id in "${nodes[@]}"; do
    rm -rf "$out/node$id-pki"
done
nodes_csv=$(IFS=,; echo "${nodes[*]}")
"$bin" certs --dir "$out/pki" --nodes "$nodes_csv" \
    --hosts node1,node2,node3,localhost,127.0.0.1 >/dev/null

for id in "${nodes[@]}"; do
    sed -e "s/@ID@/$id/g" -e "s/@OPERATOR_HASH@/$operator_hash/" \
        -e "s/@SUBMITTER_HASH@/$submitter_hash/" "$here/config/node.toml.in" >"$out/node$id.toml"
    mkdir "$out/node$id-pki"
    cp "$out/pki/ca.pem" "$out/pki/node-$id.pem" "$out/pki/node-$id.key" "$out/node$id-pki/"
    # The container runs as uid 10001: it must read its config, certificate and key. Other
    # users of this host cannot reach them: config/generated/ is mode 0700.
    chmod 755 "$out/node$id-pki"
    chmod 644 "$out/node$id.toml" "$out/node$id-pki/"*
done

cat <<MSG
Wrote $out/node{1,2,3}.toml (hashes only) and their certificates (node{1,2,3}-pki/).
The cluster CA is $out/pki/ca.pem (clients: TALLY_CA); its key $out/pki/ca.key
stays out of the containers.
Credentials, shown only now — keep them somewhere safe:
  operator   $operator
  submitter  $submitter
  cluster id $(sed -n 's/^cluster_id = "\(.*\)"/\1/p' "$here/config/node.toml.in")
MSG
