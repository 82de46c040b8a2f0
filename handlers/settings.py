"""The worker's configuration: the connection, worker and render sections, from `K8S_EE_*` variables.

The connection section is shared with the gateway (both use one Redis, one key prefix, one
queue). The worker never reads the web section, so it never holds the webhook secrets or
the admin token; the code hosts' credentials are a section of their own
(`providers.hosts.settings`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings

from handlers.keys import Keys
from handlers.render.models import RenderSettings
from handlers.status_webhooks.config import Subscribers
from providers.settings import SECTION_CONFIG, NameList, load_sections, split_commas

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


def sentinel_address(address: str) -> tuple[str, int]:
    """`host:port` (`[v6]:port` too) of one sentinel."""
    host, sep, port = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("each sentinel must be host:port")
    return host, int(port)


class ConnectionSettings(BaseSettings):
    """Where both processes meet: Redis, the key prefix, the queue; and how long records are kept."""

    model_config = SECTION_CONFIG

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

    @property
    def retention_ms(self) -> int:
        return int(self.delivery_retention_hours * 3_600_000)

    @property
    def keys(self) -> Keys:
        return Keys(self.key_prefix)


class WorkerSettings(BaseSettings):
    """How the worker runs: where environments go, what it deploys, its limits and its subscribers."""

    model_config = SECTION_CONFIG

    # `kubernetes` or `directory`; unset: kubernetes when in a cluster or a kubeconfig exists.
    cluster: Literal["kubernetes", "directory"] | None = None
    kubeconfig: str | None = None
    directory: Path = Path("var/environments")
    # A k8s-ee.yaml for repositories whose host cannot be read (no credentials).
    default_config: Path | None = None

    deploy_drafts: bool = False
    deploy_forks: bool = False
    # A reconcile that runs longer is abandoned by arq and retried (also after a worker dies).
    reconcile_timeout: int = Field(300, ge=5, le=3600)
    reconcile_max_tries: int = Field(8, ge=1, le=100)
    lock_ttl: int = Field(30, ge=3, le=600)
    max_jobs: int = Field(10, ge=1, le=1000)
    # How often an idle worker looks at the queue (arq's default, 0.5 s, would add up to
    # a second to every webhook: an event job and then its reconcile job each wait for it).
    poll_delay: float = Field(0.02, gt=0, le=5)

    # Where this worker serves its own Prometheus metrics (handlers/metrics.py); port 0: nowhere.
    worker_metrics_host: str = "127.0.0.1"
    worker_metrics_port: int = Field(9090, ge=0, le=65535)

    # Outbound status webhooks (handlers/status_webhooks): a JSON list of subscribers.
    status_webhooks: Subscribers = []
    # Let them reach loopback, private, link-local and metadata addresses (receivers inside the network).
    status_webhooks_allow_private: bool = False
    # How long a failing delivery is retried, from its first attempt, before it is dead.
    status_webhooks_retry_hours: float = Field(24.0, gt=0, le=168)

    @field_validator("default_config")
    @classmethod
    def config_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"{value} is not a file")
        return value


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    connection: ConnectionSettings
    worker: WorkerSettings
    render: RenderSettings

    @property
    def keys(self) -> Keys:
        return self.connection.keys


def load_worker_config(**overrides: object) -> WorkerConfig:
    """Read every section; `SettingsError` names each bad variable, never its value."""
    sections = load_sections(
        {"connection": ConnectionSettings, "worker": WorkerSettings, "render": RenderSettings}, overrides
    )
    return WorkerConfig(**sections)  # type: ignore[arg-type]
