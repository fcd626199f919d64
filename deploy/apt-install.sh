#!/usr/bin/env bash
# Install a Debian package for its binaries when one of them is missing, without its service.
#   apt-install.sh PACKAGE SERVICE [COMMAND...]
# Without COMMANDs the package is installed (the caller has checked what is missing). aigis
# starts its own instances on the ports it is configured for, so the package's system service
# SERVICE is kept from starting during the install (policy-rc.d) and disabled where systemd runs.
# Used by redis/install.sh, prometheus/install.sh and console/install.sh.
set -euo pipefail

package=$1 service=$2
shift 2
missing=0
for command in "$@"; do
    command -v "$command" >/dev/null 2>&1 || missing=1
done
[[ $# -gt 0 && $missing == 0 ]] && exit 0

SUDO=""
if [[ "$(id -u)" != 0 ]]; then
    if ! command -v sudo >/dev/null 2>&1; then
        echo "$* missing and this user cannot install packages;" \
             "install them with: apt-get install -y --no-install-recommends $package" >&2
        exit 1
    fi
    SUDO="sudo -n"
fi

export DEBIAN_FRONTEND=noninteractive
policy=/usr/sbin/policy-rc.d
if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee $policy >/dev/null
    $SUDO chmod +x $policy
    trap '$SUDO rm -f $policy' EXIT
fi
# The package index may be stale or empty (fresh containers): refresh it once and retry.
if ! $SUDO apt-get install -y --no-install-recommends "$package"; then
    $SUDO apt-get update
    $SUDO apt-get install -y --no-install-recommends "$package"
fi
if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
    $SUDO systemctl disable --now "$service" >/dev/null 2>&1 || true
fi
for command in "$@"; do
    command -v "$command" >/dev/null
done
