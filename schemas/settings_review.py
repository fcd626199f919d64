"""The review console's settings group (``AIGIS_REVIEW__``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr

from schemas.settings_env import Group


class ReviewSettings(Group):
    database_url: SecretStr | None = None
    """The console's queue database as an SQLAlchemy URL (``postgresql+psycopg://user:pw@host/db``
    for several console replicas); unset: SQLite at ``<state_dir>/review/console.db``."""
    group_id: str = "aigis-review-console"
    """Consumer group that feeds the console's queue from ``topics.review``."""
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 8300
    lease_s: Annotated[float, Field(gt=0)] = 300.0
    """How long an item stays with the reviewer who opened it before it returns to the queue."""
    publish_delay_s: Annotated[float, Field(ge=0)] = 15.0
    """A decision waits this long in the outbox before it is published: an undo within it
    publishes nothing."""
    session_hours: Annotated[float, Field(gt=0)] = 12.0
    """How long a login lasts."""
    secure_cookies: bool = False
    """Mark cookies ``Secure`` (only sent over HTTPS); set it whenever the console is behind TLS."""
    session_timeout_ms: Annotated[int, Field(ge=6_000)] = 10_000

    def url_in(self, state_dir: Path) -> str:
        """The database URL: ``database_url``, else SQLite under ``state_dir``."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite:///{state_dir / 'review' / 'console.db'}"
