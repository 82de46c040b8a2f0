"""The resource types the test API server serves, as the real API server names them."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import KW_ONLY, dataclass
from typing import Literal

# How a kind's metadata.name is validated: most kinds take a DNS-1123 subdomain, namespaces a
# DNS-1123 label and services a DNS-1035 label (it becomes a DNS name under the namespace).
NameRule = Literal["subdomain", "label", "dns1035"]

# Groups whose list items the real server returns without kind/apiVersion (built-in types);
# custom resources keep them on every item.
BUILTIN_GROUPS = frozenset({"", "apps", "networking.k8s.io", "rbac.authorization.k8s.io"})

VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update"]


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    kind: str
    plural: str
    _: KW_ONLY
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    # True when status is a subresource: writes to the main resource leave status alone.
    has_status: bool = True
    name_rule: NameRule = "subdomain"

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version(self) -> tuple[str, str]:
        return (self.group, self.version)

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def qualified(self) -> str:
        """The name used in error messages: `configmaps`, `deployments.apps`."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def builtin(self) -> bool:
        return self.group in BUILTIN_GROUPS

    def discovery_entry(self) -> dict[str, object]:
        entry: dict[str, object] = {
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": VERBS,
        }
        if self.short_names:
            entry["shortNames"] = list(self.short_names)
        return entry


NAMESPACE = ResourceType(
    "", "v1", "Namespace", "namespaces", namespaced=False, short_names=("ns",), name_rule="label"
)

RESOURCES: tuple[ResourceType, ...] = (
    NAMESPACE,
    ResourceType("", "v1", "ConfigMap", "configmaps", short_names=("cm",), has_status=False),
    ResourceType("", "v1", "Secret", "secrets", has_status=False),
    ResourceType("", "v1", "Service", "services", short_names=("svc",), name_rule="dns1035"),
    ResourceType("", "v1", "ServiceAccount", "serviceaccounts", short_names=("sa",), has_status=False),
    ResourceType("", "v1", "ResourceQuota", "resourcequotas", short_names=("quota",)),
    ResourceType("", "v1", "LimitRange", "limitranges", short_names=("limits",), has_status=False),
    ResourceType("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", short_names=("pvc",)),
    ResourceType("", "v1", "Pod", "pods", short_names=("po",)),
    # The `kubernetes` Service's endpoints in `default` are the API server's own addresses.
    ResourceType("", "v1", "Endpoints", "endpoints", short_names=("ep",), has_status=False),
    ResourceType("apps", "v1", "Deployment", "deployments", short_names=("deploy",)),
    ResourceType("apps", "v1", "ReplicaSet", "replicasets", short_names=("rs",)),
    ResourceType("apps", "v1", "StatefulSet", "statefulsets", short_names=("sts",)),
    ResourceType(
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        "networkpolicies",
        short_names=("netpol",),
        has_status=False,
    ),
    ResourceType("networking.k8s.io", "v1", "Ingress", "ingresses", short_names=("ing",)),
    # The MongoDB operator's pods need their ServiceAccount's Role in the namespace.
    ResourceType("rbac.authorization.k8s.io", "v1", "Role", "roles", has_status=False),
    ResourceType("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", has_status=False),
    ResourceType(
        "monitoring.coreos.com",
        "v1",
        "ServiceMonitor",
        "servicemonitors",
        short_names=("smon",),
        has_status=False,
    ),
    ResourceType("postgresql.cnpg.io", "v1", "Cluster", "clusters"),
    ResourceType(
        "mongodbcommunity.mongodb.com", "v1", "MongoDBCommunity", "mongodbcommunity", short_names=("mdbc",)
    ),
    ResourceType("minio.min.io", "v2", "Tenant", "tenants", short_names=("tenant",)),
)


def by_plural(group: str, version: str, plural: str) -> ResourceType | None:
    for resource in RESOURCES:
        if (resource.group, resource.version, resource.plural) == (group, version, plural):
            return resource
    return None


def by_kind(kind: str) -> list[ResourceType]:
    """Every served type with this kind (`Deployment`) or qualified name (`deployments.apps`)."""
    return [r for r in RESOURCES if kind in (r.kind, r.qualified, r.plural)]


def group_versions(served: Collection[ResourceType] = RESOURCES) -> dict[str, list[str]]:
    """Served API groups (core excluded) with their versions, in registry order."""
    groups: dict[str, list[str]] = {}
    for resource in RESOURCES:
        if (
            resource in served
            and resource.group
            and resource.version not in groups.setdefault(resource.group, [])
        ):
            groups[resource.group].append(resource.version)
    return groups
