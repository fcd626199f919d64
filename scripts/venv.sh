#!/usr/bin/env bash
# Create or update this checkout's virtual environment, .venv, from the committed uv.lock.
#
# Every checkout has its own .venv with this checkout installed (editable), so nothing one clone
# does changes another. uv keeps one download cache per user, so a second checkout builds its
# environment in seconds; a cold machine downloads torch (about 3 GB) once. uv itself comes from
# PyPI when it is not installed.
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.9
export UV_PYTHON_DOWNLOADS=never  # use the machine's Python 3.11; the registries are PyPI only
export UV_NATIVE_TLS=1  # trust the system's certificate store, as pip and git do here

uv=$(command -v uv || true)
if [[ -z "$uv" ]]; then
    tools="${XDG_CACHE_HOME:-$HOME/.cache}/aigis/uv-$UV_VERSION"
    if [[ ! -x "$tools/bin/uv" ]]; then
        echo "venv: installing uv $UV_VERSION from PyPI into $tools" >&2
        python3 -m venv "$tools"
        "$tools/bin/python" -m pip install --quiet "uv==$UV_VERSION"
    fi
    uv="$tools/bin/uv"
fi

# An environment of the previous layout was a link into a shared cache; this one is our own.
[[ -L .venv ]] && rm .venv
"$uv" sync --frozen --extra dev --quiet
