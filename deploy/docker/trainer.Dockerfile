# The retraining image (the retrain CronJob): trains, evaluates, builds and registers archives.
# Build from the repository root:
#   docker build -f deploy/docker/trainer.Dockerfile -t aigis-trainer .
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
# s3: the label store lives in object storage; serve: the archiver that packs a new version.
RUN uv sync --frozen --no-editable --no-cache --extra train --extra serve --extra s3
ENV PATH=/opt/aigis/.venv/bin:$PATH

USER aigis
ENV AIGIS_STATE_DIR=/home/aigis/state
ENTRYPOINT ["aigis"]
CMD ["retrain"]
