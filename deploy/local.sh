#!/usr/bin/env bash
# Start, stop or inspect Kafka (KRaft) and Redis on this machine: the same code as `aigis dev`.
#
#   deploy/local.sh up | down [--purge] | status [--json]
#
# Ports and directories come from the environment like everywhere else in aigis
# (AIGIS_KAFKA__BOOTSTRAP_SERVERS, AIGIS_REDIS__URL, AIGIS_STATE_DIR, AIGIS_CACHE_DIR).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

if [[ $# -lt 1 || ! "$1" =~ ^(up|down|status)$ ]]; then
    echo "usage: $0 up | down [--purge] | status [--json]" >&2
    exit 2
fi
if [[ ! -x "$root/.venv/bin/aigis" ]]; then
    echo "$root/.venv is missing; create it with: make venv" >&2
    exit 1
fi
exec "$root/.venv/bin/aigis" dev "$@"
