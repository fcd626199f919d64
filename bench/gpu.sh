#!/usr/bin/env bash
# The handler's code path on a GPU (bench/gpu.py: JPEG bytes to scores, base fused model), for a
# machine that has PyTorch and torchvision but not this project's other dependencies at its
# versions, and no network.
#
#   bench/gpu.sh --prepare      here, with PyPI reachable: the wheels of $PACKAGES below at the
#                               versions of uv.lock (pydantic, pydantic-settings, pybase64, and
#                               transformers with tokenizers, huggingface-hub, safetensors, regex
#                               and httpx2), for CPython 3.12 on x86-64 Linux, into .gpu-wheels/,
#                               about 22 MB; copy it to the GPU host with the repository
#   bench/gpu.sh [--device auto|cuda|cpu] [--quick] [--json PATH] [bench.gpu's options]
#                               there: unpacks each of those wheels the interpreter lacks or has
#                               at another version into .gpu-site/, puts it first on the path,
#                               and runs bench.gpu, stopped after 8 minutes
#
# PYTHON names the interpreter (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
WHEELS=.gpu-wheels
SITE=.gpu-site
# module name, distribution name: what the handler's path imports beyond torch's own stack.
# transformers and what it needs at the versions it needs them (a GPU host's image has its own).
PACKAGES="pydantic:pydantic pydantic_core:pydantic-core annotated_types:annotated-types \
typing_inspection:typing-inspection pydantic_settings:pydantic-settings dotenv:python-dotenv \
pybase64:pybase64 transformers:transformers huggingface_hub:huggingface-hub \
tokenizers:tokenizers safetensors:safetensors regex:regex httpx2:httpx2 httpcore2:httpcore2 \
truststore:truststore"

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
        --platform manylinux_2_27_x86_64 --platform manylinux_2_28_x86_64 \
        --dest "$WHEELS" "${pins[@]}"
    ls -l "$WHEELS"
    exit 0
fi

# Unpack into $SITE the wheel of each package the interpreter lacks, or has at another version
# than the wheel's (the GPU host's own transformers may be older than this code is written for).
rm -rf "$SITE" && mkdir -p "$SITE"
"$PYTHON" - "$WHEELS" "$SITE" $PACKAGES <<'PY'
import importlib.metadata
import importlib.util
import pathlib
import sys
import zipfile

wheels, site = pathlib.Path(sys.argv[1]), sys.argv[2]
by_dist = {}  # normalised distribution name -> its wheel in $WHEELS
for wheel in sorted(wheels.glob("*.whl")) if wheels.is_dir() else ():
    by_dist[wheel.name.split("-")[0].lower()] = wheel
for entry in sys.argv[3:]:
    module, dist = entry.split(":")
    try:
        installed = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        installed = None
    wheel = by_dist.get(dist.replace("-", "_").lower())
    wanted = wheel.name.split("-")[1] if wheel else None
    if installed and importlib.util.find_spec(module) and wanted in {None, installed}:
        continue
    if wheel is None:
        sys.exit(
            f"bench/gpu.sh: this interpreter lacks {dist} and {wheels}/ has no wheel of it; "
            f"run bench/gpu.sh --prepare where PyPI is reachable and copy {wheels}/ here"
        )
    with zipfile.ZipFile(wheel) as archive:  # a wheel is a zip of what site-packages holds
        archive.extractall(site)
    print(f"using {wheel.name}")
PY
export PYTHONPATH="$PWD/$SITE${PYTHONPATH:+:$PYTHONPATH}"
exec timeout 480 "$PYTHON" -m bench.gpu "$@"
