#!/usr/bin/env bash
# Make sure Python 3 (3.8 or newer) is on PATH: the independent proof verifier (verifier/,
# standard library only) is Python, and the tests run it beside `tally verify`. Then put the
# Python tools the checks use (.ci/python-tools.txt: ruff, pytest, pandas, mypy) into a virtual environment
# of the project's own, target/python-tools, so nothing goes into the system's Python, and
# install the Python client (clients/python, editable: the tests see the checkout) into it.
#
# Idempotent: installs only what is missing. Python itself comes from Debian's `python3`
# package (Debian/Ubuntu only, with sudo when not root); the tools from PyPI.
set -euo pipefail

NAME=install-python
# shellcheck source=deploy/local/apt.sh
source "$(dirname "$0")/apt.sh"

cd "$(dirname "$0")/../.."

if command -v python3 >/dev/null 2>&1 &&
    python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 8) else 1)'; then
    say "$(python3 --version 2>&1) ($(command -v python3)) is already installed"
else
    apt_install python3 "no python3 of 3.8 or newer on PATH and no apt-get here; install Python 3 yourself"
    say "installed: $(python3 --version 2>&1)"
fi

tools=target/python-tools
if [[ ! -x $tools/bin/python ]]; then
    say "making the tools' virtual environment in $tools"
    if ! python3 -m venv "$tools"; then
        # Debian ships venv's pip bootstrap apart from python3.
        rm -rf "$tools"
        apt_install python3-venv "python3 cannot make a virtual environment and there is no apt-get here"
        python3 -m venv "$tools" || die "python3 -m venv $tools failed"
    fi
fi
"$tools/bin/python" -m pip install --quiet --disable-pip-version-check \
    -r .ci/python-tools.txt >&2 ||
    die "pip could not install .ci/python-tools.txt into $tools (PyPI reachable?)"
# The client needs Python 3.10; pip refuses it on an older one, saying so.
if ! "$tools/bin/python" -c 'import tally_client' 2>/dev/null; then
    "$tools/bin/python" -m pip install --quiet --disable-pip-version-check \
        --editable clients/python >&2 ||
        die "pip could not install clients/python into $tools (Python 3.10 or newer? PyPI reachable for its build backend?)"
fi
say "Python tools ready in $tools: $("$tools/bin/ruff" --version), $("$tools/bin/python" -m pytest --version 2>&1), tally_client"
