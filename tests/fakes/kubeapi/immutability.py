"""Fields the real server refuses to change once an object exists: 422 Invalid, with its words.

- A workload's `spec.selector` (Deployment, ReplicaSet, StatefulSet): `field is immutable`.
- A PersistentVolumeClaim's spec, except `resources.requests` (and `volumeAttributesClassName`):
  `spec is immutable after creation except resources.requests and volumeAttributesClassName for
  bound claims`; and its storage request may only grow: `field can not be less than previous value`.
- A RoleBinding's `roleRef`: `cannot change roleRef`.
- A Service's `spec.clusterIP` once set: `field is immutable`.
- The `data` of a ConfigMap or Secret marked `immutable: true`: `field is immutable when `immutable` is set`.
"""

from __future__ import annotations

from typing import Any

from . import quantities, status
from .kinds import ResourceType

_SELECTOR_KINDS = frozenset({"Deployment", "ReplicaSet", "StatefulSet"})


def _cause(field: str, message: str, value: Any = None, reason: str = "FieldValueInvalid") -> dict[str, str]:
    shown = f"Invalid value: {value!r}: " if reason == "FieldValueInvalid" else "Forbidden: "
    return {"reason": reason, "message": shown + message, "field": field}


def check(resource: ResourceType, old: dict[str, Any], new: dict[str, Any]) -> None:
    """Raise 422 when the update from `old` to `new` changes what may not change."""
    causes: list[dict[str, str]] = []
    kind = resource.kind
    old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
    if kind in _SELECTOR_KINDS and old_spec.get("selector") != new_spec.get("selector"):
        causes.append(_cause("spec.selector", "field is immutable", new_spec.get("selector")))
    elif kind == "PersistentVolumeClaim" and not resource.group:
        causes += _claim_causes(old_spec, new_spec)
    elif kind == "RoleBinding" and old.get("roleRef") != new.get("roleRef"):
        causes.append(_cause("roleRef", "cannot change roleRef", new.get("roleRef")))
    elif kind == "Service" and not resource.group:
        before, after = old_spec.get("clusterIP"), new_spec.get("clusterIP")
        if before and after and before != after:
            causes.append(_cause("spec.clusterIP", "field is immutable", after))
    elif kind in ("ConfigMap", "Secret") and not resource.group and old.get("immutable"):
        for field in ("data", "binaryData"):
            if old.get(field) != new.get(field):
                causes.append(
                    _cause(field, "field is immutable when `immutable` is set", reason="FieldValueForbidden")
                )
    if causes:
        raise status.invalid(resource, str(new["metadata"]["name"]), causes)


def _claim_causes(old_spec: dict[str, Any], new_spec: dict[str, Any]) -> list[dict[str, str]]:
    def without_requests(spec: dict[str, Any]) -> dict[str, Any]:
        rest = {k: v for k, v in spec.items() if k not in ("resources", "volumeAttributesClassName")}
        limits = (spec.get("resources") or {}).get("limits")
        return {**rest, "limits": limits}

    # Fields the server fills in (volumeName once bound, the default class) count as set.
    merged = {**old_spec, **new_spec}
    if without_requests(old_spec) != without_requests(merged):
        return [
            _cause(
                "spec",
                "spec is immutable after creation except resources.requests and "
                "volumeAttributesClassName for bound claims",
                reason="FieldValueForbidden",
            )
        ]
    before = ((old_spec.get("resources") or {}).get("requests") or {}).get("storage")
    after = ((new_spec.get("resources") or {}).get("requests") or {}).get("storage")
    if before is not None and after is not None and quantities.parse(after) < quantities.parse(before):
        return [
            _cause(
                "spec.resources.requests.storage",
                "field can not be less than previous value",
                reason="FieldValueForbidden",
            )
        ]
    return []
