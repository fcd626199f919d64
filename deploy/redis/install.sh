#!/usr/bin/env bash
# Install Debian's redis-server when it is missing. `aigis dev up` runs this on first use.
# Only the binary is wanted: aigis starts its own instance on the configured port.
set -euo pipefail
exec bash "$(dirname "$0")/../apt-install.sh" redis-server redis-server redis-server
