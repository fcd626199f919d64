"""All configuration of aigis, read from the environment in one place.

Every field has a default that works on one machine. Environment variables use the prefix
``AIGIS_`` and ``__`` between a group and its field, for example ``AIGIS_KAFKA__BOOTSTRAP_SERVERS``
or ``AIGIS_WORKER__BATCH_SIZE``; lists and sets are JSON, for example
``AIGIS_FETCH__FILE_ROOTS='["/data/images"]'``. Load once with :func:`load_settings` and pass the
object down.
"""

from __future__ import annotations

import os
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas import settings_env
from schemas.bands import Bands, SourceBands, resolve_bands
from schemas.settings_env import Group as _Group
from schemas.settings_env import RetentionMs
from schemas.settings_evidence import EvidenceSettings
from schemas.settings_fetch import FetchSettings
from schemas.settings_retrain import RetrainSettings
from schemas.settings_review import ReviewSettings
from schemas.settings_training import TrainingSettings

_DAY_MS = 24 * 3600 * 1000


class KafkaSettings(_Group):
    bootstrap_servers: str = "127.0.0.1:9092"
    """Comma-separated host:port list of brokers."""
    client_id: str = "aigis"
    partitions: Annotated[int, Field(ge=1)] = 4
    """Partitions of each topic that ``aigis dev up`` creates; the worker's parallelism cap."""
    replication_factor: Annotated[int, Field(ge=1)] = 1
    min_insync_replicas: Annotated[int, Field(ge=1)] | None = None
    """``min.insync.replicas`` of the topics aigis creates: copies that must hold a write before
    it is acknowledged (producers use acks=all). None keeps the broker's default. Production: 2
    with a replication factor of 3, so one broker may be lost without losing an event."""
    security_protocol: str = "PLAINTEXT"
    connect_timeout_s: Annotated[float, Field(gt=0)] = 5.0
    """How long a new client waits to reach a broker before it fails with KafkaUnavailable."""
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    stream_linger_ms: Annotated[int, Field(ge=0, le=60_000)] = 5
    """How long the stream runtime's producer (the worker's, the sink's) lets records gather
    before sending them (``linger.ms``). Every commit flushes it, so this only shapes the
    requests of a batch; lingering until the commit (1000) measured no better on the cache-hit
    replay (bench/results/2026-11-30-replay.md)."""
    stream_batch_bytes: Annotated[int, Field(ge=16 * 1024)] = 1024 * 1024
    """The stream runtime's producer batch per partition (Kafka's ``batch.size``): 1 MiB, not
    16 KiB, so a micro-batch (review items carry their images) goes out in a few requests."""
    stream_fetch_min_bytes: Annotated[int, Field(ge=1)] = 1
    """Bytes a stream consumer's fetch waits for (``fetch.min.bytes``), at most
    ``stream_fetch_max_wait_ms``. Raising it fetches a trickle of events in fewer requests, at
    the price of that wait; a backlog is fetched at once whatever the value."""
    stream_fetch_max_wait_ms: Annotated[int, Field(ge=0, le=60_000)] = 500
    """Longest a stream consumer's fetch waits for ``stream_fetch_min_bytes``
    (``fetch.max.wait.ms``)."""
    images_retention_ms: RetentionMs | None = None
    """``retention.ms`` of the images topic when aigis creates it (None: the broker's default). It
    bounds how long workers may be down or behind before unscored events are lost."""
    verdicts_retention_ms: RetentionMs | None = None
    """``retention.ms`` of the verdicts topic when aigis creates it (None: the broker's default):
    how far behind a downstream consumer may fall."""
    review_retention_ms: RetentionMs = 7 * _DAY_MS
    """``retention.ms`` of the review topic when aigis creates it: items (with their captions and
    images) older than this are deleted, reviewed or not. -1 keeps them forever."""
    pseudo_labels_retention_ms: RetentionMs = 7 * _DAY_MS
    """``retention.ms`` of the pseudo-label topic when aigis creates it: how long the sink may be
    down before confident verdicts (with captions and images) are lost to the label store."""
    dlq_retention_ms: RetentionMs = 14 * _DAY_MS
    """``retention.ms`` of the DLQ when aigis creates it: how long rejected messages (original
    bytes, inline images and captions included) stay for a person to act on."""

    @model_validator(mode="after")
    def _insync_within_replicas(self) -> KafkaSettings:
        if self.min_insync_replicas is not None and (
            self.min_insync_replicas > self.replication_factor
        ):
            raise ValueError(
                "kafka.min_insync_replicas must not exceed kafka.replication_factor: no write "
                "could ever be acknowledged"
            )
        return self


class TopicSettings(_Group):
    images: str = "aigis.images"
    verdicts: str = "aigis.verdicts"
    review: str = "aigis.review"
    review_decisions: str = "aigis.review-decisions"
    pseudo_labels: str = "aigis.pseudo-labels"
    dlq: str = "aigis.dlq"

    def all(self) -> tuple[str, ...]:
        return (
            self.images,
            self.verdicts,
            self.review,
            self.review_decisions,
            self.pseudo_labels,
            self.dlq,
        )


class RedisSettings(_Group):
    url: str = "redis://127.0.0.1:6379/0"
    password: SecretStr | None = None
    key_prefix: str = "aigis:verdict"
    ttl_seconds: Annotated[int, Field(ge=1)] = 7 * 24 * 3600
    socket_timeout_s: Annotated[float, Field(gt=0)] = 0.5
    retry_interval_s: Annotated[float, Field(gt=0)] = 5.0
    """While Redis is down, how often to try it again (and log that it is still down)."""
    override_prefix: str = "aigis:override"
    """Keys of human review labels (no expiry), which the worker reads before its cache."""

    @property
    def namespace_key(self) -> str:
        """Redis key naming the model version whose cached verdicts may be served.

        Promotion and rollback write it before they switch the model in service, so that from
        then on no event is answered from the previous model's cache entries.
        """
        return f"{self.key_prefix}:namespace"


class ServingSettings(_Group):
    inference_url: str = "http://127.0.0.1:8080"
    management_url: str = "http://127.0.0.1:8081"
    metrics_url: str = "http://127.0.0.1:8082"
    model_name: str = "detector"
    token: SecretStr | None = None
    """Inference token; when unset the client reads ``key_file`` (TorchServe writes it at start)."""
    management_token: SecretStr | None = None
    key_file: Path | None = None
    """TorchServe's key_file.json; defaults to ``<state_dir>/torchserve/key_file.json``."""
    timeout_s: Annotated[float, Field(gt=0)] = 30.0
    connect_timeout_s: Annotated[float, Field(gt=0)] = 2.0
    retries: Annotated[int, Field(ge=0)] = 3
    backoff_initial_s: Annotated[float, Field(gt=0)] = 0.2
    backoff_max_s: Annotated[float, Field(gt=0)] = 10.0
    max_connections: Annotated[int, Field(ge=1)] = 16
    """Pooled HTTP connections one client keeps to TorchServe (at least ``max_in_flight``)."""
    request_body: Literal["compact", "json"] = "compact"
    """How the worker's client sends images: ``compact`` (their own bytes, one header line of
    sizes and captions; :func:`serving.client.wire.compact_body`) or ``json`` (base64 in JSON)."""
    max_request_mb: Annotated[int, Field(ge=1)] = 64
    """TorchServe's request and response size limit; the client splits micro-batches to fit."""
    token_expiration_min: Annotated[int, Field(ge=1)] = 60
    """Lifetime of TorchServe's tokens; the client renews an expired one through the key file."""
    java_heap_mb: Annotated[int, Field(ge=128)] = 1024
    """Heap of TorchServe's JVM (-Xmx); it holds queued requests, not the model."""
    java_jit: Literal["c1", "tiered"] = "c1"
    """The JVM's just-in-time compilers: ``c1`` only (``-XX:TieredStopAtLevel=1``) or the JVM's
    default ``tiered`` (C1, then C2 for hot code). The frontend copies bytes between sockets; on
    cores it shares with the model, C2's compile threads took about half the JVM's CPU in the
    first minute of serving and kept compiling after (docs/serving.md, "The JVM")."""
    start_timeout_s: Annotated[float, Field(gt=0)] = 300.0
    """How long ``aigis serve start`` waits for every model worker to be READY."""
    stop_timeout_s: Annotated[float, Field(gt=0)] = 60.0
    """How long ``aigis serve stop`` waits after SIGTERM before it sends SIGKILL."""


class Guarantee(StrEnum):
    EXACTLY_ONCE = "exactly_once"
    AT_LEAST_ONCE = "at_least_once"


class WorkerSettings(_Group):
    group_id: str = "aigis-worker"
    batch_size: Annotated[int, Field(ge=1)] = 64
    """Events per micro-batch; a batch closes at this size or at ``batch_timeout_ms``. One batch
    is one Kafka transaction: larger batches cost the broker and the worker less per event, but
    an event waits for its whole batch."""
    batch_timeout_ms: Annotated[int, Field(ge=1)] = 100
    max_batch_bytes: Annotated[int, Field(ge=1)] = 64 * 1024 * 1024
    """A micro-batch also closes at this many bytes of events (the first event is always taken):
    with the outputs a batch makes, a worker holds about four times this in memory."""
    failures_before_isolation: Annotated[int, Field(ge=1)] = 3
    """Times a batch may fail the same way on the same offsets (or the model server fail on it)
    before it is bisected and the events at fault are dead-lettered."""
    request_items: Annotated[int, Field(ge=1)] = 8
    """Items per request to the model server; several requests of a batch run concurrently."""
    max_in_flight: Annotated[int, Field(ge=1)] = 8
    """Requests this worker process has at the model server at once: twice the archive's server
    batch (4 requests) times its server workers, so that a second server batch is queued while
    the first runs (measured: 8 in flight on batches of 4 scored 12 % more items/s than 4 in
    flight on batches of 8). Several worker processes on one server share that number."""
    guarantee: Guarantee = Guarantee.EXACTLY_ONCE
    ai_threshold: Annotated[float, Field(ge=0, le=1)] = 0.8
    """p_ai at or above this is ``ai_generated``."""
    human_threshold: Annotated[float, Field(ge=0, le=1)] = 0.2
    """p_ai at or below this is ``human``; between the two thresholds is ``needs_review``."""
    pseudo_label_confidence: Annotated[float, Field(ge=0, le=1)] = 0.8
    """A verdict becomes a pseudo-label when both its Task A and Task B confidence reach this."""
    generator_min_confidence: Annotated[float, Field(ge=0, le=1)] = 0.5
    """Below this P(generator | AI) of the likeliest generator the verdict names the generator
    ``unknown`` (the rule of :mod:`schemas.decision`)."""
    qa_sample_rate: Annotated[float, Field(ge=0, le=1)] = 0.0
    """Share of confident verdicts also sent to review as quality samples (0: none)."""
    qa_sample_rates: dict[str, Annotated[float, Field(ge=0, le=1)]] = Field(default_factory=dict)
    """The same share per source (tenant), JSON: ``{"tenant-a": 0.05}``."""
    bands_by_source: dict[str, SourceBands] = Field(default_factory=dict)
    """Bands per source, JSON: ``{"tenant-a": {"ai_threshold": 0.9}}`` (see schemas.bands)."""
    max_image_bytes: Annotated[int, Field(ge=1)] = 20 * 1024 * 1024
    """Largest image accepted, inline or by URI; a download stops as soon as it passes this."""
    metrics_port: Annotated[int, Field(ge=0, le=65535)] = 9108
    """Prometheus metrics port; 0 turns the endpoint off. Process slot ``k`` serves ``port + k``,
    so several workers on one host need no port settings of their own."""
    metrics_host: str = "127.0.0.1"
    """Address the metrics endpoint binds; ``0.0.0.0`` lets a scraper on another host in."""
    metric_sources: frozenset[str] = frozenset()
    """Producer ``source`` values that get their own ``source`` label on verdict metrics; any
    other counts as ``other`` and events without one as ``none``, so what producers send cannot
    grow the number of series."""
    drift_window: Annotated[int, Field(ge=0)] = 1000
    """Verdicts per model version and source in drift's reference window (the first this many a
    worker commits) and current window (the latest this many after those); 0 turns drift off."""
    drift_psi_threshold: Annotated[float, Field(gt=0)] = 0.2
    """Population stability index above which the drift alert fires (exported for the rule)."""
    serving_backoff_max_s: Annotated[float, Field(gt=0)] = 30.0
    fetch_concurrency: Annotated[int, Field(ge=1)] = 16
    """Image URIs of one batch loaded at the same time (what may be loaded: ``fetch``)."""
    instance_id: str | None = None
    """Names this host's workers in transactional ids (``<group>.<instance>.<slot>``); default
    the host name. Must differ between hosts and stay the same across restarts of one host."""
    slot: Annotated[int, Field(ge=0, lt=1024)] | None = None
    """This process's slot on its host (its transactional id and metrics port), fixed, e.g. a
    StatefulSet ordinal; unset, a worker claims the first free slot with a lock file under
    ``<state_dir>/worker-slots``. A fixed slot is locked too: a second process asking for it on
    the same host stops with an error. One process only: not with ``aigis worker -p N``."""
    model_refresh_s: Annotated[float, Field(gt=0)] = 5.0
    """How often to re-read the served model's version when Redis names none."""
    canary_refresh_s: Annotated[float, Field(gt=0)] = 2.0
    """How often to re-read the canary (``aigis model canary``) from Redis: a worker follows a
    canary's start, promotion or abort within this long, without a restart."""
    session_timeout_ms: Annotated[int, Field(ge=6_000)] = 10_000
    """A worker silent this long (killed, host lost) leaves the group; its partitions move on."""

    @model_validator(mode="after")
    def _bands_ordered(self) -> WorkerSettings:
        if self.human_threshold >= self.ai_threshold:
            raise ValueError("worker.human_threshold must be below worker.ai_threshold")
        for source in self.bands_by_source:
            if self.bands_for(source).human_threshold >= self.bands_for(source).ai_threshold:
                raise ValueError(f"worker.bands_by_source[{source!r}]: human >= ai threshold")
        return self

    def bands_for(self, source: str | None) -> Bands:
        """The bands that decide an event of ``source``: its own, else the worker's."""
        return resolve_bands(self, self.bands_by_source.get(source or ""))


class StoreSettings(_Group):
    url: str | None = None
    """Label store location (a directory or any fsspec URL); default ``<state_dir>/labels``."""
    keep_image_bytes: bool = False
    """Opt in to keeping the bytes of images that arrive inline (pixels) in the store, where
    retraining can read them; off, the default, keeps only labels, hashes and URIs."""
    flush_records: Annotated[int, Field(ge=1)] = 256
    flush_interval_s: Annotated[float, Field(gt=0)] = 10.0
    group_id: str = "aigis-sink"
    """Consumer group of ``aigis sink``."""
    session_timeout_ms: Annotated[int, Field(ge=6_000)] = 10_000
    """A sink silent this long (killed, host lost) leaves the group; its partitions move on."""
    compact_after: Annotated[int, Field(ge=2)] = 32
    """The sink compacts the store into one shard once this many commits are live."""
    vacuum_grace_s: Annotated[float, Field(ge=0)] = 3600.0
    """Superseded shards are deleted this long after compaction (readers may still be on them),
    and kept image bytes that no remaining record names once they are this old."""
    metrics_port: Annotated[int, Field(ge=0, le=65535)] = 9107
    """Prometheus metrics port of ``aigis sink`` (moved by ``dev.port_offset`` like the other
    local ports); 0 turns the endpoint off."""
    metrics_host: str = "127.0.0.1"
    """Address the sink's metrics endpoint binds; ``0.0.0.0`` lets a scraper on another host in."""


class DevSettings(_Group):
    """How ``aigis dev up`` runs Kafka and Redis on this machine (not used in production)."""

    port_offset: Annotated[int, Field(ge=0, le=65535 - 9108)] = 0
    """Added to every default port (Kafka broker and controller, Redis, TorchServe's three, the
    worker's and the sink's metrics) so that a second local stack runs beside the first; ports
    set explicitly are kept as given."""

    kafka_controller_port: Annotated[int, Field(ge=1, le=65535)] | None = None
    """KRaft controller listener; default: the broker's port + 1."""
    kafka_heap: str = "512m"
    """JVM heap of the local broker (-Xmx)."""
    start_timeout_s: Annotated[float, Field(gt=0)] = 120.0
    """How long a service may take to become healthy before ``up`` gives up and stops it."""
    stop_timeout_s: Annotated[float, Field(gt=0)] = 30.0
    """How long ``down`` waits after SIGTERM before it sends SIGKILL."""


class Settings(BaseSettings):
    """Everything aigis reads from its environment. Frozen: pass it down, never mutate it."""

    model_config = SettingsConfigDict(
        env_prefix="AIGIS_",
        env_nested_delimiter="__",
        frozen=True,
        extra="ignore",
    )

    state_dir: Path = Path.home() / ".local" / "state" / "aigis"
    """Where services keep logs, data, pid files, the label store and the registry."""
    cache_dir: Path = Path.home() / ".cache" / "aigis"
    """What outlives a state directory: Kafka's jars, the smoke set, Arrow copies of data sets."""
    pretrained_dir: Path | None = None
    """Local copies of pre-trained encoders for the ``base`` preset (``bert-base-uncased/``,
    ``clip-vit-base-patch32/``); unset: an offline Hugging Face cache. Never downloaded."""
    log_format: Literal["auto", "json", "console"] = "auto"
    """``json``, ``console`` or ``auto`` (console in a terminal, JSON otherwise)."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    message_version: Literal[1, 2] = 2
    """Message version written on every topic; 1 while a deployment's own consumers read only 1
    (readers here accept both)."""

    kafka: KafkaSettings = KafkaSettings()
    topics: TopicSettings = TopicSettings()
    redis: RedisSettings = RedisSettings()
    serving: ServingSettings = ServingSettings()
    worker: WorkerSettings = WorkerSettings()
    fetch: FetchSettings = FetchSettings()
    evidence: EvidenceSettings = EvidenceSettings()
    store: StoreSettings = StoreSettings()
    retrain: RetrainSettings = RetrainSettings()
    review: ReviewSettings = ReviewSettings()
    training: TrainingSettings = TrainingSettings()
    dev: DevSettings = DevSettings()

    @model_validator(mode="before")
    @classmethod
    def _check_names_and_shift_ports(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        groups = {
            n: f.default for n, f in cls.model_fields.items() if isinstance(f.default, BaseModel)
        }
        settings_env.refuse_unknown_groups(os.environ, sorted(groups))
        return settings_env.shift_default_ports(data, groups)

    @property
    def store_url(self) -> str:
        return self.store.url or str(self.state_dir / "labels")

    @property
    def registry_dir(self) -> Path:
        return self.retrain.registry_dir or self.state_dir / "registry"

    @property
    def serving_key_file(self) -> Path:
        return self.serving.key_file or self.state_dir / "torchserve" / "key_file.json"


@lru_cache(maxsize=1)
def load_settings() -> Settings:
    """Read the environment once per process."""
    return Settings()
