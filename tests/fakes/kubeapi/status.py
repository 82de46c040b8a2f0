"""`Status` bodies, the way the real API server reports success and failure of a call."""

from __future__ import annotations

from typing import Any

from .kinds import ResourceType

# Reason the real server puts in a Status for each HTTP code it answers with.
REASONS: dict[int, str] = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


class KubeError(Exception):
    """A failed call; rendered as a `Status` with the HTTP code it carries."""

    def __init__(
        self, code: int, message: str, reason: str | None = None, details: dict[str, Any] | None = None
    ):
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or REASONS.get(code, "Unknown")
        self.details = details

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def _details(resource: ResourceType, name: str, kind: str | None = None) -> dict[str, Any]:
    details: dict[str, Any] = {"name": name, "kind": kind or resource.plural}
    if resource.group:
        details["group"] = resource.group
    return details


def not_found(resource: ResourceType, name: str) -> KubeError:
    return KubeError(404, f'{resource.qualified} "{name}" not found', "NotFound", _details(resource, name))


def already_exists(resource: ResourceType, name: str) -> KubeError:
    return KubeError(
        409, f'{resource.qualified} "{name}" already exists', "AlreadyExists", _details(resource, name)
    )


def conflict(
    resource: ResourceType, name: str, why: str, causes: list[dict[str, str]] | None = None
) -> KubeError:
    details = _details(resource, name)
    if causes:
        details["causes"] = causes
    return KubeError(
        409, f'Operation cannot be fulfilled on {resource.qualified} "{name}": {why}', "Conflict", details
    )


def stale(resource: ResourceType, name: str) -> KubeError:
    return conflict(
        resource,
        name,
        "the object has been modified; please apply your changes to the latest version and try again",
    )


def invalid(resource: ResourceType, name: str, causes: list[dict[str, str]]) -> KubeError:
    summary = ", ".join(f"{c['field']}: {c['message']}" for c in causes)
    details = _details(resource, name, kind=resource.kind)
    details["causes"] = causes
    # The real server names the kind with its group: `Deployment.apps "x" is invalid`.
    qualified = f"{resource.kind}.{resource.group}" if resource.group else resource.kind
    return KubeError(422, f'{qualified} "{name}" is invalid: {summary}', "Invalid", details)


def forbidden(
    resource: ResourceType, name: str, why: str, causes: list[dict[str, str]] | None = None
) -> KubeError:
    details = _details(resource, name)
    if causes:
        details["causes"] = causes
    return KubeError(403, f'{resource.qualified} "{name}" is forbidden: {why}', "Forbidden", details)


def namespace_terminating(resource: ResourceType, name: str, namespace: str) -> KubeError:
    """NamespaceLifecycle admission refusing a create in a namespace being deleted: 403, and the
    cause `NamespaceTerminating` that tells it from an authorization refusal."""
    return forbidden(
        resource,
        name,
        f"unable to create new content in namespace {namespace} because it is being terminated",
        [
            {
                "reason": "NamespaceTerminating",
                "message": f"namespace {namespace} is being terminated",
                "field": "metadata.namespace",
            }
        ],
    )


def bad_request(message: str) -> KubeError:
    return KubeError(400, message, "BadRequest")


def path_not_found() -> KubeError:
    # The real server answers an unknown path with this exact message and no details.
    return KubeError(404, "the server could not find the requested resource", "NotFound", {})


def success(resource: ResourceType, name: str, uid: str) -> dict[str, Any]:
    """What a DELETE that removed the object at once returns."""
    details = _details(resource, name)
    details["uid"] = uid
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}
