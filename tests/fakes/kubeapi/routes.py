"""REST paths of the real API server, parsed into the resource, namespace and name they address."""

from __future__ import annotations

from dataclasses import dataclass

from .kinds import ResourceType, by_plural

SUBRESOURCES = ("status",)


@dataclass(frozen=True)
class Route:
    resource: ResourceType
    namespace: str | None  # None: cluster-scoped, or a list across all namespaces
    name: str | None  # None: the collection
    subresource: str = ""


def parse(path: str) -> Route | None:
    """`/api/v1/namespaces/ns/configmaps/x`, `/apis/apps/v1/deployments`, ... or None."""
    parts = [part for part in path.split("/") if part]
    if parts[:2] == ["api", "v1"]:
        group, version, rest = "", "v1", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    if not rest:
        return None

    # /namespaces/{ns}/status addresses the namespace itself; /namespaces/{ns}/{plural}/... its content.
    if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in SUBRESOURCES:
        namespace: str | None = rest[1]
        rest = rest[2:]
    else:
        namespace = None

    resource = by_plural(group, version, rest[0])
    if resource is None or len(rest) > 3:
        return None
    if namespace is not None and not resource.namespaced:
        return None
    name = rest[1] if len(rest) >= 2 else None
    subresource = rest[2] if len(rest) == 3 else ""
    if subresource and subresource not in SUBRESOURCES:
        return None
    if name is not None and resource.namespaced and namespace is None:
        return None  # a namespaced object is only addressed inside its namespace
    if subresource == "status" and not resource.has_status:
        return None
    return Route(resource, namespace, name, subresource)
