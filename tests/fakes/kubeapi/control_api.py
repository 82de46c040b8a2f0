"""The test controls over HTTP under `/_test/`, for a client in another process (the benchmark).

GET    /_test/objects?kind=&namespace=   {"items": [...]}
POST   /_test/objects                    create an object as given (201)
POST   /_test/status                     {"kind", "namespace", "name", "status"}: set its status
GET    /_test/requests                   {"items": [{"method", "path", "query", "content_type"}]}
DELETE /_test/requests                   forget the request log
GET    /_test/faults                     {"items": [...]}
POST   /_test/faults                     {"method", "path_regex", "status", "times", "delay"} (201)
DELETE /_test/faults                     drop every fault
POST   /_test/holds                      {"namespace", "times"}: hold a namespace's deletion
POST   /_test/controller                 {"ready_delay", "bad_images": {image: reason}}: the controllers
POST   /_test/reset                      objects, holds, faults and the request log all cleared
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, ValidationError

from . import status
from .api import Request, Response, decode
from .controls import Fault

if TYPE_CHECKING:
    from .server import KubeAPIServer


class FaultSpec(BaseModel):
    method: str = "*"
    path_regex: str
    status: int | None = Field(default=500, ge=100, le=599)
    times: int = 1
    delay: float = Field(default=0.0, ge=0)
    message: str = ""


class HoldSpec(BaseModel):
    namespace: str
    times: int = Field(ge=0)


class ControllerSpec(BaseModel):
    ready_delay: float | None = Field(default=None, ge=0)
    bad_images: dict[str, str] = {}


class StatusSpec(BaseModel):
    kind: str
    namespace: str = ""
    name: str
    status: dict[str, Any]


def _items(items: list[Any]) -> Response:
    return Response(200, {"items": items})


def handle(server: KubeAPIServer, request: Request) -> Response:
    route = (request.method, request.path.rstrip("/"))
    try:
        if route == ("GET", "/_test/objects"):
            return _items(server.objects(request.param("kind") or None, request.param("namespace")))
        if route == ("POST", "/_test/objects"):
            return Response(201, server.add_object(decode(request)))
        if route == ("POST", "/_test/status"):
            spec = StatusSpec.model_validate(decode(request))
            return Response(200, server.set_status(spec.kind, spec.namespace, spec.name, spec.status))
        if route == ("GET", "/_test/requests"):
            return _items([record.to_json() for record in server.requests])
        if route == ("DELETE", "/_test/requests"):
            return Response(200, {"cleared": server.reset_requests()})
        if route == ("GET", "/_test/faults"):
            return _items([fault.to_json() for fault in server.faults])
        if route == ("POST", "/_test/faults"):
            fault = Fault(**FaultSpec.model_validate(decode(request)).model_dump())
            return Response(201, server.add_fault_object(fault).to_json())
        if route == ("DELETE", "/_test/faults"):
            server.clear_faults()
            return Response(200, {"items": []})
        if route == ("POST", "/_test/holds"):
            hold = HoldSpec.model_validate(decode(request))
            server.hold_namespace_deletion(hold.namespace, hold.times)
            return Response(200, hold.model_dump())
        if route == ("POST", "/_test/controller"):
            spec = ControllerSpec.model_validate(decode(request))
            if spec.ready_delay is not None:
                server.ready_delay = spec.ready_delay
            for image, reason in spec.bad_images.items():
                server.mark_image(image, reason)
            return Response(200, {"ready_delay": server.ready_delay})
        if route == ("POST", "/_test/reset"):
            server.reset()
            return Response(200, {})
    except ValidationError as error:
        raise status.bad_request(f"invalid control request: {error}") from error
    except (KeyError, ValueError, re.error) as error:
        raise status.bad_request(f"invalid control request: {error}") from error
    raise status.path_not_found()
