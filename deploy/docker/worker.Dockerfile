# Worker, sink and reviewer image: CPU-only, no torch. Build from the repository root:
#   docker build -f deploy/docker/worker.Dockerfile -t aigis-worker .
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 AIGIS_LOG_FORMAT=json \
    UV_PROJECT_ENVIRONMENT=/opt/aigis/.venv UV_PYTHON_DOWNLOADS=never UV_COMPILE_BYTECODE=1
RUN pip install "uv==0.13.9" && useradd --create-home --uid 10001 aigis
WORKDIR /opt/aigis

COPY pyproject.toml uv.lock README.md ./
COPY aigis ./aigis
COPY schemas ./schemas
COPY serving ./serving
COPY training ./training
COPY worker ./worker
# The versions of uv.lock; the base install has no torch: worker, sink and reviewer never import it.
RUN uv sync --frozen --no-editable --no-cache --extra s3
ENV PATH=/opt/aigis/.venv/bin:$PATH

USER aigis
ENV AIGIS_STATE_DIR=/home/aigis/state
EXPOSE 9108
ENTRYPOINT ["aigis"]
CMD ["worker"]
