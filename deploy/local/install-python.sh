#!/usr/bin/env bash
# Make sure Python 3 (3.8 or newer, standard library only) is on PATH: the independent proof
# verifier (verifier/) is Python, and the tests run it beside `tally verify`.
#
# Idempotent: exits 0 at once when a python3 of 3.8 or newer is there. Otherwise installs
# Debian's `python3` package (Debian/Ubuntu only), with sudo when not root.
set -euo pipefail

NAME=install-python
# shellcheck source=deploy/local/apt.sh
source "$(dirname "$0")/apt.sh"

if command -v python3 >/dev/null 2>&1 &&
    python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 8) else 1)'; then
    say "$(python3 --version 2>&1) ($(command -v python3)) is already installed"
    exit 0
fi

apt_install python3 "no python3 of 3.8 or newer on PATH and no apt-get here; install Python 3 yourself"
say "installed: $(python3 --version 2>&1)"
