"""The worker's configuration: the gateway's settings plus the cluster and rendering ones.

Same `K8S_EE_` prefix, same rule: a bad value stops start-up naming the variable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import NoDecode

from gateway.settings import Settings, _split, settings_error
from handlers.render import RenderSettings
from handlers.status_webhooks.config import Subscribers

KeyValues = Annotated[dict[str, str], NoDecode]


def _pairs(value: object) -> object:
    """`a=b,c=d` as a dict (labels and annotations in one environment variable)."""
    if not isinstance(value, str):
        return value
    pairs: dict[str, str] = {}
    for item in value.split(","):
        if not item.strip():
            continue
        key, sep, val = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"expected key=value pairs separated by commas, got {item!r}")
        pairs[key.strip()] = val.strip()
    return pairs


class WorkerSettings(Settings):
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

    preview_domain: str = "preview.localhost"
    ingress_class: str = "traefik"
    ingress_annotations: KeyValues = {}
    ingress_tls_secret: str | None = None
    ingress_controller_namespace: str = "kube-system"
    ingress_controller_labels: KeyValues = {"app.kubernetes.io/name": "traefik"}
    observability_namespace: str = "observability"
    prometheus_labels: KeyValues = {"app.kubernetes.io/name": "prometheus"}
    image_registry: str = "ghcr.io"
    api_server_cidrs: Annotated[list[str], NoDecode] = ["0.0.0.0/0"]
    dashboard_url: str | None = None

    # Outbound status webhooks (handlers/status_webhooks): a JSON list of subscribers.
    status_webhooks: Subscribers = []
    # Let them reach loopback, private, link-local and metadata addresses (receivers inside the network).
    status_webhooks_allow_private: bool = False
    # How long a failing delivery is retried, from its first attempt, before it is dead.
    status_webhooks_retry_hours: float = Field(24.0, gt=0, le=168)

    @field_validator("ingress_annotations", "ingress_controller_labels", "prometheus_labels", mode="before")
    @classmethod
    def key_values(cls, value: object) -> object:
        return _pairs(value)

    @field_validator("api_server_cidrs", mode="before")
    @classmethod
    def cidr_list(cls, value: object) -> object:
        return _split(value)

    @field_validator("default_config")
    @classmethod
    def config_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"{value} is not a file")
        return value

    def render_settings(self) -> RenderSettings:
        return RenderSettings(
            preview_domain=self.preview_domain,
            ingress_class=self.ingress_class,
            ingress_annotations=self.ingress_annotations,
            ingress_tls_secret=self.ingress_tls_secret,
            ingress_controller_namespace=self.ingress_controller_namespace,
            ingress_controller_labels=self.ingress_controller_labels,
            observability_namespace=self.observability_namespace,
            prometheus_labels=self.prometheus_labels,
            image_registry=self.image_registry,
            api_server_cidrs=tuple(self.api_server_cidrs),
            dashboard_url=self.dashboard_url,
        )


def load_worker_settings(**overrides: object) -> WorkerSettings:
    try:
        settings = WorkerSettings(**overrides)  # type: ignore[arg-type]
        settings.render_settings()
    except ValidationError as exc:
        raise settings_error(exc) from None
    return settings
