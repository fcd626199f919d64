#!/usr/bin/env bash
# Install Debian's redis-server when it is missing. `aigis dev up` runs this on first use.
#
# Only the binary is wanted: aigis starts its own instance on the configured port, so the
# package's system service is neither enabled nor started by this script.
set -euo pipefail

if command -v redis-server >/dev/null 2>&1; then
    exit 0
fi

bash "$(dirname "$0")/../apt-install.sh" redis-server
# Debian enables a system-wide redis on port 6379; aigis runs its own, so keep that one off.
if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
    SUDO=""; [[ "$(id -u)" == 0 ]] || SUDO="sudo -n"
    $SUDO systemctl disable --now redis-server >/dev/null 2>&1 || true
fi
command -v redis-server >/dev/null
