"""What the rendered objects run: the pods each one makes (the operators' included), and its
volumes and Services, as the namespace's LimitRange and ResourceQuota count them (SPEC 2).

- A Deployment: `replicas` pods of its template; while a RollingUpdate rolls, `maxSurge` more
  (the app: one surge pod); Recreate rolls with none.
- A CloudNativePG `Cluster`: `instances` pods of the init container `bootstrap-controller` and
  the `postgres` container, both with `spec.resources`; its initdb Job's pod has the same
  resources and runs before the first instance, not beside it. A claim of `storage.size` per
  instance (and of `walStorage.size`); Services `-rw`, `-ro`, `-r`.
- A `MongoDBCommunity`: `members` pods of `mongod` and `mongodb-agent` with the init containers
  `mongod-posthook` and `mongodb-agent-readinessprobe`, each with the resources the
  `statefulSet` override gives it by name, else the operator's defaults (requests 500m / 400M,
  limits 1 / 500M); each volume claim template once per member; Service `<name>-svc`.
- A MinIO `Tenant`: per pool, `servers` pods of `minio` (the pool's resources) with the
  operator's `sidecar` and init container `validate-arguments` (`sideCars.resources`, else
  none); `volumesPerServer` claims per server; Services `minio`, `-hl`, `-console`.
- A PersistentVolumeClaim: its request; a Service: one.

A container's missing limits and requests are the LimitRange's (a request left out beside its
limit is the limit), as admission fills them in before the quota counts the pod; and a pod
counts by Kubernetes' effective-request rule: per resource, the larger of its containers' sum
and its largest init container.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from handlers import quota
from handlers.render.context import Manifest

# The MongoDB Community operator's own resources for the containers it adds (resourcerequirements.Defaults()).
MONGODB_DEFAULTS: Mapping[str, Any] = {
    "requests": {"cpu": "500m", "memory": "400M"},
    "limits": {"cpu": "1", "memory": "500M"},
}
MONGODB_CONTAINERS = ("mongod", "mongodb-agent")
MONGODB_INIT_CONTAINERS = ("mongod-posthook", "mongodb-agent-readinessprobe")
# Services each operator makes for one of its resources.
OPERATOR_SERVICES = {"Cluster": 3, "MongoDBCommunity": 1, "Tenant": 3}


@dataclass(frozen=True, slots=True)
class Container:
    requests_cpu_m: int
    requests_memory_mi: int
    limits_cpu_m: int
    limits_memory_mi: int


@dataclass(frozen=True, slots=True)
class Pod:
    """One kind of pod an object makes, `count` of them at its peak."""

    owner: str
    containers: tuple[Container, ...]
    init_containers: tuple[Container, ...] = ()
    count: int = 1

    def charge(self) -> quota.Need:
        """What one of these pods costs the quota (the effective-request rule)."""

        def effective(value: Callable[[Container], int]) -> int:
            return max([sum(value(c) for c in self.containers), *(value(c) for c in self.init_containers)])

        return quota.Need(
            requests_cpu_m=effective(lambda c: c.requests_cpu_m),
            requests_memory_mi=effective(lambda c: c.requests_memory_mi),
            limits_cpu_m=effective(lambda c: c.limits_cpu_m),
            limits_memory_mi=effective(lambda c: c.limits_memory_mi),
            pods=1,
        )


def container(resources: Mapping[str, Any] | None) -> Container:
    """A container's resources once the LimitRange's defaults are filled in."""
    limits = dict((resources or {}).get("limits") or {})
    requests = {**limits, **((resources or {}).get("requests") or {})}
    limits.setdefault("cpu", quota.CONTAINER_DEFAULT_CPU)
    limits.setdefault("memory", quota.CONTAINER_DEFAULT_MEMORY)
    requests.setdefault("cpu", quota.CONTAINER_DEFAULT_REQUEST_CPU)
    requests.setdefault("memory", quota.CONTAINER_DEFAULT_REQUEST_MEMORY)
    return Container(
        requests_cpu_m=quota.millicores_up(str(requests["cpu"])),
        requests_memory_mi=quota.mebibytes_up(str(requests["memory"])),
        limits_cpu_m=quota.millicores_up(str(limits["cpu"])),
        limits_memory_mi=quota.mebibytes_up(str(limits["memory"])),
    )


def _containers(items: Iterable[Any]) -> tuple[Container, ...]:
    return tuple(container(c.get("resources")) for c in items if isinstance(c, dict))


def _surge(spec: Mapping[str, Any], replicas: int) -> int:
    strategy = spec.get("strategy") or {}
    if strategy.get("type") == "Recreate":
        return 0
    surge = (strategy.get("rollingUpdate") or {}).get("maxSurge", "25%")
    if isinstance(surge, str) and surge.endswith("%"):
        return math.ceil(int(surge[:-1]) * replicas / 100)
    return int(surge)


def _name(manifest: Manifest) -> str:
    return f"{manifest['kind']}/{manifest['metadata']['name']}"


def _deployment(manifest: Manifest) -> list[Pod]:
    spec = manifest.get("spec") or {}
    replicas = int(spec.get("replicas", 1))
    pod = (spec.get("template") or {}).get("spec") or {}
    return [
        Pod(
            _name(manifest),
            _containers(pod.get("containers") or []),
            _containers(pod.get("initContainers") or []),
            count=replicas + _surge(spec, replicas),
        )
    ]


def _postgresql(manifest: Manifest) -> list[Pod]:
    spec = manifest.get("spec") or {}
    resources = spec.get("resources")
    init = spec.get("initContainerResources", resources)
    return [
        Pod(
            _name(manifest),
            (container(resources),),
            (container(init),),
            count=int(spec.get("instances", 1)),
        )
    ]


def _mongodb(manifest: Manifest) -> list[Pod]:
    spec = manifest.get("spec") or {}
    pod = (((spec.get("statefulSet") or {}).get("spec") or {}).get("template") or {}).get("spec") or {}

    def resources(field: str, names: Sequence[str]) -> tuple[Container, ...]:
        given = {c.get("name"): c.get("resources") for c in pod.get(field) or [] if isinstance(c, dict)}
        return tuple(container(given.get(name) or MONGODB_DEFAULTS) for name in names)

    return [
        Pod(
            _name(manifest),
            resources("containers", MONGODB_CONTAINERS),
            resources("initContainers", MONGODB_INIT_CONTAINERS),
            count=int(spec.get("members", 1)),
        )
    ]


def _minio(manifest: Manifest) -> list[Pod]:
    spec = manifest.get("spec") or {}
    sidecar = container((spec.get("sideCars") or {}).get("resources"))
    return [
        Pod(
            f"{_name(manifest)} pool {pool.get('name', index)}",
            (container(pool.get("resources")), sidecar),
            (sidecar,),
            count=int(pool.get("servers", 1)),
        )
        for index, pool in enumerate(spec.get("pools") or [])
    ]


_PODS = {
    ("apps/v1", "Deployment"): _deployment,
    ("postgresql.cnpg.io/v1", "Cluster"): _postgresql,
    ("mongodbcommunity.mongodb.com/v1", "MongoDBCommunity"): _mongodb,
    ("minio.min.io/v2", "Tenant"): _minio,
}


def pods(manifests: Iterable[Manifest]) -> list[Pod]:
    """Every kind of pod the manifests make, with how many at once."""
    found: list[Pod] = []
    for manifest in manifests:
        expand = _PODS.get((manifest.get("apiVersion", ""), manifest.get("kind", "")))
        if expand is not None:
            found += expand(manifest)
    return found


def _claim_size(spec: Mapping[str, Any]) -> int:
    return quota.mebibytes_up(str(((spec.get("resources") or {}).get("requests") or {}).get("storage", "0")))


def claims(manifest: Manifest) -> list[int]:
    """The volume claims one manifest makes, in MiB each."""
    kind, spec = manifest.get("kind"), manifest.get("spec") or {}
    if kind == "PersistentVolumeClaim":
        return [_claim_size(spec)]
    if kind == "Cluster":
        sizes = [
            quota.mebibytes_up(str(section["size"]))
            for section in (spec.get("storage"), spec.get("walStorage"))
            if isinstance(section, dict) and section.get("size")
        ]
        return sizes * int(spec.get("instances", 1))
    if kind == "MongoDBCommunity":
        templates = ((spec.get("statefulSet") or {}).get("spec") or {}).get("volumeClaimTemplates") or []
        return [_claim_size(t.get("spec") or {}) for t in templates] * int(spec.get("members", 1))
    if kind == "Tenant":
        return [
            _claim_size((pool.get("volumeClaimTemplate") or {}).get("spec") or {})
            for pool in spec.get("pools") or []
            for _ in range(int(pool.get("servers", 1)) * int(pool.get("volumesPerServer", 1)))
        ]
    return []


def need(manifests: Sequence[Manifest]) -> quota.Need:
    """What the manifests use at their peak: every pod (surge pods included), claim and Service."""
    total = quota.Need()
    for pod in pods(manifests):
        charge = pod.charge()
        for _ in range(pod.count):
            total += charge
    sizes = [size for manifest in manifests for size in claims(manifest)]
    services = sum(
        1 if manifest.get("kind") == "Service" else OPERATOR_SERVICES.get(str(manifest.get("kind")), 0)
        for manifest in manifests
    )
    return total + quota.Need(storage_mi=sum(sizes), pvcs=len(sizes), services=services)
