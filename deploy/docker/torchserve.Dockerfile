# TorchServe with the detector archive. Build from the repository root after `aigis export`:
#   aigis export --model runs/detector --output model-store --version 1
#   docker build -f deploy/docker/torchserve.Dockerfile --build-arg MODEL_STORE=model-store \
#     -t aigis-torchserve:0.1.0 .
# For GPU nodes the PyPI torch wheel brings its own CUDA libraries, so the slim base works with
# the NVIDIA container runtime. Two stages, as worker.Dockerfile; bookworm for Debian's Java 17.
FROM python:3.11.14-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 UV_PROJECT_ENVIRONMENT=/opt/aigis/.venv UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy
RUN pip install "uv==0.13.9"
WORKDIR /src
COPY pyproject.toml uv.lock README.md ./
# Inference dependencies only (the versions of uv.lock): no training, plotting or data packages.
RUN uv sync --frozen --no-editable --no-cache --no-install-project --extra serve
COPY aigis ./aigis
COPY schemas ./schemas
COPY serving ./serving
COPY training ./training
COPY worker ./worker
RUN uv sync --frozen --no-editable --no-cache --extra serve

FROM python:3.11.14-slim-bookworm

ARG MODEL_STORE=model-store
RUN apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 aigis
COPY --from=build /opt/aigis/.venv /opt/aigis/.venv
COPY ${MODEL_STORE} /opt/aigis/model-store
ENV PATH=/opt/aigis/.venv/bin:$PATH PYTHONUNBUFFERED=1 AIGIS_LOG_FORMAT=json \
    AIGIS_STATE_DIR=/home/aigis/state HF_HUB_OFFLINE=1
USER 10001
WORKDIR /home/aigis
EXPOSE 8080 8081 8082
# TorchServe's own health: unhealthy while the model has fewer live workers than it asked for.
HEALTHCHECK --interval=20s --timeout=5s --start-period=300s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/ping', timeout=4)"]
ENTRYPOINT ["aigis", "serve", "start", "--model-store", "/opt/aigis/model-store", "--foreground"]
