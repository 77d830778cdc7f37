#!/usr/bin/env bash
# Install Prometheus (prometheus + promtool) from the distribution's package, for the local
# demo (deploy/local/run.sh) and for checking deploy/prometheus/*.yml with promtool.
#
# Idempotent: exits 0 at once when both are already on PATH. Otherwise installs Debian's
# `prometheus` package (Debian/Ubuntu only), with sudo when not root, first without and then,
# if that fails, after `apt-get update`. The package's own service is not left running:
# run.sh starts its own Prometheus on 127.0.0.1:9090 with a private storage directory.
set -euo pipefail

NAME=install-prometheus
# shellcheck source=deploy/local/apt.sh
source "$(dirname "$0")/apt.sh"

if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
    say "prometheus ($(command -v prometheus)) and promtool are already installed"
    exit 0
fi

# Was a Prometheus running before we touched anything? Then it is not ours to stop.
running_before=false
if pgrep -x prometheus >/dev/null 2>&1; then
    running_before=true
fi

apt_install prometheus "prometheus/promtool are not on PATH and there is no apt-get here; install Prometheus 2.x yourself (https://prometheus.io/download/) and put both binaries on PATH"

if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
    die "the prometheus package is installed but prometheus/promtool are not on PATH (expected /usr/bin)"
fi

# Debian's package enables and starts prometheus.service (unless a policy-rc.d forbids it, as
# in most containers). The demo needs port 9090 and its own config, so stop what the install
# started; a Prometheus that ran before is left alone.
if [[ $running_before == false ]]; then
    if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
        if systemctl is-active --quiet prometheus.service 2>/dev/null ||
            systemctl is-enabled --quiet prometheus.service 2>/dev/null; then
            say "stopping and disabling the package's prometheus.service"
            "${as_root[@]}" systemctl disable --now prometheus.service ||
                say "warning: could not stop prometheus.service; stop it before run.sh"
        fi
    fi
    if pgrep -x prometheus >/dev/null 2>&1; then
        pids=$(pgrep -x prometheus | tr '\n' ' ')
        say "stopping the prometheus the package started (pid ${pids% })"
        # shellcheck disable=SC2086 # one word per pid
        "${as_root[@]}" kill -TERM $pids ||
            say "warning: could not stop prometheus (pid ${pids% }); stop it before run.sh"
    fi
fi

say "installed: $(prometheus --version 2>&1 | head -n 1)"
