"""What the real server fills in or rewrites on every write, per kind."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from .kinds import NAMESPACE, ResourceType
from .status import bad_request


def _namespace(new: dict[str, Any], old: dict[str, Any] | None) -> None:
    metadata = new.setdefault("metadata", {})
    # Since Kubernetes 1.21 every namespace carries its own name as an immutable label.
    metadata.setdefault("labels", {})["kubernetes.io/metadata.name"] = metadata["name"]
    if old is None:
        new["spec"] = {"finalizers": ["kubernetes"]}
        new["status"] = {"phase": "Active"}
    else:
        # spec.finalizers changes only through /finalize, which this server does not serve.
        new["spec"] = old.get("spec", {})


def _secret(new: dict[str, Any]) -> None:
    new.setdefault("type", "Opaque")
    data = new.get("data") or {}
    for key, value in data.items():
        try:
            base64.b64decode(str(value), validate=True)
        except (binascii.Error, ValueError) as error:
            raise bad_request(
                f'Secret in version "v1" cannot be handled as a Secret: illegal base64 data at key {key!r}'
            ) from error
    # stringData is write-only: the server folds it into data and never stores it.
    string_data = new.pop("stringData", None) or {}
    for key, value in string_data.items():
        data[key] = base64.b64encode(str(value).encode()).decode()
    if data:
        new["data"] = data


def apply_defaults(
    resource: ResourceType, new: dict[str, Any], old: dict[str, Any] | None, status_write: bool
) -> None:
    """Fill in server defaults on `new` (in place); `old` is the stored object, None on create.

    `status_write` is a write through the status subresource, the one way status may change.
    """
    if resource.has_status and not status_write:
        # status is a subresource: a write to the object itself keeps the stored status.
        new.pop("status", None)
        if old is not None and "status" in old:
            new["status"] = old["status"]
    if resource == NAMESPACE:
        _namespace(new, old)
    elif resource.kind == "Secret" and resource.group == "":
        _secret(new)
