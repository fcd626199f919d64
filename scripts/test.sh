#!/usr/bin/env bash
# Lint, start the services the suite needs on test ports, run the suite, stop what was started.
#
# The services get their own ports and state directory so the suite never touches a stack that
# `aigis dev up` runs on the default ports. They are stopped on every exit, failures included.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin

export AIGIS_STATE_DIR="${AIGIS_STATE_DIR:-$PWD/.state/test}"
export AIGIS_KAFKA__BOOTSTRAP_SERVERS="${AIGIS_KAFKA__BOOTSTRAP_SERVERS:-127.0.0.1:19092}"
export AIGIS_REDIS__URL="${AIGIS_REDIS__URL:-redis://127.0.0.1:16379/0}"
export AIGIS_SERVING__INFERENCE_URL="${AIGIS_SERVING__INFERENCE_URL:-http://127.0.0.1:18080}"
export AIGIS_SERVING__MANAGEMENT_URL="${AIGIS_SERVING__MANAGEMENT_URL:-http://127.0.0.1:18081}"
export AIGIS_SERVING__METRICS_URL="${AIGIS_SERVING__METRICS_URL:-http://127.0.0.1:18082}"
export AIGIS_LOG_FORMAT=json
export PYTHONUNBUFFERED=1
# OpenMP threads that wait sleep instead of spinning: on a shared 2-core machine spinning threads
# of one test process starve the services and the others (as `aigis serve start` does for
# TorchServe's workers; see docs/serving.md).
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"

echo "== lint" >&2
$BIN/ruff check .
$BIN/ruff format --check .
$BIN/mypy
$BIN/lint-imports

echo "== system packages" >&2
# Debian's packages the tests need, installed when missing: promtool and Prometheus for the
# observability tests; chromium and PostgreSQL for the review console's.
bash deploy/prometheus/install.sh
bash deploy/console/install.sh

echo "== services" >&2
# Stop the services on every exit: failures, Ctrl+C and SIGTERM (which skip EXIT traps otherwise).
trap '$BIN/aigis dev down || true' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
$BIN/aigis dev up

echo "== tests" >&2
# A hung test fails after 15 minutes instead of holding the services forever; the 25 slowest
# tests are listed at the end, to keep the suite's time in view.
$BIN/python -m pytest --timeout=900 --durations=25 "$@"
