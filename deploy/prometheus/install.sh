#!/usr/bin/env bash
# Install Debian's prometheus (which brings promtool) when it is missing. scripts/test.sh runs
# this before the tests: they check the alert rules with promtool and run a real Prometheus
# against a real worker (tests/worker/test_observability.py). Only the binaries are wanted:
# the tests start their own Prometheus on a test port.
set -euo pipefail
exec bash "$(dirname "$0")/../apt-install.sh" prometheus prometheus prometheus promtool
