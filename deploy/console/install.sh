#!/usr/bin/env bash
# Install what the review console's browser and PostgreSQL tests need from Debian, when missing:
# `chromium` and `chromium-driver` (the headless browser and its WebDriver, one version) and the
# PostgreSQL server (`postgresql`: initdb, pg_ctl, postgres). scripts/test.sh runs this before the
# suite, so a clean machine needs nothing installed by hand; nothing is started or enabled here.
set -euo pipefail

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
if [[ ${#missing[@]} == 0 ]]; then
    exit 0
fi

echo "console: installing ${missing[*]} from Debian" >&2
bash "$(dirname "$0")/../apt-install.sh" "${missing[@]}"
# Debian's package starts a cluster on port 5432; the tests run their own, so keep that one off.
if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
    SUDO=""; [[ "$(id -u)" == 0 ]] || SUDO="sudo -n"
    $SUDO systemctl disable --now postgresql >/dev/null 2>&1 || true
fi
command -v chromium >/dev/null && command -v chromedriver >/dev/null
