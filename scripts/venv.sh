#!/usr/bin/env bash
# Create or reuse the virtual environment and link it at .venv.
#
# The environment lives in a cache directory keyed on the Python version and the dependency
# lists of pyproject.toml, so a fresh clone with unchanged dependencies reuses it in seconds and
# a change of dependencies builds a new one. Only the project itself is re-installed each time
# (editable, without dependencies), because it may sit in a different clone.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
CACHE="${AIGIS_VENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/aigis/venvs}"

key="$("$PYTHON" - <<'PY'
import hashlib, sys, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
deps = sorted(project["dependencies"]) + sorted(
    f"{extra}:{dep}" for extra, deps in project.get("optional-dependencies", {}).items() for dep in deps
)
blob = "\n".join([sys.version.split()[0], *deps]).encode()
print(hashlib.sha256(blob).hexdigest()[:16])
PY
)"
venv="$CACHE/py-$key"

if [[ ! -x "$venv/bin/python" || ! -f "$venv/.complete" ]]; then
    echo "venv: building $venv (first run with these dependencies; torch alone is about 3 GB)" >&2
    rm -rf "$venv"
    mkdir -p "$CACHE"
    "$PYTHON" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet --progress-bar off -e ".[dev]"
    touch "$venv/.complete"
else
    echo "venv: reusing $venv" >&2
fi
"$venv/bin/python" -m pip install --quiet --no-deps --no-build-isolation -e . >/dev/null

if [[ -L .venv || ! -e .venv ]]; then
    ln -sfn "$venv" .venv
elif [[ "$(readlink -f .venv)" != "$(readlink -f "$venv")" ]]; then
    echo "venv: .venv exists and is not a link; remove it to use the cached environment" >&2
    exit 1
fi
