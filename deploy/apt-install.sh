#!/usr/bin/env bash
# Install Debian packages: as root, or through `sudo -n` for another user. The package index may
# be stale or empty (fresh containers): it is refreshed once and the install retried.
# Usage: deploy/apt-install.sh PACKAGE...
set -euo pipefail

SUDO=""
if [[ "$(id -u)" != 0 ]]; then
    if ! command -v sudo >/dev/null 2>&1; then
        echo "$* missing and this user cannot install packages;" \
             "install with: apt-get install -y $*" >&2
        exit 1
    fi
    SUDO="sudo -n"
fi

export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get install -y --no-install-recommends "$@"; then
    $SUDO apt-get update
    $SUDO apt-get install -y --no-install-recommends "$@"
fi
