"""What the renderer is told: which change to render, and how this gateway's cluster is set up."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import NoDecode

from providers.events import Provider
from providers.settings import KeyValues, Section, key_values, split_commas

_DNS_NAME = re.compile(r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_REGISTRY = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*$")


def _cidr(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise ValueError(f"not a CIDR block: {value!r} ({exc})") from None
    return value


Cidr = Annotated[str, AfterValidator(_cidr)]
Port = Annotated[int, Field(ge=1, le=65535)]


class RenderTarget(BaseModel):
    """The change to render. Times are given, never read from a clock, so rendering is repeatable."""

    model_config = ConfigDict(frozen=True)

    provider: Provider
    # `owner/repo`, or the full GitLab path with subgroups.
    repository: str = Field(min_length=3, pattern=r"^[^/\s]+(/[^/\s]+)+$")
    number: int = Field(ge=0)
    head_sha: str = Field(pattern=r"^[0-9a-f]{7,64}$")
    head_ref: str
    # A full image reference that overrides everything else (the CI that built it says which).
    image: str | None = Field(default=None, pattern=r"^[^\s]+$")
    created_at: AwareDatetime
    now: AwareDatetime
    # What the app sees as APP_VERSION; the short commit SHA when not given.
    app_version: str | None = None
    # Preserved until then: the namespace is labelled `preserve=true` (handlers.preserve).
    preserved_until: AwareDatetime | None = None

    @field_validator("head_sha", mode="before")
    @classmethod
    def _lower_sha(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value


class RenderSettings(Section):
    """How this gateway's cluster is set up (gateway configuration, not the repository's).

    The render section of the worker's settings: every field is `K8S_EE_<FIELD>`; maps are
    `key=value,…` and lists comma-separated."""

    # Preview URLs are https://{namespace}.{preview_domain}.
    preview_domain: str = "preview.localhost"
    ingress_class: str = "traefik"
    # Applied to every Ingress (e.g. cert-manager's cluster-issuer); a repository's
    # `ingress.annotations` add to them but cannot override them.
    ingress_annotations: KeyValues = Field(default_factory=dict)
    # When set, the Ingress gets TLS for its host with this Secret; `{namespace}` is
    # replaced, for one certificate per environment.
    ingress_tls_secret: str | None = None
    ingress_controller_namespace: str = "kube-system"
    ingress_controller_labels: KeyValues = Field(
        default_factory=lambda: {"app.kubernetes.io/name": "traefik"}
    )
    observability_namespace: str = "observability"
    prometheus_labels: KeyValues = Field(default_factory=lambda: {"app.kubernetes.io/name": "prometheus"})
    # Labels a Prometheus Operator needs on a ServiceMonitor to pick it up (e.g. `release`).
    service_monitor_labels: KeyValues = Field(default_factory=dict)
    dns_namespace: str = "kube-system"
    # Egress to the Kubernetes API server, which the database operators' pods need
    # (CloudNativePG's instance manager, the MongoDB agent). Set the API server's
    # endpoint addresses (`kubectl get endpoints kubernetes -n default`) as /32s to
    # narrow it; the default lets the namespace reach those ports anywhere.
    api_server_cidrs: Annotated[tuple[Cidr, ...], NoDecode] = ("0.0.0.0/0",)
    api_server_ports: Annotated[tuple[Port, ...], NoDecode] = (443, 6443)
    # Namespaces of the operators that must reach their pods (CloudNativePG polls
    # each instance on 8000, the MinIO operator the tenant on 9000); None: no policy.
    cnpg_operator_namespace: str | None = "cnpg-system"
    minio_operator_namespace: str | None = "minio-operator"
    # Where the app image is when k8s-ee.yaml has no image.repository:
    # {image_registry}/{repository}/{projectId}, lower-cased.
    image_registry: str = "ghcr.io"
    # The tiny image the app's wait-for-<db> init containers run (sh and nc).
    wait_image: str = "busybox:1.36"
    dashboard_url: str | None = None

    @field_validator(
        "ingress_annotations",
        "ingress_controller_labels",
        "prometheus_labels",
        "service_monitor_labels",
        mode="before",
    )
    @classmethod
    def _key_values(cls, value: object) -> object:
        return key_values(value)

    @field_validator("api_server_cidrs", "api_server_ports", mode="before")
    @classmethod
    def _lists(cls, value: object) -> object:
        return split_commas(value)

    @field_validator(
        "cnpg_operator_namespace", "minio_operator_namespace", "ingress_tls_secret", "dashboard_url"
    )
    @classmethod
    def _blank_is_unset(cls, value: str | None) -> str | None:
        return value if value is None or value.strip() else None

    @field_validator("preview_domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        value = value.strip().lower().rstrip(".")
        if not _DNS_NAME.fullmatch(value):
            raise ValueError(f"not a DNS name: {value!r}")
        return value

    @field_validator("image_registry")
    @classmethod
    def _registry(cls, value: str) -> str:
        value = value.strip().rstrip("/").lower()
        if not _REGISTRY.fullmatch(value):
            raise ValueError(f"not an image registry (host[:port][/path]): {value!r}")
        return value
