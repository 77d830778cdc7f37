#!/usr/bin/env bash
# Write the compose cluster's node configs, config/generated/node{1,2,3}.toml, from
# config/node.toml.in with a fresh operator and submitter credential. The secrets are printed
# once; the files hold only their hashes (BLAKE3, `tally hash-credential`). Refuses to
# overwrite existing configs (their nodes' clients would lose access): pass --force to.
#
# Needs the tally binary: ${TALLY_BIN:-target/release/tally} (built with cargo if missing).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
out="$here/config/generated"
bin=${TALLY_BIN:-$repo/target/release/tally}

if [[ -e $out/node1.toml && ${1:-} != --force ]]; then
    echo "make-config.sh: $out already holds configs; pass --force to replace them" >&2
    exit 1
fi
if [[ ! -x $bin ]]; then
    echo "make-config.sh: building $bin" >&2
    (cd "$repo" && cargo build --release --bin tally)
fi

secret() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
operator=$(secret)
submitter=$(secret)
operator_hash=$(printf '%s\n' "$operator" | "$bin" hash-credential)
submitter_hash=$(printf '%s\n' "$submitter" | "$bin" hash-credential)

mkdir -p "$out"
umask 077
for id in 1 2 3; do
    sed -e "s/@ID@/$id/" -e "s/@OPERATOR_HASH@/$operator_hash/" \
        -e "s/@SUBMITTER_HASH@/$submitter_hash/" "$here/config/node.toml.in" >"$out/node$id.toml"
    # The container runs as uid 10001: it must read its config.
    chmod 644 "$out/node$id.toml"
done

cat <<MSG
Wrote $out/node{1,2,3}.toml (hashes only).
Credentials, shown only now — keep them somewhere safe:
  operator   $operator
  submitter  $submitter
  cluster id $(sed -n 's/^cluster_id = "\(.*\)"/\1/p' "$here/config/node.toml.in")
MSG
