"""The worker's configuration: the connection, worker, render, command and admission sections, from
`K8S_EE_*` variables.

The connection section is shared with the gateway (both use one Redis, one key prefix, one
queue). The worker never reads the web section, so it never holds the webhook secrets or
the admin token; the code hosts' credentials are a section of their own
(`providers.hosts.settings`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from handlers.connection import ConnectionSettings
from handlers.keys import Keys
from handlers.lifecycle.settings import LifecycleSettings
from handlers.render.models import RenderSettings
from handlers.status_webhooks.config import Subscribers
from providers.settings import Section, load_sections


class WorkerSettings(Section):
    """How the worker runs: where environments go, what it deploys, its limits and its subscribers."""

    # `kubernetes` or `directory`; unset: kubernetes when in a cluster or a kubeconfig exists.
    cluster: Literal["kubernetes", "directory"] | None = None
    kubeconfig: str | None = None
    directory: Path = Path("var/environments")
    # A k8s-ee.yaml for repositories whose host cannot be read (no credentials).
    default_config: Path | None = None

    # Forks are never deployed without an approval (`/deploy-preview` from someone with write access).
    deploy_drafts: bool = False
    # A reconcile that runs longer is abandoned by arq and retried (also after a worker dies).
    reconcile_timeout: int = Field(300, ge=5, le=3600)
    reconcile_max_tries: int = Field(8, ge=1, le=100)
    lock_ttl: int = Field(30, ge=3, le=600)
    # Seconds from an environment's apply until it must be up (the app at the new revision and
    # available, every database ready); past it, the environment is failed with what it waited on.
    ready_timeout: int = Field(600, ge=5, le=86_400)
    # Least seconds between two progress updates of a deploying environment (its comment).
    ready_progress_interval: float = Field(5.0, ge=0, le=600)
    # A redeploy that would change nothing is skipped (handlers/cluster/digest.py); after this many
    # hours since the last whole apply it applies everything anyway, putting right what was changed
    # by hand in the namespace. 0: every redeploy applies everything.
    reapply_hours: float = Field(6.0, ge=0, le=8760)
    max_jobs: int = Field(10, ge=1, le=1000)
    # Seconds an environment's report waits after the state change that queued it, so that the
    # changes of one reconcile (queued, then deploying) are reported once, as the latest.
    report_delay: float = Field(0.25, ge=0, le=10)
    # How often a worker looks at the queue when nothing woke it: each job written wakes a
    # waiting worker at once (handlers/queue_worker.py), and it wakes by itself when the next
    # deferred job comes due. This bounds only what no wake-up announced (a job a dead worker
    # held, once arq gives it up).
    poll_delay: float = Field(2.0, gt=0, le=60)

    # Where this worker serves its own Prometheus metrics (handlers/metrics.py); port 0: nowhere.
    worker_metrics_host: str = "127.0.0.1"
    worker_metrics_port: int = Field(9090, ge=0, le=65535)

    # Outbound status webhooks (handlers/status_webhooks): a JSON list of subscribers.
    status_webhooks: Subscribers = []
    # Let them reach loopback, private, link-local and metadata addresses (receivers inside the network).
    status_webhooks_allow_private: bool = False
    # How long a failing delivery is retried, from its first attempt, before it is dead.
    status_webhooks_retry_hours: float = Field(24.0, gt=0, le=168)

    @property
    def reapply_after(self) -> timedelta | None:
        return timedelta(hours=self.reapply_hours) if self.reapply_hours else None

    @field_validator("default_config")
    @classmethod
    def config_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"{value} is not a file")
        return value


class CommandSettings(Section):
    """Chat commands in pull request comments (handlers.chat) and what they may ask for."""

    # How long a host's answer about a user's permission is trusted before it is asked again.
    permission_cache_seconds: int = Field(60, ge=0, le=3600)
    # `/preserve` without hours, and the most hours `/preserve <hours>` may ask for.
    preserve_hours: int = Field(48, ge=1, le=8760)
    preserve_max_hours: int = Field(168, ge=1, le=8760)
    # Environments of one repository preserved at once.
    max_preserved_per_repository: int = Field(3, ge=0, le=1000)

    @model_validator(mode="after")
    def _default_within_max(self) -> CommandSettings:
        if self.preserve_hours > self.preserve_max_hours:
            raise ValueError("K8S_EE_PRESERVE_HOURS must not exceed K8S_EE_PRESERVE_MAX_HOURS")
        return self


class AdmissionSettings(Section):
    """How many environments may be awake at once (handlers.admission); 0 is no limit."""

    max_environments: int = Field(0, ge=0, le=100_000)
    max_environments_per_repository: int = Field(0, ge=0, le=100_000)
    # Hibernated environments hold no slot unless this is set.
    admission_count_hibernated: bool = False
    # Environments that may wait for a slot; past it a deploy is refused (and says why).
    admission_queue_size: int = Field(100, ge=1, le=100_000)

    @property
    def limited(self) -> bool:
        return bool(self.max_environments or self.max_environments_per_repository)


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    connection: ConnectionSettings
    worker: WorkerSettings
    render: RenderSettings
    commands: CommandSettings
    admission: AdmissionSettings
    # Idle hibernation, TTLs, the sweeps, activity and wake routing (handlers/lifecycle).
    lifecycle: LifecycleSettings

    @property
    def keys(self) -> Keys:
        return self.connection.keys


def load_worker_config(**overrides: object) -> WorkerConfig:
    """Read every section; `SettingsError` names each bad variable, never its value."""
    sections = load_sections(
        {
            "connection": ConnectionSettings,
            "worker": WorkerSettings,
            "render": RenderSettings,
            "commands": CommandSettings,
            "admission": AdmissionSettings,
            "lifecycle": LifecycleSettings,
        },
        overrides,
    )
    return WorkerConfig(**sections)  # type: ignore[arg-type]
