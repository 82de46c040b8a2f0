"""HTTP servers on loopback for tests: the fakes (tests/fakes/kubeapi, tests/fakes/fakehosts) and
the small receivers a test writes for itself.

    class Handler(QuietHandler):
        def do_POST(self) -> None: ...

    with LoopbackServer.serving(Handler) as server:
        post(f"{server.origin}/hooks")
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class TrackingHTTPServer(ThreadingHTTPServer):
    """A threading server that can cut its kept-alive connections when it stops.

    A pooled client connection would otherwise go on talking to a handler thread of a
    stopped server, and a test after it would see answers from the wrong one.
    """

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class LoopbackServer:
    """A `TrackingHTTPServer` serving in a background thread until `stop()` (or the `with` ends)."""

    def __init__(self, httpd: TrackingHTTPServer, name: str = "loopback-server") -> None:
        self.httpd = httpd
        # A short poll interval keeps stop() (and so each test's teardown) fast.
        self.thread = threading.Thread(
            target=lambda: httpd.serve_forever(poll_interval=0.05), name=name, daemon=True
        )
        self.thread.start()

    @classmethod
    def serving(
        cls, handler: type[BaseHTTPRequestHandler], *, tls: ssl.SSLContext | None = None
    ) -> LoopbackServer:
        """Serve `handler` on 127.0.0.1 and a free port; over TLS when given a server context."""
        httpd = TrackingHTTPServer(("127.0.0.1", 0), handler)
        if tls is not None:
            httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
        return cls(httpd)

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def origin(self) -> str:
        return f"http://{self.httpd.server_address[0]}:{self.port}"

    def stop(self) -> None:
        """Stop serving, cut the connections clients keep alive, and close the socket."""
        self.httpd.shutdown()
        self.httpd.close_connections()
        self.httpd.server_close()
        self.thread.join(timeout=5)

    def __enter__(self) -> LoopbackServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that logs nothing: tests read what their server recorded instead."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


class KeepAliveHandler(QuietHandler):
    """HTTP/1.1 with keep-alive, as the SDKs' connection pools expect; every method goes to `serve`."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, each answer would wait for the
    # client's delayed ACK (~40 ms).
    disable_nagle_algorithm = True

    def serve(self, method: str) -> None:
        raise NotImplementedError

    def do_GET(self) -> None:
        self.serve("GET")

    def do_POST(self) -> None:
        self.serve("POST")

    def do_PUT(self) -> None:
        self.serve("PUT")

    def do_PATCH(self) -> None:
        self.serve("PATCH")

    def do_DELETE(self) -> None:
        self.serve("DELETE")

    def body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def answer(
        self, status: int, payload: bytes, content_type: str | None, headers: Mapping[str, str]
    ) -> None:
        try:
            self.send_response(status)
            if content_type is not None:
                self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (its timeout ran out during an injected delay).
            self.close_connection = True
