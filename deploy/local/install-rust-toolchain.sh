#!/usr/bin/env bash
# Make sure the Rust toolchains the checks need are installed: the default toolchain's
# rustfmt and clippy, and the workspace's minimum toolchain (`rust-version` in Cargo.toml),
# which `.ci/run` builds the workspace with to prove the minimum is real.
#
# Idempotent: installs nothing that is already there. Needs rustup (https://rustup.rs).
# Prints the minimum toolchain's name (e.g. 1.89.0) on standard output when it is installed
# (nothing when it cannot be fetched), its messages on standard error.
set -euo pipefail

NAME=install-rust-toolchain
# shellcheck source=deploy/local/apt.sh
source "$(dirname "$0")/apt.sh"

cd "$(dirname "$0")/../.."
command -v rustup >/dev/null 2>&1 ||
    die "rustup is not on PATH; install Rust with rustup (https://rustup.rs) and run this again"

for component in rustfmt clippy; do
    if rustup component list --installed 2>/dev/null | grep -q "^$component"; then
        say "$component is already installed"
    else
        say "adding $component to the default toolchain"
        rustup component add "$component" >&2 || die "rustup component add $component failed"
    fi
done

minimum=$(sed -n 's/^rust-version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
[ -n "$minimum" ] || die "no rust-version in Cargo.toml"
# rust-version may name a minor version (1.89) or a patch (1.89.0); rustup wants the latter.
case "$minimum" in
    *.*.*) toolchain=$minimum ;;
    *) toolchain=$minimum.0 ;;
esac
if rustup toolchain list | grep -q "^$toolchain-"; then
    say "Rust $toolchain (the workspace's rust-version) is already installed"
else
    say "installing Rust $toolchain, the workspace's rust-version"
    if ! rustup toolchain install "$toolchain" --profile minimal >&2; then
        # Some hosts reach crates.io but not rustup's download server. The minimum is then not
        # checked here (and .ci/run says so); nothing else depends on it.
        say "could not install Rust $toolchain (rustup's server unreachable?): the build with the"
        say "minimum toolchain is skipped on this host"
        exit 0
    fi
fi
echo "$toolchain"
