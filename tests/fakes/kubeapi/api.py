"""One API call: route it, decode its body and run it against the store, as the real server would."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import yaml

from . import discovery, routes, status
from .status import KubeError
from .store import PatchType, Store

APPLY = "application/apply-patch+yaml"
PATCH_TYPES: dict[str, PatchType] = {
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "merge",
    "application/json-patch+json": "json",
}
_PROBES = ("/healthz", "/livez", "/readyz")


@dataclass
class Request:
    method: str
    path: str
    query: str
    content_type: str
    body: bytes
    user_agent: str = ""

    def param(self, name: str) -> str | None:
        values = parse_qs(self.query, keep_blank_values=True).get(name)
        return values[-1] if values else None

    def flag(self, name: str) -> bool:
        return (self.param(name) or "").lower() in ("true", "1")

    @property
    def media_type(self) -> str:
        return self.content_type.split(";", 1)[0].strip().lower()


@dataclass
class Response:
    code: int
    body: Any  # JSON-able, or str for plain text
    headers: dict[str, str] = field(default_factory=dict)


def decode(request: Request) -> Any:
    """The request body: JSON, or YAML for apply and YAML content types (JSON is YAML too)."""
    if not request.body.strip():
        return None
    text = request.body.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        if "yaml" not in request.media_type:
            raise status.bad_request(f"the request body is not valid JSON: {error}") from error
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise status.bad_request(f"error decoding YAML: {error}") from error


def _manager(request: Request) -> str:
    """fieldManager, or like the real server the User-Agent up to its first '/'."""
    return request.param("fieldManager") or request.user_agent.split("/", 1)[0] or "unknown"


def _limit(request: Request) -> int:
    raw = request.param("limit") or "0"
    try:
        return int(raw)
    except ValueError as error:
        raise status.bad_request(f"invalid limit: {raw!r}") from error


def _not_allowed(method: str) -> KubeError:
    return KubeError(
        405, f"the server does not allow this method on the requested resource ({method})", "MethodNotAllowed"
    )


def handle(store: Store, request: Request, server_address: str) -> Response:
    if request.path in _PROBES:
        return Response(200, "ok")
    document = discovery.document(request.path, server_address, store.served)
    if document is not None:
        if request.method != "GET":
            raise _not_allowed(request.method)
        return Response(200, document)
    route = routes.parse(request.path)
    if route is None or route.resource not in store.served:
        raise status.path_not_found()
    if request.flag("watch"):
        raise KubeError(405, "watch is not supported by this test server", "MethodNotAllowed")
    if request.param("force") is not None and request.media_type != APPLY:
        raise status.bad_request("force flag must be unset for non-apply patch requests")
    if route.name is None:
        return _collection(store, route, request)
    return _object(store, route, route.name, request)


def _collection(store: Store, route: routes.Route, request: Request) -> Response:
    resource, namespace = route.resource, route.namespace
    if request.method == "GET":
        listed = store.list_objects(
            resource,
            namespace,
            request.param("labelSelector"),
            request.param("fieldSelector"),
            _limit(request),
            request.param("continue"),
        )
        return Response(200, listed)
    if request.method == "DELETE":
        deleted = store.delete_collection(
            resource, namespace, request.param("labelSelector"), request.param("fieldSelector")
        )
        return Response(200, deleted)
    if request.method == "POST" and (namespace is not None or not resource.namespaced):
        created = store.create(
            resource, namespace or "", decode(request), _manager(request), request.param("dryRun") == "All"
        )
        return Response(201, created)
    raise _not_allowed(request.method)


def _object(store: Store, route: routes.Route, name: str, request: Request) -> Response:
    resource, namespace, subresource = route.resource, route.namespace or "", route.subresource
    dry_run = request.param("dryRun") == "All"
    if request.method == "GET":
        return Response(200, store.get(resource, namespace, name))
    if request.method == "PUT":
        body = decode(request)
        return Response(
            200, store.replace(resource, namespace, name, body, _manager(request), dry_run, subresource)
        )
    if request.method == "PATCH":
        return _patch(store, route, name, request, dry_run)
    if request.method == "DELETE" and not subresource:
        options = decode(request) or {}
        return Response(200, store.delete(resource, namespace, name, options, dry_run))
    raise _not_allowed(request.method)


def _patch(store: Store, route: routes.Route, name: str, request: Request, dry_run: bool) -> Response:
    resource, namespace = route.resource, route.namespace or ""
    body = decode(request)
    if request.media_type == APPLY and not route.subresource:
        manager = request.param("fieldManager")
        if not manager:
            raise KubeError(
                422,
                'PatchOptions.meta.k8s.io "" is invalid: '
                "fieldManager: Required value: is required for apply patch",
                "Invalid",
            )
        created, obj = store.apply(resource, namespace, name, body, manager, request.flag("force"), dry_run)
        return Response(201 if created else 200, obj)
    kind = PATCH_TYPES.get(request.media_type)
    if kind is None:
        accepted = ", ".join([*PATCH_TYPES, APPLY])
        raise KubeError(
            415,
            f"the body of the request was in an unknown format - accepted media types include: {accepted}",
            "UnsupportedMediaType",
        )
    patched = store.patch(
        resource, namespace, name, kind, body, _manager(request), dry_run, route.subresource
    )
    return Response(200, patched)
