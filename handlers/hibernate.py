"""Hibernation and wake as transformations of the rendered manifests: pure, like the renderer.

A hibernated environment keeps every object and all its data (PVCs stay); what runs is scaled
to zero:

- every Deployment (the app, Redis, MariaDB) to `replicas: 0`, with the count it ran before in
  the annotation `k8s-ee/replicas-before-hibernation`; waking restores exactly that count
  (`kubectl scale` included), not the rendered one;
- each CloudNativePG `Cluster` through the operator's declarative hibernation
  (`cnpg.io/hibernation: "on"`): the operator deletes its pods and keeps its volumes. It does
  so only for a cluster in a healthy state; an unhealthy one keeps running until it is
  healthy (see `postgres_hibernation`), and the environment says so.

The MongoDB and MinIO operators have no supported way to sleep (MongoDBCommunity refuses
`members: 0`, a MinIO Tenant's pool `servers` is immutable), so those keep running, and the
environment says so.

While the environment sleeps, and after a wake until its app is ready again, its Ingress sends
the preview host to the gateway's wake service: an ExternalName Service `{namespace}-wake`
names it (`route_to_wake`), a Service both ingress-nginx and Traefik route to (Traefik with
`allowExternalNameServices`; see the README). The Service stays once made; only the Ingress's
backend moves, so switching back costs one patch and no pruning.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from handlers import naming

CNPG_HIBERNATION = "cnpg.io/hibernation"
CNPG_API = "postgresql.cnpg.io/"
ANNOTATION_REPLICAS = "k8s-ee/replicas-before-hibernation"
ANNOTATION_HIBERNATED_AT = "k8s-ee/hibernated-at"
# What the operators cannot put to sleep, by kind: they keep running while the rest sleeps.
CANNOT_SLEEP = {"MongoDBCommunity": "MongoDB", "Tenant": "MinIO"}
CNPG_HEALTHY = "Cluster in healthy state"
CNPG_HIBERNATION_CONDITION = "cnpg.io/hibernation"

Manifest = dict[str, Any]


@dataclass(frozen=True, slots=True)
class WakeRoute:
    """The gateway's wake service as an ExternalName Service reaches it."""

    host: str
    port: int


def wake_service_name(namespace: str) -> str:
    return f"{namespace}-wake"


def deployments(manifests: list[Manifest]) -> list[str]:
    return [str(m["metadata"]["name"]) for m in manifests if m.get("kind") == "Deployment"]


def hibernate(
    manifests: list[Manifest],
    *,
    replicas: Mapping[str, int] | None = None,
    hibernated_at: datetime | None = None,
    route: WakeRoute | None = None,
) -> list[Manifest]:
    """Everything that can sleep at zero. `replicas`: what each Deployment ran before (its
    rendered count when not given), kept to be restored."""
    result = copy.deepcopy(manifests)
    for manifest in result:
        kind = manifest.get("kind")
        metadata = manifest.setdefault("metadata", {})
        if kind == "Deployment":
            spec = manifest.setdefault("spec", {})
            before = (replicas or {}).get(str(metadata.get("name")), spec.get("replicas", 1))
            metadata.setdefault("annotations", {})[ANNOTATION_REPLICAS] = str(before)
            spec["replicas"] = 0
        elif kind == "Cluster" and str(manifest.get("apiVersion", "")).startswith(CNPG_API):
            metadata.setdefault("annotations", {})[CNPG_HIBERNATION] = "on"
        elif kind == "Namespace" and hibernated_at is not None:
            metadata.setdefault("annotations", {})[ANNOTATION_HIBERNATED_AT] = naming.timestamp(hibernated_at)
    return route_to_wake(result, route) if route is not None else result


def restore(manifests: list[Manifest], replicas: Mapping[str, int]) -> list[Manifest]:
    """Awake, each Deployment at the count it ran before hibernation (the rendered one if unknown)."""
    result = copy.deepcopy(manifests)
    for manifest in result:
        if manifest.get("kind") == "Deployment":
            name = str(manifest["metadata"]["name"])
            if name in replicas and replicas[name] > 0:
                manifest["spec"]["replicas"] = replicas[name]
    return result


def with_wake_service(manifests: list[Manifest], route: WakeRoute | None) -> list[Manifest]:
    """The environment's ExternalName Service to the wake service, before its Ingress (so the
    route can move to it at once). Nothing without an Ingress or without a wake service."""
    if route is None:
        return manifests
    ingress = _ingress(manifests)
    if ingress is None:
        return manifests
    namespace = str(ingress["metadata"]["namespace"])
    name = wake_service_name(namespace)
    if any(m.get("kind") == "Service" and m["metadata"]["name"] == name for m in manifests):
        return manifests
    service: Manifest = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {**ingress["metadata"].get("labels", {}), "app.kubernetes.io/component": "wake"},
        },
        "spec": {
            "type": "ExternalName",
            "externalName": route.host,
            # ingress-nginx sends to targetPort, Traefik to port: the same number serves both.
            # The name must not start with `https` (Traefik would speak TLS to it).
            "ports": [{"name": "http", "port": route.port, "targetPort": route.port, "protocol": "TCP"}],
        },
    }
    result = list(manifests)
    result.insert(result.index(ingress), service)
    return result


def route_to_wake(manifests: list[Manifest], route: WakeRoute) -> list[Manifest]:
    """Every path of the Ingress to the wake Service (added if missing); the host and TLS stay."""
    result = with_wake_service(copy.deepcopy(manifests), route)
    ingress = _ingress(result)
    if ingress is None:
        return result
    name = wake_service_name(str(ingress["metadata"]["namespace"]))
    for rule in ingress.get("spec", {}).get("rules", []):
        for path in (rule.get("http") or {}).get("paths", []):
            path["backend"] = {"service": {"name": name, "port": {"number": route.port}}}
    return result


def routed_to_wake(ingress: Mapping[str, Any]) -> bool:
    """Whether a live Ingress sends its host to the wake service."""
    namespace = str((ingress.get("metadata") or {}).get("namespace") or "")
    for rule in (ingress.get("spec") or {}).get("rules") or []:
        for path in (rule.get("http") or {}).get("paths") or []:
            service = (path.get("backend") or {}).get("service") or {}
            if service.get("name") == wake_service_name(namespace):
                return True
    return False


def keeps_running(manifests: list[Manifest]) -> list[str]:
    """The databases that stay up while the environment sleeps (their operators cannot scale to zero)."""
    return [CANNOT_SLEEP[str(m["kind"])] for m in manifests if str(m.get("kind")) in CANNOT_SLEEP]


def postgres_hibernation(cluster: Mapping[str, Any] | None) -> str | None:
    """What a CloudNativePG Cluster does with its hibernation annotation: None when it hibernates
    (or has), else why it does not yet. The operator defers hibernating a cluster that is not in
    a healthy state and has no hibernation condition yet (older operators silently, newer ones
    with the condition's reason `WaitingForHealthy`); it goes ahead once the cluster is healthy."""
    if cluster is None:
        return None
    status = cluster.get("status") or {}
    condition = next(
        (
            c
            for c in status.get("conditions") or []
            if isinstance(c, Mapping) and c.get("type") == CNPG_HIBERNATION_CONDITION
        ),
        None,
    )
    phase = str(status.get("phase") or "")
    if condition is not None and condition.get("reason") != "WaitingForHealthy":
        return None  # hibernated, or deleting its pods: it proceeds whatever the phase
    if phase == CNPG_HEALTHY:
        return None
    return (
        "PostgreSQL keeps running for now: CloudNativePG hibernates a cluster only once it is healthy "
        f"(it is: {phase or 'not reporting a phase yet'})"
    )


def _ingress(manifests: list[Manifest]) -> Manifest | None:
    return next((m for m in manifests if m.get("kind") == "Ingress"), None)
