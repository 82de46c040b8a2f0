"""A stateful Kubernetes API server on loopback, for tests that drive the real `kubernetes` client.

    with KubeAPIServer() as kube:
        client = kubernetes.client.ApiClient(kubernetes.client.Configuration(host=kube.url))
        ...
        assert kube.objects("ConfigMap", "demo-pr-1")

It serves discovery, the kinds in `kinds.RESOURCES` and their verbs over HTTP/1.1 from a
`LoopbackServer` in a background thread. Tests count calls (`requests`), inject failures
and slow answers (`add_fault`), hold namespace deletion and look at the stored objects; the same
controls are served under `/_test/` for another process.

What a real server refuses, it refuses, each rule beside the real one it stands for: server-side
apply merging keyed lists (listmaps, fields), immutable fields and shrinking claims
(immutability), creating in a terminating namespace (status.namespace_terminating), limits and
quotas (admission). What a cluster does after a write, it does: Deployments roll and their pods
become ready or report why not (controller: `ready_delay`, `mark_image`); a custom resource
gets status from its operator, here a test's hook (`set_status_hook`); an operator that is not
installed is a kind that is not served (`uninstall`).
"""

from __future__ import annotations

import json
import sys
import threading
import time
import traceback
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from tests.support.loopback_server import KeepAliveHandler, LoopbackServer, TrackingHTTPServer

from . import api, control_api
from .api import Request, Response
from .controller import StatusHook
from .controls import Controls, Fault, RequestRecord
from .status import KubeError
from .store import Store


class _HTTPServer(TrackingHTTPServer):
    def __init__(self, address: tuple[str, int], kube: KubeAPIServer) -> None:
        super().__init__(address, _Handler)
        self.kube = kube


class _Handler(KeepAliveHandler):
    server: _HTTPServer

    def serve(self, method: str) -> None:
        url = urlsplit(self.path)
        request = Request(
            method=method,
            path=url.path,
            query=url.query,
            content_type=self.headers.get("Content-Type", ""),
            body=self.body(),
            user_agent=self.headers.get("User-Agent", ""),
        )
        response = self.server.kube.respond(request)
        if isinstance(response.body, str):
            payload, content_type = response.body.encode(), "text/plain; charset=utf-8"
        else:
            payload, content_type = json.dumps(response.body).encode(), "application/json"
        self.answer(response.code, payload, content_type, response.headers)


class KubeAPIServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, ready_delay: float = 0.0) -> None:
        self._address = (host, port)
        self._store = Store()
        self._store.workloads.ready_delay = ready_delay
        self._controls = Controls()
        self._stopping = threading.Event()
        self._served: LoopbackServer | None = None
        self.url = ""

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> str:
        """Listen on a free port and serve in a background thread; answers the base URL."""
        if self._served is not None:
            return self.url
        self._stopping.clear()
        self._served = LoopbackServer(_HTTPServer(self._address, self), name="kubeapi")
        self.url = f"http://{self._address[0]}:{self._served.port}"
        self._store.workloads.start()
        return self.url

    def stop(self) -> None:
        if self._served is None:
            return
        self._store.workloads.stop()
        self._stopping.set()  # wakes calls sleeping in an injected delay
        self._served.stop()
        self._served = None

    def __enter__(self) -> KubeAPIServer:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    # -- state ---------------------------------------------------------------------------------

    def objects(self, kind: str | None = None, namespace: str | None = None) -> list[dict[str, Any]]:
        """Stored objects (copies), optionally of one kind (`Deployment` or `deployments.apps`)
        and one namespace; sorted by namespace and name within each kind."""
        return self._store.objects(kind, namespace)

    def get_object(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        found = [obj for obj in self._store.objects(kind, namespace) if obj["metadata"]["name"] == name]
        return found[0] if found else None

    def add_object(self, obj: Any, manager: str = "kubeapi-test") -> dict[str, Any]:
        """Create an object as a client would (same checks, admission included), by its kind;
        `manager` owns its fields (`kubectl-client-side-apply` for what `kubectl apply` made)."""
        if not isinstance(obj, dict):
            raise ValueError("an object must be a mapping")
        resource = self._store.resource_of(str(obj.get("kind")))
        namespace = str((obj.get("metadata") or {}).get("namespace") or "") if resource.namespaced else ""
        return self._store.create(resource, namespace, obj, manager=manager)

    def set_status(self, kind: str, namespace: str, name: str, new_status: dict[str, Any]) -> dict[str, Any]:
        """Replace an object's status, as its controller would (through the status subresource)."""
        resource = self._store.resource_of(kind)
        namespace = namespace if resource.namespaced else ""
        body = {"metadata": {"name": name}, "status": new_status}
        return self._store.replace(resource, namespace, name, body, "kubeapi-test", subresource="status")

    def hold_namespace_deletion(self, name: str, times: int) -> None:
        """Once namespace `name` is deleted, its next `times` GETs still answer it Terminating
        (and creating in it is Forbidden); 0 lets a held deletion finish now."""
        self._store.hold_namespace_deletion(name, times)

    def delete_namespace(self, name: str, hold: int = 0) -> None:
        """Start deleting namespace `name` as a client would, held for `hold` GETs first."""
        if hold:
            self._store.hold_namespace_deletion(name, hold)
        self._store.delete(self._store.resource_of("Namespace"), "", name)

    # -- the cluster around the API --------------------------------------------------------------

    @property
    def ready_delay(self) -> float:
        """Seconds from a pod's creation until it is ready (the controllers' and kubelet's work)."""
        return self._store.workloads.ready_delay

    @ready_delay.setter
    def ready_delay(self, seconds: float) -> None:
        self._store.workloads.ready_delay = seconds
        self._store.workloads.poke_all()  # pods waiting on the old delay look at the new one

    def mark_image(self, image: str, reason: str = "ErrImagePull", message: str | None = None) -> None:
        """Pods running `image` never start: their container waits with `reason`, as the kubelet says."""
        self._store.workloads.mark_image(image, reason, message)

    def set_status_hook(self, kind: str, hook: StatusHook | None) -> None:
        """After each write of a `kind` object, `hook(object)` is its status (None: leave it), as its
        operator would write it; None removes the hook."""
        if hook is None:
            self._store.status_hooks.pop(kind, None)
        else:
            self._store.status_hooks[kind] = hook

    def uninstall(self, kind: str) -> None:
        """Stop serving `kind`, as a cluster without that operator's CRD: gone from discovery, 404."""
        self._store.served.discard(self._store.resource_of(kind))

    def install(self, kind: str) -> None:
        self._store.served.add(self._store.resource_of(kind))

    def reset(self) -> None:
        """Forget every object, hold, fault, hook and logged request (the resourceVersion counter stays)."""
        self._store.reset()
        self._controls.clear_faults()
        self._controls.reset_requests()

    # -- requests and faults -------------------------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        return self._controls.requests

    def reset_requests(self) -> int:
        return self._controls.reset_requests()

    def count_requests(self, method: str | None = None, path_contains: str = "") -> int:
        return sum(
            1
            for record in self._controls.requests
            if (method is None or record.method == method.upper()) and path_contains in record.path
        )

    def add_fault(
        self, method: str, path_regex: str, status: int | None = 500, times: int = 1, delay: float = 0.0
    ) -> Fault:
        """Answer the next `times` calls whose method matches (`*` for any) and whose path matches
        `path_regex` (re.search) with `status` and a Status body, after sleeping `delay` seconds.
        `status=None` only delays (a hang when `delay` exceeds the client's timeout)."""
        return self._controls.add_fault(Fault(method, path_regex, status, times, delay))

    def add_fault_object(self, fault: Fault) -> Fault:
        return self._controls.add_fault(fault)

    @property
    def faults(self) -> list[Fault]:
        return self._controls.faults

    def clear_faults(self) -> None:
        self._controls.clear_faults()

    # -- serving -------------------------------------------------------------------------------

    def respond(self, request: Request) -> Response:
        try:
            if request.path.startswith("/_test/"):
                return control_api.handle(self, request)
            self._controls.record(
                RequestRecord(
                    request.method,
                    request.path,
                    request.query,
                    request.content_type,
                    time.time(),
                    request.user_agent,
                )
            )
            fault = self._controls.take_fault(request.method, request.path)
            if fault is not None:
                if fault.action is not None:
                    fault.action()
                if fault.delay:
                    self._stopping.wait(fault.delay)
                if fault.status is not None:
                    injected = KubeError(fault.status, fault.message)
                    headers = {"Retry-After": "1"} if fault.status == 429 else {}
                    return Response(fault.status, injected.status(), headers)
            host, port = self._address[0], urlsplit(self.url).port
            return api.handle(self._store, request, f"{host}:{port}")
        except KubeError as error:
            return Response(error.code, error.status())
        except Exception as error:  # a bug here must reach the client as a real 500, not a hang
            traceback.print_exc(file=sys.stderr)
            failure = KubeError(
                500, f"test API server error: {type(error).__name__}: {error}", "InternalError"
            )
            return Response(500, failure.status())


__all__ = ["Fault", "KubeAPIServer", "RequestRecord"]
