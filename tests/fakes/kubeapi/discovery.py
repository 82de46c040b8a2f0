"""Discovery documents, enough for `kubernetes.dynamic.DynamicClient` to find every served kind."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from .kinds import RESOURCES, ResourceType, group_versions

VERSION = {
    "major": "1",
    "minor": "31",
    "gitVersion": "v1.31.0",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2024-08-13T00:00:00Z",
    "goVersion": "go1.22.5",
    "compiler": "gc",
    "platform": "linux/amd64",
}


def _resource_list(group: str, version: str, served: Collection[ResourceType]) -> dict[str, Any]:
    resources: list[dict[str, Any]] = []
    for resource in RESOURCES:
        if resource.group_version != (group, version) or resource not in served:
            continue
        resources.append(resource.discovery_entry())
        if resource.has_status:
            resources.append(
                {
                    "name": f"{resource.plural}/status",
                    "singularName": "",
                    "namespaced": resource.namespaced,
                    "kind": resource.kind,
                    "verbs": ["get", "patch", "update"],
                }
            )
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": resources,
    }


def _group(name: str, versions: list[str]) -> dict[str, Any]:
    listed = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": listed, "preferredVersion": listed[0]}


def document(
    path: str, server_address: str, served: Collection[ResourceType] = RESOURCES
) -> dict[str, Any] | None:
    """The discovery document served at `path`, or None when `path` is not a discovery path.

    Only `served` kinds are listed: a group whose CRDs are not installed is not served at all."""
    parts = [part for part in path.split("/") if part]
    groups = group_versions(served)
    if parts == ["version"]:
        return dict(VERSION)
    if parts == ["api"]:
        return {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
        }
    if parts == ["api", "v1"]:
        return _resource_list("", "v1", served)
    if parts == ["apis"]:
        return {
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [_group(name, versions) for name, versions in groups.items()],
        }
    if len(parts) == 2 and parts[0] == "apis" and parts[1] in groups:
        return {"kind": "APIGroup", "apiVersion": "v1", **_group(parts[1], groups[parts[1]])}
    if len(parts) == 3 and parts[0] == "apis" and parts[2] in groups.get(parts[1], []):
        return _resource_list(parts[1], parts[2], served)
    return None
