"""What the renderer is told: which change to render, and how this gateway's cluster is set up."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal

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


def _ipv4_cidr(value: str) -> str:
    if ipaddress.ip_network(value, strict=True).version != 4:
        raise ValueError(f"not an IPv4 CIDR block: {value!r} (the internet rule is 0.0.0.0/0)")
    return value


def _ipv4(value: str) -> str:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        raise ValueError(f"not an IPv4 address: {value!r}") from None
    return value


def _kubernetes_version(value: str) -> str:
    match = re.fullmatch(r"v?1\.([0-9]+)(\.[0-9]+.*)?", value.strip())
    if not match:
        raise ValueError(f"not a Kubernetes version like 1.29: {value!r}")
    return f"1.{int(match.group(1))}"


Cidr = Annotated[str, AfterValidator(_cidr)]
Ipv4Cidr = Annotated[str, AfterValidator(_cidr), AfterValidator(_ipv4_cidr)]
Port = Annotated[int, Field(ge=1, le=65535)]
# Pod Security Standards levels, strictest last.
PodSecurityLevel = Literal["privileged", "baseline", "restricted"]
POD_SECURITY_LEVELS: tuple[PodSecurityLevel, ...] = ("privileged", "baseline", "restricted")

# What the internet egress rule leaves out: the private ranges (SPEC 2), link-local (the cloud
# metadata service at 169.254.169.254 hands out node credentials) and carrier-grade NAT, which
# some clouds and CNIs use for nodes and pods.
EGRESS_EXCEPT: tuple[str, ...] = (
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "169.254.0.0/16",
    "100.64.0.0/10",
)
# The preStop hook's `sleep` action is on by default from Kubernetes 1.30 (beta).
SLEEP_ACTION_SINCE = 30


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
    # NodeLocal DNSCache's link-local address (e.g. 169.254.20.10), when the cluster runs it:
    # DNS to it is let through although link-local addresses are otherwise refused.
    node_local_dns: Annotated[str, AfterValidator(_ipv4)] | None = None
    # The internet egress rule is 0.0.0.0/0 except these.
    egress_except: Annotated[tuple[Ipv4Cidr, ...], NoDecode] = EGRESS_EXCEPT
    # Egress to the Kubernetes API server, which the database operators' pods need
    # (CloudNativePG's instance manager, the MongoDB agent). Unset: the addresses of the
    # `kubernetes` Service's endpoints, read by the worker at start-up (as /32s, with the
    # ports below); empty: no such rule.
    api_server_cidrs: Annotated[tuple[Cidr, ...] | None, NoDecode] = None
    api_server_ports: Annotated[tuple[Port, ...], NoDecode] = (443, 6443)
    # Pod Security Admission labels of every namespace (`pod-security.kubernetes.io/*`):
    # enforce baseline, which every operator's pods meet; warn and audit at restricted.
    pod_security_enforce: PodSecurityLevel = "baseline"
    pod_security_warn: PodSecurityLevel = "restricted"
    pod_security_audit: PodSecurityLevel = "restricted"
    pod_security_version: Annotated[str, Field(pattern=r"^(latest|v1\.[0-9]+)$")] = "latest"
    # The cluster's Kubernetes minor version (`1.29`); unset: asked of the API server at start-up
    # (the directory back-end assumes a current one). Older than 1.30, the app's preStop hook
    # runs `sleep` in the container instead of using the hook's sleep action.
    kubernetes_version: Annotated[str, AfterValidator(_kubernetes_version)] | None = None
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
    # The ClusterRole the MongoDB agent's ServiceAccount is bound to in each namespace (what its
    # readiness probe needs). A ClusterRole the installation provides (the Helm chart makes it)
    # rather than a Role the worker writes: writing a Role with rules the worker does not hold
    # itself would need `escalate`; binding this one role needs only `bind` on its name.
    mongodb_cluster_role: str = Field("k8s-ee-mongodb-database", min_length=1, max_length=253)

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

    @field_validator("api_server_cidrs", "api_server_ports", "egress_except", mode="before")
    @classmethod
    def _lists(cls, value: object) -> object:
        return split_commas(value)

    @field_validator(
        "cnpg_operator_namespace",
        "minio_operator_namespace",
        "ingress_tls_secret",
        "dashboard_url",
        "node_local_dns",
        "kubernetes_version",
    )
    @classmethod
    def _blank_is_unset(cls, value: str | None) -> str | None:
        return value if value is None or value.strip() else None

    @property
    def kubernetes_minor(self) -> int | None:
        return int(self.kubernetes_version.split(".")[1]) if self.kubernetes_version else None

    @property
    def sleep_action(self) -> bool:
        """Whether the cluster runs the preStop hook's `sleep` action (unknown: assume so)."""
        minor = self.kubernetes_minor
        return minor is None or minor >= SLEEP_ACTION_SINCE

    def for_cluster(
        self, *, api_server_addresses: tuple[str, ...] | None, kubernetes_version: str | None
    ) -> RenderSettings:
        """These settings with what the worker learnt from its cluster at start-up filling in
        what was left unset (an explicit setting always wins)."""
        update: dict[str, object] = {}
        if self.api_server_cidrs is None and api_server_addresses is not None:
            update["api_server_cidrs"] = tuple(
                str(ipaddress.ip_network(address)) for address in api_server_addresses
            )
        if self.kubernetes_version is None and kubernetes_version is not None:
            update["kubernetes_version"] = _kubernetes_version(kubernetes_version)
        return self.model_copy(update=update) if update else self

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
