"""The connection section: where the web process and the worker meet (Redis, keys, queue).

Its own module, so that the web process reads it without loading the worker's settings
(and what they import: the renderer, the status webhooks' HTTP client).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator

from handlers.keys import Keys
from providers.settings import NameList, Section, split_commas

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


def sentinel_address(address: str) -> tuple[str, int]:
    """`host:port` (`[v6]:port` too) of one sentinel."""
    host, sep, port = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("each sentinel must be host:port")
    return host, int(port)


class ConnectionSettings(Section):
    """Where both processes meet: Redis, the key prefix, the queue; and how long records are kept."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    # Overrides the URL's password (so it can come from a Secret of its own, unescaped).
    redis_password: SecretStr | None = None
    # Redis Sentinel: `host:port` of each sentinel. When set, the master is the one they name
    # `redis_sentinel_master`; the URL then gives only the scheme (TLS), user, password and db.
    redis_sentinels: NameList = []
    redis_sentinel_master: str = Field("mymaster", min_length=1)
    # The sentinels' own password (`requirepass` on the sentinels), when they have one.
    redis_sentinel_password: SecretStr | None = None
    # Seconds to wait on Redis before answering 503: well inside the providers' 10 s timeout.
    redis_timeout: float = Field(2.0, gt=0, le=9)
    key_prefix: str = Field("k8s-ee:", min_length=1)
    queue_name: str = Field("k8s-ee:queue", min_length=1)
    log_level: LogLevel = "INFO"
    # How long the delivery log, the dedup keys and the delivery-to-reconcile links are kept.
    delivery_retention_hours: float = Field(72.0, gt=0)
    # How long a destroyed environment's records (its status, its tombstone) are kept.
    environment_retention_hours: float = Field(720.0, gt=0)
    # The gateway is not ready (/readyz 503) when no worker has written its heartbeat for this
    # long; workers write it every quarter of it (handlers/heartbeat.py).
    worker_heartbeat_timeout: float = Field(60.0, ge=4, le=3600)

    @field_validator("redis_url")
    @classmethod
    def redis_url_scheme(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("redis_sentinels", mode="before")
    @classmethod
    def split_sentinels(cls, value: object) -> object:
        return split_commas(value)

    @field_validator("redis_sentinels")
    @classmethod
    def check_sentinels(cls, value: list[str]) -> list[str]:
        for address in value:
            sentinel_address(address)
        return value

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        return [sentinel_address(address) for address in self.redis_sentinels]

    @field_validator("environment_retention_hours")
    @classmethod
    def outlives_deliveries(cls, value: float, info: ValidationInfo) -> float:
        # A redelivery is accepted again once its dedup key is gone: the tombstone must still be there.
        deliveries = info.data.get("delivery_retention_hours")
        if deliveries is not None and value < deliveries:
            raise ValueError("must be at least K8S_EE_DELIVERY_RETENTION_HOURS")
        return value

    @property
    def retention_ms(self) -> int:
        return int(self.delivery_retention_hours * 3_600_000)

    @property
    def environment_retention_ms(self) -> int:
        return int(self.environment_retention_hours * 3_600_000)

    @property
    def keys(self) -> Keys:
        return Keys(self.key_prefix)
