"""The LimitRanger and ResourceQuota admission plugins, for pods, claims and services.

As on the real server, in this order:

- LimitRanger fills in a container's missing limits from the LimitRange's `default` and its
  missing requests from `defaultRequest` (a request that is missing while its limit is given
  was already set to the limit by the API's defaulting), init containers included; then it
  refuses a container or pod outside `min`/`max`, and a claim outside the claim bounds
  (`maximum storage usage per PersistentVolumeClaim is 5Gi, but request is 10Gi`).
- ResourceQuota charges what is created against every quota of the namespace, counting what
  already exists there (pods in a terminal phase do not count). A pod's charge follows
  Kubernetes' effective-request rule: per resource, the larger of its containers' sum and
  its largest init container. A pod that leaves a constrained resource unspecified is
  refused (`must specify limits.cpu for: app`), and so is one that does not fit
  (`exceeded quota: pr-quota, requested: limits.cpu=1, used: ..., limited: ...`).

Both answer 403 Forbidden, which a ReplicaSet's controller reports as its `FailedCreate`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from fractions import Fraction
from typing import Any

from . import quantities, status
from .kinds import ResourceType

Lister = Callable[[str], list[dict[str, Any]]]  # kind -> the namespace's objects of that kind

_COMPUTE = ("cpu", "memory")
_TERMINAL = ("Succeeded", "Failed")
# Object counts a quota can cap, by kind.
_COUNTED = {
    "Pod": "pods",
    "Service": "services",
    "PersistentVolumeClaim": "persistentvolumeclaims",
    "ConfigMap": "configmaps",
    "Secret": "secrets",
}


def _containers(pod: dict[str, Any], field: str) -> list[dict[str, Any]]:
    found = (pod.get("spec") or {}).get(field) or []
    return [c for c in found if isinstance(c, dict)]


def _limit_ranges(listed: Lister) -> list[dict[str, Any]]:
    return [item for lr in listed("LimitRange") for item in (lr.get("spec") or {}).get("limits") or []]


def _apply_container_defaults(pod: dict[str, Any], ranges: list[dict[str, Any]]) -> None:
    for field in ("containers", "initContainers"):
        for container in _containers(pod, field):
            resources = container.setdefault("resources", {})
            limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
            # The API's own defaulting, before any admission: a limit given without its request.
            for name, value in limits.items():
                requests.setdefault(name, value)
            for item in ranges:
                if item.get("type") != "Container":
                    continue
                for name, value in (item.get("default") or {}).items():
                    limits.setdefault(name, value)
                for name, value in (item.get("defaultRequest") or {}).items():
                    requests.setdefault(name, value)
            if limits:
                resources["limits"] = limits
            if requests:
                resources["requests"] = requests


def _value(container: dict[str, Any], which: str, name: str) -> Fraction | None:
    raw = ((container.get("resources") or {}).get(which) or {}).get(name)
    return None if raw is None else quantities.parse(raw)


def pod_charge(pod: dict[str, Any]) -> dict[str, Fraction | None]:
    """`requests.cpu`, `limits.memory`, ... of a pod by the effective-request rule; None when a
    container leaves it unspecified."""
    charge: dict[str, Fraction | None] = {}
    for which in ("requests", "limits"):
        for name in _COMPUTE:
            values = [_value(c, which, name) for c in _containers(pod, "containers")]
            inits = [_value(c, which, name) for c in _containers(pod, "initContainers")]
            if any(v is None for v in [*values, *inits]):
                charge[f"{which}.{name}"] = None
                continue
            total = sum((v for v in values if v is not None), Fraction(0))
            charge[f"{which}.{name}"] = max([total, *(v for v in inits if v is not None)])
    return charge


def _check_limit_range(
    served: ResourceType, name: str, obj: dict[str, Any], ranges: list[dict[str, Any]]
) -> None:
    kind = served.kind
    problems: list[str] = []
    for item in ranges:
        kind_of_range = item.get("type")
        if kind == "Pod" and kind_of_range == "Container":
            for container in [*_containers(obj, "containers"), *_containers(obj, "initContainers")]:
                for resource, bound in (item.get("max") or {}).items():
                    limit = _value(container, "limits", resource)
                    if limit is not None and limit > quantities.parse(bound):
                        problems.append(
                            f"maximum {resource} usage per Container is {bound}, but limit is "
                            f"{quantities.show(limit, resource)}"
                        )
                for resource, bound in (item.get("min") or {}).items():
                    request = _value(container, "requests", resource)
                    if request is not None and request < quantities.parse(bound):
                        problems.append(
                            f"minimum {resource} usage per Container is {bound}, but request is "
                            f"{quantities.show(request, resource)}"
                        )
        elif kind == "Pod" and kind_of_range == "Pod":
            charge = pod_charge(obj)
            for resource, bound in (item.get("max") or {}).items():
                limit = charge.get(f"limits.{resource}")
                if limit is not None and limit > quantities.parse(bound):
                    problems.append(
                        f"maximum {resource} usage per Pod is {bound}, but limit is "
                        f"{quantities.show(limit, resource)}"
                    )
        elif kind == "PersistentVolumeClaim" and kind_of_range == "PersistentVolumeClaim":
            raw = (((obj.get("spec") or {}).get("resources") or {}).get("requests") or {}).get("storage")
            if raw is None:
                continue
            request = quantities.parse(raw)
            for bound_name, word, outside in (
                ("max", "maximum", Fraction.__gt__),
                ("min", "minimum", Fraction.__lt__),
            ):
                bound = (item.get(bound_name) or {}).get("storage")
                if bound is not None and outside(request, quantities.parse(bound)):
                    problems.append(
                        f"{word} storage usage per PersistentVolumeClaim is {bound}, but request is {raw}"
                    )
    if problems:
        message = problems[0] if len(problems) == 1 else "[" + ", ".join(problems) + "]"
        raise status.forbidden(served, name, message)


def _charge(kind: str, obj: dict[str, Any]) -> dict[str, Fraction | None]:
    charge: dict[str, Fraction | None] = {}
    if kind == "Pod":
        charge = pod_charge(obj)
    elif kind == "PersistentVolumeClaim":
        raw = (((obj.get("spec") or {}).get("resources") or {}).get("requests") or {}).get("storage")
        charge["requests.storage"] = quantities.parse(raw) if raw is not None else Fraction(0)
    if kind in _COUNTED:
        charge[_COUNTED[kind]] = Fraction(1)
        charge[f"count/{_COUNTED[kind]}"] = Fraction(1)
    # `cpu` and `memory` in a quota mean their requests.
    for name in _COMPUTE:
        if f"requests.{name}" in charge:
            charge[name] = charge[f"requests.{name}"]
    return charge


def _counts(kind: str, obj: dict[str, Any]) -> bool:
    return not (kind == "Pod" and (obj.get("status") or {}).get("phase") in _TERMINAL)


def _check_quota(
    served: ResourceType, name: str, obj: dict[str, Any], old: dict[str, Any] | None, listed: Lister
) -> None:
    kind = served.kind
    wanted = _charge(kind, obj)
    previous = _charge(kind, old) if old is not None else {}
    for quota in listed("ResourceQuota"):
        hard = (quota.get("spec") or {}).get("hard") or {}
        constrained = [resource for resource in hard if resource in wanted]
        if not constrained:
            continue
        unspecified = [resource for resource in constrained if wanted[resource] is None]
        if unspecified:
            names = ",".join(c.get("name", "") for c in _containers(obj, "containers"))
            detail = "; ".join(f"{resource} for: {names}" for resource in sorted(unspecified))
            raise status.forbidden(
                served, name, f"failed quota: {quota['metadata']['name']}: must specify {detail}"
            )
        used: dict[str, Fraction] = {}
        for existing in listed(kind):
            if existing["metadata"]["name"] == name or not _counts(kind, existing):
                continue
            for resource, value in _charge(kind, existing).items():
                used[resource] = used.get(resource, Fraction(0)) + (value or Fraction(0))
        exceeded = []
        for resource in sorted(constrained):
            delta = (wanted[resource] or Fraction(0)) - (previous.get(resource) or Fraction(0))
            if delta <= 0:
                continue
            if used.get(resource, Fraction(0)) + (wanted[resource] or Fraction(0)) > quantities.parse(
                hard[resource]
            ):
                exceeded.append(resource)
        if exceeded:

            def listing(values: Iterable[tuple[str, Fraction]]) -> str:
                return ",".join(f"{r}={quantities.show(v, r)}" for r, v in values)

            requested = listing((r, wanted[r] or Fraction(0)) for r in exceeded)
            in_use = listing((r, used.get(r, Fraction(0))) for r in exceeded)
            limited = listing((r, quantities.parse(hard[r])) for r in exceeded)
            raise status.forbidden(
                served,
                name,
                f"exceeded quota: {quota['metadata']['name']}, requested: {requested}, "
                f"used: {in_use}, limited: {limited}",
            )


def admit(
    resource: ResourceType, name: str, new: dict[str, Any], old: dict[str, Any] | None, listed: Lister
) -> None:
    """Default and check `new` (a create when `old` is None) as the two plugins would; 403 if refused."""
    kind = resource.kind
    if resource.group or kind not in ("Pod", "PersistentVolumeClaim", "Service", "ConfigMap", "Secret"):
        return
    if old is not None and kind != "PersistentVolumeClaim":
        return  # only a claim's resize is charged again
    ranges = _limit_ranges(listed)
    if kind == "Pod":
        _apply_container_defaults(new, ranges)
    if kind in ("Pod", "PersistentVolumeClaim"):
        _check_limit_range(resource, name, new, ranges)
    _check_quota(resource, name, new, old, listed)
