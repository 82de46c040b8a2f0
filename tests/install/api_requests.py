"""What a request to the Kubernetes API asks the authorizer for: (verb, API group, resource).

The same reading as the real API server's RequestInfo resolver
(k8s.io/apiserver/pkg/endpoints/request/requestinfo.go): `/api/v1/...` is the core group,
`/apis/{group}/{version}/...` a named one; then an optional `namespaces/{namespace}/`, the
resource, a name, and a subresource (`deployments/status`). The verb comes from the method:
GET of a collection is `list` (`watch` with `watch=true`), of one object `get`; POST `create`;
PUT `update`; PATCH `patch`; DELETE of one object `delete`, of a collection
`deletecollection`. A server-side apply that creates its object is also authorized as
`create` (the API server's patch handler checks it when the object does not exist yet), so
an apply patch asks for both. Anything else (`/api`, `/apis`, `/version`, `/openapi/...`)
is a non-resource URL.
"""

from __future__ import annotations

from typing import NamedTuple
from urllib.parse import parse_qs

APPLY = "application/apply-patch+yaml"


class Permission(NamedTuple):
    verb: str
    group: str
    resource: str
    # The object's name, when the request names one (a rule's resourceNames can then match it).
    name: str | None = None


def permissions(method: str, path: str, query: str, content_type: str) -> set[Permission] | None:
    """What one request needs; None for a non-resource URL (discovery, version)."""
    parts = [part for part in path.split("/") if part]
    if len(parts) >= 2 and parts[0] == "api":
        group, rest = "", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, rest = parts[1], parts[3:]
    else:
        return None
    if not rest:
        return None  # the group version's own discovery document
    if rest[0] == "namespaces" and len(rest) >= 3:
        rest = rest[2:]  # a namespaced resource: `namespaces/{namespace}/{resource}/...`
    resource, name = rest[0], rest[1] if len(rest) > 1 else None
    if len(rest) > 2:
        resource = f"{resource}/{rest[2]}"
    method = method.upper()
    if method == "GET":
        if name is None:
            watching = parse_qs(query).get("watch", [""])[-1].lower() in ("true", "1")
            verbs = {"watch" if watching else "list"}
        else:
            verbs = {"get"}
    elif method == "POST":
        verbs = {"create"}
    elif method == "PUT":
        verbs = {"update"}
    elif method == "PATCH":
        verbs = {"patch", "create"} if content_type.split(";")[0].strip() == APPLY else {"patch"}
    elif method == "DELETE":
        verbs = {"delete" if name else "deletecollection"}
    else:
        return None
    return {Permission(verb, group, resource, name) for verb in verbs}
