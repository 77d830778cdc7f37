#!/usr/bin/env bash
# Install RabbitMQ (rabbitmq-server, rabbitmqctl) from the distribution's package, for
# `tally cdc`'s test (tests/cdc.rs) and its benchmark (benches/cdc.sh), which start a private
# broker of their own.
#
# Idempotent: exits 0 at once when rabbitmq-server is already installed (on PATH, or in
# /usr/sbin, where Debian puts it and where a non-root PATH may not look). Otherwise installs
# Debian's `rabbitmq-server` package (Debian/Ubuntu only), with sudo when not root, first
# without and then, if that fails, after `apt-get update`. The package's own service is not
# left running: the tests start their own brokers on free ports with private data directories.
set -euo pipefail

NAME=install-rabbitmq
# shellcheck source=deploy/local/apt.sh
source "$(dirname "$0")/apt.sh"

installed() {
    command -v rabbitmq-server >/dev/null 2>&1 || [[ -x /usr/sbin/rabbitmq-server ]]
}

if installed; then
    say "rabbitmq-server ($(command -v rabbitmq-server || echo /usr/sbin/rabbitmq-server)) is already installed"
    exit 0
fi

# Was a broker running before we touched anything? Then it is not ours to stop.
running_before=false
if pgrep -f 'beam.*rabbit' >/dev/null 2>&1; then
    running_before=true
fi

apt_install rabbitmq-server "rabbitmq-server is not installed and there is no apt-get here; install RabbitMQ 3.x yourself (https://www.rabbitmq.com/docs/download) and put rabbitmq-server on PATH"

installed || die "the rabbitmq-server package is installed but rabbitmq-server is not on PATH nor in /usr/sbin"

# Debian's package enables and starts rabbitmq-server.service (unless a policy-rc.d forbids
# it, as in most containers). The tests run brokers of their own, so stop what the install
# started: the package's broker would hold port 5672 and an epmd the tests do not expect. A
# broker that ran before is left alone.
if [[ $running_before == false ]]; then
    if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
        if systemctl is-active --quiet rabbitmq-server.service 2>/dev/null ||
            systemctl is-enabled --quiet rabbitmq-server.service 2>/dev/null; then
            say "stopping and disabling the package's rabbitmq-server.service"
            "${as_root[@]}" systemctl disable --now rabbitmq-server.service ||
                say "warning: could not stop rabbitmq-server.service; stop it before the tests"
        fi
    fi
    if pgrep -f 'beam.*rabbit' >/dev/null 2>&1; then
        pids=$(pgrep -f 'beam.*rabbit' | tr '\n' ' ')
        say "stopping the broker the package started (pid ${pids% })"
        # shellcheck disable=SC2086 # one word per pid
        "${as_root[@]}" kill -TERM $pids ||
            say "warning: could not stop the broker (pid ${pids% }); stop it before the tests"
    fi
fi

say "installed: rabbitmq-server $(dpkg-query -W -f='${Version}' rabbitmq-server 2>/dev/null || echo '(version unknown)')"
