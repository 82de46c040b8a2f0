"""Which lists of the built-in kinds are maps keyed by some of their elements' fields.

The real server's schemas mark such lists `x-kubernetes-list-type: map` with
`x-kubernetes-list-map-keys` (in Go, `+listType=map` / `+listMapKey=`): a Pod's
`containers` by `name`, a container's `env` by `name` and `ports` by
`containerPort` and `protocol`, a Service's `ports` by `port` and `protocol`, and so
on. Server-side apply merges such a list element by element, each element owned
field by field, so one manager can add an env var to a container another manager
applied, and an applier that stops sending an element removes only that element.
Every other list is atomic: one field, replaced whole.

In a field path an element of a keyed list is one step, `k:{"name":"app"}`, exactly
as `metadata.managedFields[].fieldsV1` spells it. Custom resources' lists are atomic
here (their CRDs would have to say otherwise; the operators' CRDs mostly do not).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

KEY_PREFIX = "k:"

# Field name -> the key fields, wherever the field appears inside a pod template or pod.
_BY_NAME: dict[str, tuple[str, ...]] = {
    "containers": ("name",),
    "initContainers": ("name",),
    "ephemeralContainers": ("name",),
    "volumes": ("name",),
    "imagePullSecrets": ("name",),
    "env": ("name",),
    "volumeMounts": ("mountPath",),
    "volumeDevices": ("devicePath",),
    "hostAliases": ("ip",),
    "resourceClaims": ("name",),
    "schedulingGates": ("name",),
    "topologySpreadConstraints": ("topologyKey", "whenUnsatisfiable"),
    "ownerReferences": ("uid",),
}
# Key fields the server defaults before it merges (a port without a protocol is TCP).
_DEFAULTS: dict[str, Any] = {"protocol": "TCP"}


def keys_of(path: tuple[str, ...]) -> tuple[str, ...] | None:
    """The key fields of the list at `path`, or None when that list is atomic."""
    if not path:
        return None
    field = path[-1]
    if field == "ports":
        if len(path) >= 2 and path[-2].startswith(KEY_PREFIX):
            return ("containerPort", "protocol")  # a container's ports
        if path == ("spec", "ports"):
            return ("port", "protocol")  # a Service's ports
        return None
    if field == "conditions" and path[0] == "status":
        return ("type",)
    return _BY_NAME.get(field)


def key_step(element: Mapping[str, Any], keys: tuple[str, ...]) -> str:
    """The path step of one element, `k:{"name":"app"}`."""
    values = {key: element.get(key, _DEFAULTS.get(key)) for key in keys}
    return KEY_PREFIX + json.dumps(values, sort_keys=True, separators=(",", ":"))


def key_values(step: str) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(step[len(KEY_PREFIX) :])
    return parsed


def matches(element: Any, step: str) -> bool:
    if not isinstance(element, dict):
        return False
    wanted = key_values(step)
    return all(element.get(key, _DEFAULTS.get(key)) == value for key, value in wanted.items())
