"""Adopting a first edition's namespace: its objects become wholly ours.

The first edition applied with kubectl, client-side: every field of its objects belongs to a
manager like `kubectl-client-side-apply`. A server-side apply takes over only the fields it
sends, so the env vars, containers and ports the first edition had and we do not render would
stay for good, owned by it. So, once, when a namespace is adopted:

- each object we render that exists already has its field ownership handed to our manager,
  as `kubectl apply --server-side` and client-go's csaupgrade do: the first edition's
  managedFields entries are merged into one Apply entry of ours (a patch of
  `metadata.managedFields`, fenced by the resourceVersion); the apply that follows then
  removes what we no longer send;
- the first edition's objects we no longer render are deleted: those carrying its
  `k8s-ee/pr-number` label that nothing owns (an operator's objects have an owner reference).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Collection, Iterable
from typing import Any

from handlers import naming
from handlers.cluster import ObjectRef
from handlers.cluster.resources import Planned, Resource
from handlers.cluster.transport import Transport

logger = logging.getLogger("k8s_ee.cluster")

# Managers a client-side or command-line tool writes as (the first edition ran kubectl and helm).
FIRST_EDITION_MANAGERS = ("kubectl", "helm", "before-first-apply")
JSON_PATCH = "application/json-patch+json"


def _first_editions(entry: dict[str, Any]) -> bool:
    manager = str(entry.get("manager") or "")
    return entry.get("subresource") in (None, "") and manager.startswith(FIRST_EDITION_MANAGERS)


def _union(into: dict[str, Any], more: dict[str, Any]) -> None:
    for key, value in more.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _union(into[key], value)
        else:
            into[key] = copy.deepcopy(value)


def handed_over(entries: list[dict[str, Any]], manager: str, api_version: str) -> list[dict[str, Any]] | None:
    """The managedFields with the first edition's entries merged into `manager`'s Apply entry,
    or None when there is nothing to hand over."""
    theirs = [entry for entry in entries if _first_editions(entry)]
    if not theirs:
        return None
    kept = [
        e
        for e in entries
        if not _first_editions(e) and (e.get("manager"), e.get("operation")) != (manager, "Apply")
    ]
    fields: dict[str, Any] = {}
    for entry in [
        *theirs,
        *(e for e in entries if (e.get("manager"), e.get("operation")) == (manager, "Apply")),
    ]:
        _union(fields, entry.get("fieldsV1") or {})
    ours = {
        "manager": manager,
        "operation": "Apply",
        "apiVersion": api_version,
        "time": max(str(entry.get("time") or "") for entry in theirs),
        "fieldsType": "FieldsV1",
        "fieldsV1": fields,
    }
    return [*kept, ours]


async def hand_over(transport: Transport, namespace: str, item: Planned, manager: str) -> bool:
    """Give `manager` the first edition's fields of one existing object; True when it had some."""
    path = item.resource.path(namespace, item.ref.name)
    answer = await transport.request("GET", path, action=f"read {item.ref} to adopt it", accept=(404,))
    if answer.status == 404:
        return False
    metadata = answer.body.get("metadata") or {}
    entries = handed_over(list(metadata.get("managedFields") or []), manager, item.resource.api_version)
    if entries is None:
        return False
    await transport.request(
        "PATCH",
        path,
        action=f"take over {item.ref} from the first edition",
        # Setting the resourceVersion makes it a precondition: 409 if the object moved meanwhile.
        body=[
            {"op": "replace", "path": "/metadata/resourceVersion", "value": metadata.get("resourceVersion")},
            {"op": "replace", "path": "/metadata/managedFields", "value": entries},
        ],
        content_type=JSON_PATCH,
    )
    return True


async def leftovers(
    transport: Transport,
    namespace: str,
    kinds: Iterable[Resource],
    rendered: Collection[tuple[str, str, str]],
) -> list[tuple[ObjectRef, Resource]]:
    """The first edition's objects in `namespace` that are not rendered any more."""
    found: list[tuple[ObjectRef, Resource]] = []
    for resource in kinds:
        if not resource.namespaced:
            continue
        base = resource.path(namespace, "").rstrip("/")
        answer = await transport.request(
            "GET",
            base,
            action=f"list the first edition's {resource.plural}",
            query=[("labelSelector", naming.LABEL_PR_NUMBER)],
            accept=(404,),
        )
        for item in answer.body.get("items") or [] if answer.status == 200 else []:
            metadata = item.get("metadata") or {}
            ref = ObjectRef(
                api_version=resource.api_version, kind=resource.kind, name=str(metadata.get("name"))
            )
            if ref.key in rendered or metadata.get("ownerReferences") or metadata.get("deletionTimestamp"):
                continue
            found.append((ref, resource))
    return found
