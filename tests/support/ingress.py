"""An ingress controller for the tests, routing preview hosts the way ingress-nginx and Traefik do.

A browser is pointed at it as its HTTP proxy. For each request it reads, from the test API
server, the Ingress whose rule has the request's host, and the Service its backend names:

- an ExternalName Service is followed to its `externalName` (resolved through `names`, the
  tests' own DNS) on the port ingress-nginx uses (`targetPort`; Traefik uses `port`, and the
  gateway renders both the same: either `mode` checks that);
- any other Service stands for the app's pods: answered by `app_url` once its Deployment reports
  a ready replica, else 503, as a controller with no ready endpoint answers.

Answers stream through as they come (server-sent events included), with the Host kept, and
`Connection: close` (simple, and all a browser needs).
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from tests.fakes.kubeapi import KubeAPIServer
from tests.support.loopback_server import LoopbackServer, QuietHandler

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
}


class PreviewIngress:
    def __init__(
        self, kube: KubeAPIServer, names: Mapping[str, str], app_url: str, mode: str = "ingress-nginx"
    ) -> None:
        self.kube = kube
        self.names = dict(names)
        self.app_url = app_url
        self.mode = mode
        self.routed: list[tuple[str, str]] = []  # (host + path, where it went)
        self._lock = threading.Lock()
        ingress = self

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                ingress.forward(self, "GET")

            def do_HEAD(self) -> None:
                ingress.forward(self, "HEAD")

            def do_POST(self) -> None:
                ingress.forward(self, "POST")

        self.server = LoopbackServer.serving(Handler)
        self.url = self.server.origin

    def backend(self, host: str) -> str | None:
        """Where a request for `host` goes now: a base URL, or None (no ready endpoint)."""
        for ingress in self.kube.objects("Ingress"):
            for rule in ingress["spec"].get("rules", []):
                if rule.get("host") != host:
                    continue
                namespace = ingress["metadata"]["namespace"]
                backend = rule["http"]["paths"][0]["backend"]["service"]
                service = self.kube.get_object("Service", namespace, backend["name"])
                if service is None:
                    return None
                spec = service["spec"]
                if spec.get("type") == "ExternalName":
                    return self._external(spec, backend["port"])
                deployment = self.kube.get_object("Deployment", namespace, f"{namespace}-app")
                ready = ((deployment or {}).get("status") or {}).get("readyReplicas") or 0
                return self.app_url if ready > 0 else None
        return None

    def _external(self, spec: dict[str, Any], port: dict[str, Any]) -> str | None:
        wanted = port.get("number")
        ports = spec.get("ports") or []
        chosen = next((p for p in ports if p.get("port") == wanted), None)
        if chosen is None:
            return None  # Traefik: "service port not found"
        number = chosen["targetPort"] if self.mode == "ingress-nginx" else chosen["port"]
        target = self.names.get(spec["externalName"])
        if target is None:
            return None
        parsed = urlsplit(target)
        return f"{parsed.scheme}://{parsed.hostname}:{parsed.port or number}"

    def forward(self, handler: QuietHandler, method: str) -> None:
        target = urlsplit(handler.path)
        host = (target.hostname or handler.headers.get("Host", "")).split(":")[0]
        path = target.path or "/"
        if target.query:
            path += "?" + target.query
        base = self.backend(host)
        with self._lock:
            self.routed.append((host + path, base or "503"))
        if base is None:
            self._answer(handler, 503, b"<html><body>503 Service Temporarily Unavailable</body></html>")
            return
        upstream = urlsplit(base)
        connection = http.client.HTTPConnection(upstream.hostname or "", upstream.port, timeout=30)
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["Host"] = host  # kept, as both controllers keep it by default
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else None
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            handler.send_response(response.status)
            for name, value in response.getheaders():
                if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                    handler.send_header(name, value)
            handler.send_header("Connection", "close")
            handler.end_headers()
            if method != "HEAD":
                while True:
                    chunk = response.read1(65536)
                    if not chunk:
                        break
                    handler.wfile.write(chunk)
                    handler.wfile.flush()
        except (OSError, http.client.HTTPException):
            pass  # the browser went away, or the backend did
        finally:
            connection.close()
            handler.close_connection = True

    def _answer(self, handler: QuietHandler, status: int, body: bytes) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", "text/html")
        handler.send_header("Content-Length", str(len(body)))
        handler.send_header("Connection", "close")
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(body)
        handler.close_connection = True

    def close(self) -> None:
        self.server.stop()
