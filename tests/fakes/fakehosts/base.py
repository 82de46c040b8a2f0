"""What every fake code host shares: the HTTP server, a router, the request log and faults.

A fake is a `FakeHost` subclass with an in-memory state, a `routes()` table of handler functions,
and the host's own ways of answering errors and reading credentials. It serves HTTP/1.1 (keep-alive,
as the SDKs' connection pools expect) from a `LoopbackServer` on 127.0.0.1 in a background
thread. Handlers run one at a time under the fake's lock, so they can change the state freely.

    with FakeGitHub() as github:
        github.add_token("ghp_test")
        ...
        assert github.requests[-1].path == "/repos/octo/app/pulls/5"

Tests steer it directly (`add_*` methods, `add_fault`) and read `requests`: every call as received,
percent-encoding kept, with its query, the kind of credential it carried and when it arrived
(`time.monotonic()`, to measure how long a client held back).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl, unquote, urlsplit

from tests.support.loopback_server import KeepAliveHandler, LoopbackServer, TrackingHTTPServer


class Failure(Exception):
    """Raised by a handler: answered in the host's own error shape."""

    def __init__(
        self, status: int, message: str, headers: Mapping[str, str] | None = None, body: Any = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})
        # The whole answer, when the host's usual error shape is not what it sends here.
        self.body = body


@dataclass
class Request:
    method: str
    path: str  # as sent: percent-encoding kept
    query: dict[str, str]
    headers: Mapping[str, str]
    body: bytes
    params: dict[str, str] = field(default_factory=dict)  # route captures, percent-decoded
    principal: Any = None  # what `authenticate` made of the credential

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def int_param(self, name: str, default: int) -> int:
        value = self.query.get(name)
        if value is None or value == "":
            return default
        if not value.isdigit():
            raise Failure(400, f"{name} is invalid")
        return int(value)


@dataclass
class Response:
    status: int = 200
    body: Any = None  # dict / list: JSON; bytes / str: sent as they are
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str | None = None


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    auth: str | None  # "token", "bearer", "basic", "private-token", or None
    credential: str | None  # the token, or "user:password" for basic
    body: bytes
    at: float = field(default_factory=time.monotonic)  # when it arrived

    @property
    def call(self) -> tuple[str, str]:
        return self.method, self.path

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class Fault:
    """Answer the next `times` matching calls with `status` in the host's error shape (after
    sleeping `delay` seconds); `status=None` answers normally, only after the delay and with the
    extra `headers`. `times=-1` matches forever."""

    status: int | None = 500
    times: int = 1
    method: str = "*"
    path: str = ""  # a regex searched in the request path
    message: str = ""
    retry_after: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0

    def matches(self, method: str, path: str) -> bool:
        return self.times != 0 and self.method in ("*", method) and re.search(self.path, path) is not None


Handler = Callable[[Request], Response]


class Router:
    """Routes like `/repos/{owner}/{repo}/pulls/{number}`: `{name}` takes one path segment (its
    percent-encoding decoded after matching, so `%2F` stays inside the segment, as on the real
    hosts); `{name:path}` takes the rest of the path."""

    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        regex = re.sub(
            r"\{(\w+)(:path)?\}",
            lambda m: f"(?P<{m.group(1)}>.+)" if m.group(2) else f"(?P<{m.group(1)}>[^/]+)",
            pattern,
        )
        self._routes.append((method.upper(), re.compile(f"^{regex}$"), handler))

    def match(self, method: str, path: str) -> tuple[Handler, dict[str, str]] | None:
        if len(path) > 1:
            path = path.removesuffix("/")  # the hosts take `/pullrequests/` for `/pullrequests`
        for route_method, regex, handler in self._routes:
            found = regex.match(path)
            if found and route_method == method:
                return handler, {k: unquote(v) for k, v in found.groupdict().items()}
        return None


def page_of(items: Sequence[Any], page: int, per_page: int) -> tuple[list[Any], int]:
    """Items of 1-based `page`, and the number of the last page (at least 1)."""
    per_page = max(1, per_page)
    last = max(1, -(-len(items) // per_page))
    start = (max(1, page) - 1) * per_page
    return list(items[start : start + per_page]), last


def parse_authorization(headers: Mapping[str, str]) -> tuple[str | None, str | None]:
    value = headers.get("Authorization")
    if value:
        scheme, _, credential = value.partition(" ")
        credential = credential.strip()
        if scheme.lower() == "basic":
            with contextlib.suppress(ValueError):
                credential = base64.b64decode(credential).decode()
        return scheme.lower(), credential
    if headers.get("PRIVATE-TOKEN"):
        return "private-token", headers["PRIVATE-TOKEN"]
    return None, None


class _HTTPServer(TrackingHTTPServer):
    def __init__(self, address: tuple[str, int], fake: FakeHost) -> None:
        super().__init__(address, _Handler)
        self.fake = fake


class _Handler(KeepAliveHandler):
    server: _HTTPServer

    def serve(self, method: str) -> None:
        url = urlsplit(self.path)
        request = Request(
            method=method,
            path=url.path,
            query=dict(parse_qsl(url.query, keep_blank_values=True)),
            headers=_Headers(self.headers),
            body=self.body(),
        )
        response = self.server.fake.respond(request)
        body = response.body
        content_type = response.content_type
        if isinstance(body, (dict, list)):
            payload = json.dumps(body).encode()
            content_type = content_type or "application/json; charset=utf-8"
        elif isinstance(body, str):
            payload = body.encode()
            content_type = content_type or "text/plain; charset=utf-8"
        else:
            payload = body or b""
            content_type = content_type or "application/octet-stream"
        empty = not payload and response.status in (204, 304)
        self.answer(response.status, payload, None if empty else content_type, response.headers)


class _Headers(Mapping[str, str]):
    """Request headers, looked up case-insensitively."""

    def __init__(self, message: Any) -> None:
        self._items: dict[str, str] = {str(k).lower(): str(v) for k, v in message.items()}

    def __getitem__(self, key: str) -> str:
        return self._items[key.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


class FakeHost:
    """Base of the fakes. A subclass sets `name`, fills `routes()`, and answers `error()`."""

    name = "fake"
    # Every route is served under this path (GitHub Enterprise `/api/v3`, GitLab `/api/v4`, ...).
    prefix = ""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._address = (host, port)
        self.lock = threading.RLock()
        self.router = Router()
        self.routes()
        self._requests: list[RecordedRequest] = []
        self._faults: list[Fault] = []
        self._stopping = threading.Event()
        self._served: LoopbackServer | None = None
        self.origin = ""

    # -- what a subclass provides --------------------------------------------------------------

    def routes(self) -> None:
        raise NotImplementedError

    def error(self, status: int, message: str) -> Response:
        """An error answer in the host's own shape."""
        raise NotImplementedError

    def authenticate(self, request: Request) -> None:
        """Check the request's credential (raise `Failure(401, ...)`), and set `request.principal`."""

    def finish(self, request: Request, response: Response) -> None:
        """Add what the host puts on every answer (GitHub's rate-limit headers, say)."""

    def not_found_route(self, request: Request) -> Response:
        return self.error(404, "Not Found")

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL an SDK is given: origin plus `prefix`."""
        return self.origin + self.prefix

    def start(self) -> str:
        if self._served is None:
            self._stopping.clear()
            self._served = LoopbackServer(_HTTPServer(self._address, self), name=self.name)
            self.origin = f"http://{self._address[0]}:{self._served.port}"
        return self.url

    def stop(self) -> None:
        if self._served is None:
            return
        self._stopping.set()
        self._served.stop()
        self._served = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    # -- requests and faults -------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        with self.lock:
            return list(self._requests)

    def calls(self) -> list[tuple[str, str]]:
        """(method, path) of every request so far."""
        return [record.call for record in self.requests]

    def writes(self) -> list[tuple[str, str]]:
        """(method, path) of every request so far that was not a GET."""
        return [record.call for record in self.requests if record.method != "GET"]

    def reset_requests(self) -> None:
        with self.lock:
            self._requests.clear()

    def add_fault(
        self,
        status: int | None = 500,
        times: int = 1,
        *,
        method: str = "*",
        path: str = "",
        message: str = "",
        retry_after: str | int | None = None,
        headers: Mapping[str, str] | None = None,
        delay: float = 0.0,
    ) -> Fault:
        fault = Fault(
            status=status,
            times=times,
            method=method.upper(),
            path=path,
            message=message,
            retry_after=None if retry_after is None else str(retry_after),
            headers=dict(headers or {}),
            delay=delay,
        )
        with self.lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self.lock:
            self._faults.clear()

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    if fault.times > 0:
                        fault.times -= 1
                    return fault
        return None

    # -- serving -------------------------------------------------------------------------------

    def respond(self, request: Request) -> Response:
        auth, credential = parse_authorization(request.headers)
        with self.lock:
            self._requests.append(
                RecordedRequest(request.method, request.path, request.query, auth, credential, request.body)
            )
        try:
            fault = self._take_fault(request.method, request.path)
            if fault is not None and fault.delay:
                self._stopping.wait(fault.delay)
            with self.lock:
                if fault is not None and fault.status is not None:
                    response = self.error(fault.status, fault.message or reason(fault.status))
                    if fault.retry_after is not None:
                        response.headers["Retry-After"] = fault.retry_after
                    response.headers.update(fault.headers)
                else:
                    response = self._route(request)
                    if fault is not None:
                        response.headers.update(fault.headers)
                self.finish(request, response)
                return response
        except Exception as error:  # a bug here must reach the client as a real 500, not a hang
            traceback.print_exc(file=sys.stderr)
            return Response(500, {"message": f"fake {self.name} error: {type(error).__name__}: {error}"})

    def _route(self, request: Request) -> Response:
        path = request.path
        if self.prefix:
            if not path.startswith(self.prefix + "/"):
                return self.not_found_route(request)
            path = path[len(self.prefix) :]
        try:
            self.authenticate(request)
            found = self.router.match(request.method, path)
            if found is None:
                return self.not_found_route(request)
            handler, request.params = found
            return handler(request)
        except Failure as failure:
            if failure.body is not None:
                response = Response(failure.status, failure.body)
            else:
                response = self.error(failure.status, failure.message)
            response.headers.update(failure.headers)
            return response


_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def reason(status: int) -> str:
    return _REASONS.get(status, "Error")


def fake_sha(seed: str) -> str:
    """A full, stable 40-hex commit SHA for a test's name of a commit."""
    return hashlib.sha1(seed.encode()).hexdigest()
