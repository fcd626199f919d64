# Worker, sink and reviewer image: CPU-only, no torch. Build from the repository root:
#   docker build -f deploy/docker/worker.Dockerfile -t aigis-worker:0.1.0 .
# Two stages: the first installs the versions of uv.lock with uv; the second copies only the
# environment, so neither uv nor pip's caches reach the image that runs.
# bookworm, not the floating "slim" (trixie): the TorchServe image needs Debian's Java 17.
FROM python:3.11.14-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 UV_PROJECT_ENVIRONMENT=/opt/aigis/.venv UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy
RUN pip install "uv==0.13.9"
WORKDIR /src
# Dependencies first (their own layer, rebuilt only when the lock changes), then aigis itself.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-editable --no-cache --no-install-project --extra s3
COPY aigis ./aigis
COPY schemas ./schemas
COPY serving ./serving
COPY training ./training
COPY worker ./worker
RUN uv sync --frozen --no-editable --no-cache --extra s3

FROM python:3.11.14-slim-bookworm

RUN useradd --create-home --uid 10001 aigis
COPY --from=build /opt/aigis/.venv /opt/aigis/.venv
ENV PATH=/opt/aigis/.venv/bin:$PATH PYTHONUNBUFFERED=1 AIGIS_LOG_FORMAT=json \
    AIGIS_STATE_DIR=/home/aigis/state
USER 10001
WORKDIR /home/aigis
EXPOSE 9108
# The worker's /healthz: 503 when its loop has not gone round for two minutes. The sink serves
# it on AIGIS_STORE__METRICS_PORT instead (compose overrides this check for it).
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=4 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9108/healthz', timeout=4)"]
ENTRYPOINT ["aigis"]
CMD ["worker"]
