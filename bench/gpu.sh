#!/usr/bin/env bash
# The handler's code path on a GPU (bench/gpu.py: JPEG bytes to scores, base fused model), for a
# machine that has PyTorch, transformers and torchvision but nothing else of this project's
# dependencies, and no network.
#
#   bench/gpu.sh --prepare      here, with PyPI reachable: the wheels such a machine lacks
#                               (pydantic and pydantic-settings with their own dependencies, the
#                               versions of uv.lock, for CPython 3.12 on x86-64 Linux) into
#                               .gpu-wheels/, about 3 MB; copy it to the GPU host with the repository
#   bench/gpu.sh [--device auto|cuda|cpu] [--quick] [--json PATH] [bench.gpu's options]
#                               there: unpacks whichever of those wheels the interpreter lacks
#                               into .gpu-site/, puts it first on the path, and runs bench.gpu
#                               and stops it after 8 minutes
#
# PYTHON names the interpreter (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
WHEELS=.gpu-wheels
SITE=.gpu-site
# module name, distribution name: what the handler's path imports beyond torch's own stack.
PACKAGES="pydantic:pydantic pydantic_core:pydantic-core annotated_types:annotated-types \
typing_inspection:typing-inspection pydantic_settings:pydantic-settings dotenv:python-dotenv"

if [[ ${1:-} == --prepare ]]; then
    rm -rf "$WHEELS" && mkdir -p "$WHEELS"
    pins=()
    for entry in $PACKAGES; do
        dist=${entry#*:}
        pins+=("$dist==$(.venv/bin/python -c "import importlib.metadata as m; print(m.version('$dist'))")")
    done
    UV_NATIVE_TLS=1 uv run --no-project --with pip python -m pip download --quiet --no-deps \
        --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
        --dest "$WHEELS" "${pins[@]}"
    ls -l "$WHEELS"
    exit 0
fi

# Unpack the wheel of each package the interpreter cannot import (pydantic 1 counts as missing).
missing=$("$PYTHON" - $PACKAGES <<'PY'
import importlib.util
import sys

for entry in sys.argv[1:]:
    module, dist = entry.split(":")
    spec = importlib.util.find_spec(module)
    if module == "pydantic" and spec is not None:
        import pydantic

        spec = spec if pydantic.VERSION.startswith("2.") else None
    if spec is None:
        print(dist)
PY
)
if [[ -n $missing ]]; then
    if [[ ! -d $WHEELS ]]; then
        echo "bench/gpu.sh: this interpreter lacks $missing and there is no $WHEELS/;" \
            "run bench/gpu.sh --prepare where PyPI is reachable and copy $WHEELS/ here" >&2
        exit 2
    fi
    rm -rf "$SITE" && mkdir -p "$SITE"
    "$PYTHON" - "$WHEELS" "$SITE" $missing <<'PY'
import pathlib
import sys
import zipfile

wheels, site, wanted = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
for dist in wanted:
    found = sorted(wheels.glob(dist.replace("-", "_") + "-*.whl"))
    if not found:
        sys.exit(f"bench/gpu.sh: no wheel of {dist} in {wheels}/; run bench/gpu.sh --prepare")
    with zipfile.ZipFile(found[-1]) as wheel:  # a wheel is a zip of what site-packages holds
        wheel.extractall(site)
    print(f"using {found[-1].name}")
PY
    export PYTHONPATH="$PWD/$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
exec timeout 480 "$PYTHON" -m bench.gpu "$@"
