"""Put a registry version in service: promotion, ``set-default`` and rollback.

Order of :meth:`ServiceControl.activate`: (1) make sure TorchServe has the version registered
(from its archive in the registry) with workers ready; (2) write the version to the cache
namespace key in Redis; (3) make it TorchServe's default; (4) record the event in the registry.
Writing the namespace before switching means no verdict of the previous model is served from the
cache once the new one answers; a crash between (2) and (3) costs cache misses only, and
running the same command again completes it. Torch-free.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import redis
import structlog

from schemas.errors import AigisError
from schemas.settings import Settings
from serving.client.management import ManagementClient, ModelNotFoundError
from training.registry import Action, Registry, RegistryError, ServiceEvent, check_id

log = structlog.get_logger(__name__)

T = TypeVar("T")


class ServiceChangeError(AigisError):
    """The version in service could not be changed; the message says what state it is in."""


class ServiceControl:
    """Changes the version in service; every change goes through :meth:`activate`."""

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        management: ManagementClient,
        cache: redis.Redis | None = None,
    ) -> None:
        self._settings = settings
        self._registry = registry
        self._management = management
        self._cache = cache or _redis(settings)
        self._name = settings.serving.model_name

    def served_versions(self) -> list[str]:
        """Versions of the model registered in TorchServe (empty when the model is not there)."""
        try:
            return [v.version for v in self._management.versions(self._name)]
        except ModelNotFoundError:
            return []

    def default_version(self) -> str | None:
        try:
            return self._management.default_version(self._name)
        except ModelNotFoundError:
            return None

    @property
    def redis(self) -> redis.Redis:
        """The Redis client of the cache namespace (the canary's state lives beside it)."""
        return self._cache

    def unregister(self, version: str) -> None:
        """Remove ``version`` from TorchServe (not from the registry)."""
        self._management.unregister(self._name, check_id(version))
        log.info("unregistered", version=version)

    def namespace(self) -> str | None:
        """The version the cache namespace key names now (None when unset)."""
        key = self._settings.redis.namespace_key
        value: object = self._guarded("read", lambda: self._cache.get(key))
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)

    def load(self, version: str) -> None:
        """Have TorchServe load ``version`` from its archive in the registry, if not loaded yet."""
        check_id(version)
        record = self._registry.get(version)
        if version in self.served_versions():
            return
        if not record.archive or not Path(record.archive).is_file():
            raise RegistryError(
                f"version {version} has no archive in the registry, so TorchServe cannot load "
                "it; register its .mar with `aigis model register`"
            )
        log.info("registering", version=version, archive=record.archive)
        self._management.register(record.archive, synchronous=True)

    def activate(self, version: str, *, action: Action, note: str | None = None) -> ServiceEvent:
        """Serve ``version`` from now on (see the module docstring for the order of steps).

        Raises RegistryError, before anything is contacted, for a version that is not a valid id.
        """
        check_id(version)
        previous = self.default_version()
        self.load(version)
        key = self._settings.redis.namespace_key
        self._guarded("write", lambda: self._cache.set(key, version))
        self._management.set_default(self._name, version)
        event = ServiceEvent(
            action=action, version=version, previous=previous, namespace=version, note=note
        )
        self._registry.log_event(event)
        log.info("in_service", action=action, version=version, previous=previous)
        return event

    def rollback(self) -> ServiceEvent:
        """Restore the version that was in service before the current one."""
        target = self._registry.rollback_target()
        if target is None:
            raise RegistryError(
                "there is no earlier version to roll back to: the registry has recorded at most "
                "one version in service"
            )
        return self.activate(target, action="rollback")

    def prune(self, keep: int) -> list[str]:
        """Unregister registry versions other than the last ``keep`` in service; return them."""
        wanted = set(self._registry.service_stack()[-keep:])
        ours = {record.version for record in self._registry.versions()}
        default = self.default_version()
        removed = []
        for version in self.served_versions():
            if version in wanted or version == default or version not in ours:
                continue  # versions loaded by hand, unknown to the registry, are left alone
            self._management.unregister(self._name, version)
            removed.append(version)
        if removed:
            log.info("unregistered_old_versions", versions=removed)
        return removed

    def _guarded(self, action: str, call: Callable[[], T]) -> T:
        return redis_guarded(
            call,
            ServiceChangeError,
            f"could not {action} the cache namespace in Redis at {self._settings.redis.url}",
            "nothing was switched in TorchServe",
        )


def redis_guarded(
    call: Callable[[], T], error: type[AigisError], problem: str, consequence: str
) -> T:
    """``call()``; a Redis failure raises ``error`` saying ``problem``, why, ``consequence`` and
    what to do."""
    try:
        return call()
    except (redis.RedisError, OSError) as exc:
        raise error(
            f"{problem} ({type(exc).__name__}: {exc}); {consequence}. Start Redis "
            "(`aigis dev status`) and run the command again"
        ) from None


def _redis(settings: Settings) -> redis.Redis:
    password = settings.redis.password
    return redis.Redis.from_url(
        settings.redis.url,
        password=password.get_secret_value() if password else None,
        socket_timeout=5.0,
        socket_connect_timeout=5.0,
    )
