"""Start, read and finish a canary (:mod:`schemas.canary`): ``aigis model canary``.

Starting one loads the candidate in TorchServe beside the default (from its archive in the
registry), clears its comparison tally and writes the canary's state to Redis, where every worker
reads it within ``worker.canary_refresh_s``. Starting it again for the same version changes its
share and keeps its tally. Promoting makes the candidate the version in service exactly as
``aigis model set-default`` does (cache namespace, then TorchServe's default, then the registry's
event), then removes the canary. Aborting removes the canary, waits until every worker has seen
that, and unregisters the candidate from TorchServe unless asked to keep it; its cached answers
expire with the cache's TTL. Torch-free.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import structlog

from aigis.promote import ServiceControl, redis_guarded
from schemas.canary import CanaryError, CanaryState, Comparison, canary_key, stats_key
from schemas.settings import Settings
from training.registry import ServiceEvent, check_id

log = structlog.get_logger(__name__)

T = TypeVar("T")

KEEP_STATS_S = 7 * 24 * 3600
"""How long a finished canary's tally stays readable in Redis."""


class CanaryControl:
    """The canary of ``settings.serving.model_name``; every change goes through here."""

    def __init__(self, settings: Settings, control: ServiceControl) -> None:
        self._settings = settings
        self._control = control
        self._redis = control.redis
        self._key = canary_key(settings.redis.key_prefix)

    def state(self) -> CanaryState | None:
        raw = self._guarded("read", lambda: self._redis.get(self._key))
        return None if raw is None else CanaryState.from_json(raw)

    def start(self, version: str, percent: float) -> CanaryState:
        """Have ``version`` answer ``percent`` per cent of the cache misses."""
        check_id(version)
        if not 0.0 < percent <= 100.0:
            raise CanaryError(f"--percent {percent} is not in (0, 100]; give e.g. --percent 5")
        running = self.state()
        if running is not None and running.version != version:
            raise CanaryError(
                f"version {running.version} is already the canary at {running.percent:g}%; "
                "finish it with `aigis model canary promote` or `abort` first"
            )
        default = self._control.default_version()
        if default is None:
            raise CanaryError(
                "TorchServe serves no default version to compare with; put one in service "
                "with `aigis model set-default` first"
            )
        if default == version:
            raise CanaryError(f"version {version} is the default already: nothing to compare")
        self._control.load(version)
        if running is None:
            state = CanaryState.now(version, percent, default)
            stats = stats_key(self._settings.redis.key_prefix, version)
            self._guarded("clear the tally of", lambda: self._redis.delete(stats))
        else:
            state = CanaryState(version, percent, running.default, running.started_at)
        self._guarded("write", lambda: self._redis.set(self._key, state.to_json()))
        log.info("canary_started", version=version, percent=percent, default=default)
        return state

    def status(self) -> dict[str, Any]:
        """The canary, what TorchServe serves, and how both versions compared so far."""
        state = self._running()
        stats = stats_key(self._settings.redis.key_prefix, state.version)
        raw = self._guarded("read the tally of", lambda: self._redis.hgetall(stats))
        return {
            "candidate": state.version,
            "percent": state.percent,
            "default": self._control.default_version(),
            "compared_with": state.default,
            "started_at": state.started_at.isoformat(timespec="seconds"),
            "candidate_served": state.version in self._control.served_versions(),
            **Comparison.from_hash(raw or {}).summary(),
        }

    def promote(self) -> ServiceEvent:
        """Put the candidate in service (as ``set-default`` does), then end the canary."""
        state = self._running()
        stats = stats_key(self._settings.redis.key_prefix, state.version)
        raw = self._guarded("read the tally of", lambda: self._redis.hgetall(stats))
        summary = Comparison.from_hash(raw or {}).summary()
        note = f"canary at {state.percent:g}% since {state.started_at:%Y-%m-%d %H:%M}: {summary}"
        event = self._control.activate(state.version, action="promote", note=note)
        self._end(state)
        log.info("canary_promoted", version=state.version, previous=event.previous)
        return event

    def abort(self, *, keep: bool = False) -> CanaryState | None:
        """End the canary; unregister the candidate once the workers have left it (unless
        ``keep``, or when it has become the default meanwhile). A state that cannot be read is
        removed all the same (None: no candidate is known to unregister)."""
        try:
            state = self._running()
        except CanaryError:
            if self._guarded("read", lambda: self._redis.exists(self._key)) == 0:
                raise  # there is no canary at all
            self._guarded("remove", lambda: self._redis.delete(self._key))
            log.warning("canary_state_removed", key=self._key, reason="unreadable")
            return None
        self._end(state)
        if not keep and state.version != self._control.default_version():
            # Workers re-read the canary this often; after it none sends to the candidate.
            time.sleep(self._settings.worker.canary_refresh_s + 0.5)
            if state.version in self._control.served_versions():
                self._control.unregister(state.version)
        log.info("canary_aborted", version=state.version, kept=keep)
        return state

    def _running(self) -> CanaryState:
        state = self.state()
        if state is None:
            raise CanaryError(
                "no canary is running; start one with `aigis model canary VERSION --percent P`"
            )
        return state

    def _end(self, state: CanaryState) -> None:
        stats = stats_key(self._settings.redis.key_prefix, state.version)

        def end() -> None:
            pipe = self._redis.pipeline(transaction=True)
            pipe.delete(self._key)
            pipe.expire(stats, KEEP_STATS_S)
            pipe.execute()

        self._guarded("remove", end)

    def _guarded(self, action: str, call: Callable[[], T]) -> T:
        return redis_guarded(
            call,
            CanaryError,
            f"could not {action} the canary in Redis at {self._settings.redis.url}",
            "the canary is as it was",
        )
