# The retraining image (the retrain CronJob): trains, evaluates, builds and registers archives.
# Build from the repository root:
#   docker build -f deploy/docker/trainer.Dockerfile -t aigis-trainer:0.1.0 .
# Two stages, as worker.Dockerfile. bookworm: Debian's Java 17 is there (the archiver needs none,
# but the images share one base).
FROM python:3.11.14-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 UV_PROJECT_ENVIRONMENT=/opt/aigis/.venv UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy
RUN pip install "uv==0.13.9"
WORKDIR /src
COPY pyproject.toml uv.lock README.md ./
# s3: the label store lives in object storage; serve: the archiver that packs a new version.
RUN uv sync --frozen --no-editable --no-cache --no-install-project \
    --extra train --extra serve --extra s3
COPY aigis ./aigis
COPY schemas ./schemas
COPY serving ./serving
COPY training ./training
COPY worker ./worker
RUN uv sync --frozen --no-editable --no-cache --extra train --extra serve --extra s3

FROM python:3.11.14-slim-bookworm

RUN useradd --create-home --uid 10001 aigis
COPY --from=build /opt/aigis/.venv /opt/aigis/.venv
ENV PATH=/opt/aigis/.venv/bin:$PATH PYTHONUNBUFFERED=1 AIGIS_LOG_FORMAT=json \
    AIGIS_STATE_DIR=/home/aigis/state
USER 10001
WORKDIR /home/aigis
# A batch job, not a service: a cycle that hangs is bounded by the CronJob's activeDeadlineSeconds.
HEALTHCHECK NONE
ENTRYPOINT ["aigis"]
CMD ["retrain"]
