#!/usr/bin/env bash
# Install Debian's prometheus (which brings promtool) when it is missing. scripts/test.sh runs
# this before the tests: they check the alert rules with promtool and run a real Prometheus
# against a real worker (tests/worker/test_observability.py).
#
# Only the binaries are wanted: the tests start their own Prometheus on a test port, so the
# package's system service is kept from starting (policy-rc.d) and disabled where systemd runs.
set -euo pipefail

if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
    exit 0
fi

SUDO=""
if [[ "$(id -u)" != 0 ]]; then
    if ! command -v sudo >/dev/null 2>&1; then
        echo "prometheus is missing and this user cannot install packages;" \
             "install it with: apt-get install -y --no-install-recommends prometheus" >&2
        exit 1
    fi
    SUDO="sudo -n"
fi

export DEBIAN_FRONTEND=noninteractive
# No service may start during the install (no init system decides that in a container).
policy=/usr/sbin/policy-rc.d
if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee $policy >/dev/null
    $SUDO chmod +x $policy
    trap '$SUDO rm -f $policy' EXIT
fi
# The package index may be stale or empty (fresh containers): refresh it once and retry.
if ! $SUDO apt-get install -y --no-install-recommends prometheus; then
    $SUDO apt-get update
    $SUDO apt-get install -y --no-install-recommends prometheus
fi
if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
    $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
command -v prometheus >/dev/null && command -v promtool >/dev/null
