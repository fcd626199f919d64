#!/usr/bin/env bash
# Install Debian's redis-server when it is missing. `aigis dev up` runs this on first use.
#
# Only the binary is wanted: aigis starts its own instance on the configured port, so the
# package's system service is neither enabled nor started by this script.
set -euo pipefail

if command -v redis-server >/dev/null 2>&1; then
    exit 0
fi

SUDO=""
if [[ "$(id -u)" != 0 ]]; then
    if ! command -v sudo >/dev/null 2>&1; then
        echo "redis-server is missing and this user cannot install packages;" \
             "install it with: apt-get install -y redis-server" >&2
        exit 1
    fi
    SUDO="sudo -n"
fi

export DEBIAN_FRONTEND=noninteractive
# The package index may be stale or empty (fresh containers): refresh it once and retry.
if ! $SUDO apt-get install -y --no-install-recommends redis-server; then
    $SUDO apt-get update
    $SUDO apt-get install -y --no-install-recommends redis-server
fi
# Debian enables a system-wide redis on port 6379; aigis runs its own, so keep that one off.
if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
    $SUDO systemctl disable --now redis-server >/dev/null 2>&1 || true
fi
command -v redis-server >/dev/null
