# TorchServe with the detector archive. Build from the repository root after `aigis export`:
#   aigis export --model runs/detector --output model-store --version 1
#   docker build -f deploy/docker/torchserve.Dockerfile --build-arg MODEL_STORE=model-store -t aigis-torchserve .
# For GPU nodes, build on an image with CUDA 12 runtime libraries (the PyPI torch wheel brings
# its own CUDA libraries, so the slim base works with the NVIDIA container runtime).
FROM python:3.11-slim

ARG MODEL_STORE=model-store
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 AIGIS_LOG_FORMAT=json \
    UV_PROJECT_ENVIRONMENT=/opt/aigis/.venv UV_PYTHON_DOWNLOADS=never UV_COMPILE_BYTECODE=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
    && rm -rf /var/lib/apt/lists/*
RUN pip install "uv==0.13.9" && useradd --create-home --uid 10001 aigis
WORKDIR /opt/aigis

COPY pyproject.toml uv.lock README.md ./
COPY aigis ./aigis
COPY schemas ./schemas
COPY serving ./serving
COPY training ./training
COPY worker ./worker
# Inference dependencies only (the versions of uv.lock): no training, plotting or data packages.
RUN uv sync --frozen --no-editable --no-cache --extra serve
ENV PATH=/opt/aigis/.venv/bin:$PATH
COPY ${MODEL_STORE} /opt/aigis/model-store

USER aigis
ENV AIGIS_STATE_DIR=/home/aigis/state
EXPOSE 8080 8081 8082
ENTRYPOINT ["aigis", "serve", "start", "--model-store", "/opt/aigis/model-store", "--foreground"]
