#!/usr/bin/env bash
# Install what the review console's browser and PostgreSQL tests need from Debian, when missing:
# `chromium` and `chromium-driver` (the headless browser and its WebDriver, one version) and the
# PostgreSQL server (`postgresql`: initdb, pg_ctl, postgres). scripts/test.sh runs this before the
# suite, so a clean machine needs nothing installed by hand; no service is started or enabled.
set -euo pipefail
apt="$(dirname "$0")/../apt-install.sh"
bash "$apt" chromium chromium chromium
bash "$apt" chromium-driver chromium-driver chromedriver
# The server's programs are not on PATH: look where Debian puts them.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    bash "$apt" postgresql postgresql
fi
