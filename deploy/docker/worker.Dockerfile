# Worker and sink image: CPU-only, no torch. Build from the repository root:
#   docker build -f deploy/docker/worker.Dockerfile -t aigis-worker .
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 AIGIS_LOG_FORMAT=json
RUN useradd --create-home --uid 10001 aigis
WORKDIR /opt/aigis

COPY pyproject.toml README.md ./
COPY aigis ./aigis
COPY schemas ./schemas
COPY serving ./serving
COPY training ./training
COPY worker ./worker
# The base install has no torch: the worker, the sink and the reviewer never import it.
RUN pip install ".[s3]"

USER aigis
ENV AIGIS_STATE_DIR=/home/aigis/state
EXPOSE 9108
ENTRYPOINT ["aigis"]
CMD ["worker"]
