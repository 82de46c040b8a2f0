"""The kinds the renderer emits, where the API serves them, and the checks a manifest list must pass.

A fixed table of where each kind lives, so an apply costs no discovery. Which of the kinds
that come with an operator (its CRD) a cluster serves is asked once per worker
(handlers/cluster/discovery.py): a ServiceMonitor without the Prometheus Operator is skipped
with a warning, a database without its operator fails with the operator's name.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import copy
import re
from dataclasses import dataclass
from typing import Any

from handlers.cluster import ObjectRef, PermanentClusterError


@dataclass(frozen=True, slots=True)
class Resource:
    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool = True
    # Deleting and creating it again loses nothing (no data): what to do when a field of it
    # cannot change in place (a first edition's Deployment with another selector).
    recreatable: bool = True
    # The operator whose CRD serves the kind, when it is not built in.
    operator: str | None = None
    # Without that operator the object is left out with a warning (True) or the deploy fails.
    optional: bool = False

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str, name: str) -> str:
        """The object's REST path."""
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced:
            return f"{base}/namespaces/{namespace}/{self.plural}/{name}"
        return f"{base}/{self.plural}/{name}"


NAMESPACE = Resource("", "v1", "Namespace", "namespaces", namespaced=False)
SECRET = Resource("", "v1", "Secret", "secrets")

RESOURCES: tuple[Resource, ...] = (
    NAMESPACE,
    Resource("", "v1", "ResourceQuota", "resourcequotas"),
    Resource("", "v1", "LimitRange", "limitranges"),
    SECRET,
    Resource("", "v1", "ConfigMap", "configmaps"),
    Resource("", "v1", "Service", "services"),
    Resource("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", recreatable=False),
    # The MongoDB agent's identity and what it may read (the operator expects them in the namespace).
    Resource("", "v1", "ServiceAccount", "serviceaccounts"),
    Resource("rbac.authorization.k8s.io", "v1", "Role", "roles"),
    Resource("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings"),
    Resource("apps", "v1", "Deployment", "deployments"),
    Resource("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies"),
    Resource("networking.k8s.io", "v1", "Ingress", "ingresses"),
    Resource(
        "monitoring.coreos.com",
        "v1",
        "ServiceMonitor",
        "servicemonitors",
        operator="the Prometheus Operator",
        optional=True,
    ),
    Resource(
        "postgresql.cnpg.io",
        "v1",
        "Cluster",
        "clusters",
        recreatable=False,
        operator="the CloudNativePG operator",
    ),
    Resource(
        "mongodbcommunity.mongodb.com",
        "v1",
        "MongoDBCommunity",
        "mongodbcommunity",
        recreatable=False,
        operator="the MongoDB Community operator",
    ),
    Resource("minio.min.io", "v2", "Tenant", "tenants", recreatable=False, operator="the MinIO operator"),
)
# What the worker reads besides what it applies: its readiness checks, its start-up facts.
POD = Resource("", "v1", "Pod", "pods")
PERSISTENT_VOLUME_CLAIM = next(r for r in RESOURCES if r.kind == "PersistentVolumeClaim")
ENDPOINTS = Resource("", "v1", "Endpoints", "endpoints")


def missing_operator(resource: Resource) -> str:
    """`the CloudNativePG operator is not installed (no postgresql.cnpg.io/v1 Cluster)`."""
    return (
        f"{resource.operator or 'its operator'} is not installed (no {resource.api_version} {resource.kind})"
    )


_BY_API_KIND = {(r.api_version, r.kind): r for r in RESOURCES}

# A DNS-1123 subdomain: what every kind above accepts as a name. Checked here too because the
# directory back-end makes file names of them.
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def resource_for(api_version: str, kind: str) -> Resource:
    found = _BY_API_KIND.get((api_version, kind))
    if found is None:
        raise PermanentClusterError(f"{kind} ({api_version}) is not a kind this gateway applies")
    return found


def check_namespace_name(namespace: str) -> None:
    if len(namespace) > 63 or not _NAMESPACE.fullmatch(namespace):
        raise PermanentClusterError(f"{namespace!r} is not a namespace name (a DNS-1123 label)")


@dataclass(frozen=True, slots=True)
class Planned:
    """One manifest, checked: where it goes and what it is."""

    ref: ObjectRef
    resource: Resource
    manifest: dict[str, Any]


def plan(namespace: str, manifests: list[dict[str, Any]]) -> list[Planned]:
    """Check the manifests before anything is sent, and place each in `namespace`.

    The first must be the Namespace itself; every other object must be of a known namespaced
    kind, in that namespace (or none given), and appear once. Answers copies: the
    caller's manifests are not changed.
    """
    check_namespace_name(namespace)
    if not manifests:
        raise PermanentClusterError("nothing to apply: the manifest list is empty")
    planned: list[Planned] = []
    seen: set[tuple[str, str, str]] = set()
    for index, original in enumerate(manifests):
        manifest = copy.deepcopy(original)
        api_version, kind = str(manifest.get("apiVersion") or ""), str(manifest.get("kind") or "")
        metadata = manifest.get("metadata")
        if not isinstance(metadata, dict):
            raise PermanentClusterError(f"manifest {index} ({kind or 'no kind'}) has no metadata")
        name = str(metadata.get("name") or "")
        resource = resource_for(api_version, kind)
        if index == 0:
            if resource is not NAMESPACE or name != namespace:
                raise PermanentClusterError(f"the first manifest must be Namespace {namespace}")
        elif not resource.namespaced:
            raise PermanentClusterError(f"{kind} {name} is cluster-scoped; only the namespace may be")
        else:
            given = metadata.get("namespace")
            if given not in (None, "", namespace):
                raise PermanentClusterError(f"{kind} {name} is for namespace {given}, not {namespace}")
            metadata["namespace"] = namespace
        if len(name) > 253 or not _NAME.fullmatch(name):
            raise PermanentClusterError(f"{kind} {name!r}: the name is not a DNS-1123 subdomain")
        ref = ObjectRef(api_version=api_version, kind=kind, name=name)
        if ref.key in seen:
            raise PermanentClusterError(f"{ref} appears twice in the manifests")
        seen.add(ref.key)
        planned.append(Planned(ref, resource, manifest))
    return planned


def secret_values(manifests: list[dict[str, Any]]) -> list[str]:
    """Every value held in the Secrets among `manifests`, encoded and decoded, for redaction.

    An API error about a Secret could quote what it was sent; these strings are cut out of
    any message before it leaves the cluster module.
    """
    values: set[str] = set()
    for manifest in manifests:
        if manifest.get("kind") != "Secret":
            continue
        for encoded in (manifest.get("data") or {}).values():
            values.add(str(encoded))
            with contextlib.suppress(binascii.Error, UnicodeDecodeError):
                values.add(base64.b64decode(str(encoded), validate=True).decode("utf-8"))
        values.update(str(value) for value in (manifest.get("stringData") or {}).values())
    # Very short values would blank out ordinary words of a message.
    return sorted((value for value in values if len(value) >= 6), key=len, reverse=True)


def redact(message: str, secrets: list[str]) -> str:
    for value in secrets:
        if value in message:
            message = message.replace(value, "[redacted]")
    return message


# Guard rails come before anything that runs, and the app comes after what it uses.
_GUARD_RAILS = frozenset({"ResourceQuota", "LimitRange", "NetworkPolicy"})
_LAST = frozenset({"Ingress", "ServiceMonitor"})


def phases(namespace: str, planned: list[Planned]) -> list[list[Planned]]:
    """The plan in waves whose members can be applied at once, in an order that keeps the
    namespace's guarantees: the namespace; its quota, limits and network policies (so no pod
    ever runs unconfined); credentials, databases and the app's config and Service; then the
    app's Deployment, Ingress and ServiceMonitor."""
    waves: list[list[Planned]] = [[planned[0]], [], [], []]
    app = f"{namespace}-app"
    for item in planned[1:]:
        if item.ref.kind in _GUARD_RAILS:
            waves[1].append(item)
        elif item.ref.kind in _LAST or (item.ref.kind == "Deployment" and item.ref.name == app):
            waves[3].append(item)
        else:
            waves[2].append(item)
    return [wave for wave in waves if wave]
