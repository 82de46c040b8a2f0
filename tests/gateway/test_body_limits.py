"""Unauthenticated memory exhaustion: real stalled uploads over sockets against uvicorn.

Asserts what the gateway answers and how many body bytes it holds, never how fast.
"""

from __future__ import annotations

import re
import socket
import time
from typing import Any

import httpx

from tests.support.senders import auth_headers, load_fixtures

FIXTURE = next(f for f in load_fixtures("github") if f.name == "pull_request.opened")
KIB = 1024


def request_head(path: str, length: int, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: gateway", f"Content-Length: {length}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=30)


def answer(sock: socket.socket) -> tuple[int, dict[str, str]]:
    """Status and headers of the response, however long the gateway takes to send it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError(f"closed without an answer: {data!r}")
        data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode()
    status_line, *header_lines = head.split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in header_lines)}
    return int(status_line.split()[1]), headers


def in_flight(client: httpx.Client) -> float:
    found = re.search(r"^k8s_ee_body_bytes_in_flight (\S+)$", client.get("/metrics").text, re.M)
    assert found
    return float(found.group(1))


# A credential header of the endpoint's kind (not a valid one: nothing is verified before the body).
STALLER = {
    "Content-Type": "application/json",
    "X-GitHub-Event": "pull_request",
    "X-Hub-Signature-256": "sha256=00",
}


def test_stalled_uploads_are_bounded_and_timed_out(gateway: Any) -> None:
    capacity = 256 * KIB
    client = gateway(max_body_bytes=64 * KIB, max_body_bytes_in_flight=capacity, body_read_timeout=5)
    sockets = []
    statuses: list[tuple[int, dict[str, str]]] = []
    peak = 0.0
    try:
        # Twelve uploads that promise 60 KiB, send 50 KiB and stall: 600 KiB, over twice the cap.
        for _ in range(12):
            sock = connect(str(client.base_url))
            sock.sendall(request_head("/webhooks/github", 60 * KIB, STALLER) + b" " * (50 * KIB))
            sockets.append(sock)
            peak = max(peak, in_flight(client))
        peak = max(peak, in_flight(client))
        for sock in sockets:
            statuses.append(answer(sock))
    finally:
        for sock in sockets:
            sock.close()
    codes = sorted(code for code, _ in statuses)
    # What fits is held until the read deadline (408); the rest is shed at once (503).
    assert set(codes) == {408, 503}, codes
    assert codes.count(503) >= 12 - capacity // (50 * KIB)
    assert all(headers.get("retry-after") for code, headers in statuses if code == 503)
    assert 0 < peak <= capacity
    # Everything given back: a real delivery goes through.
    assert in_flight(client) == 0
    good = client.post(FIXTURE.endpoint, content=FIXTURE.body, headers=FIXTURE.signed())
    assert good.status_code == 202, good.text


def test_no_credential_header_is_refused_before_the_body(gateway: Any) -> None:
    # A long read deadline: an answer that comes without the body being sent was not waiting for it.
    client = gateway(body_read_timeout=120)
    for path in ("/webhooks/github", "/webhooks/gitlab", "/webhooks/bitbucket", "/webhooks/generic"):
        with connect(str(client.base_url)) as sock:
            sock.settimeout(20)
            sock.sendall(request_head(path, 4 * 1024 * KIB, {"Content-Type": "application/json"}))
            code, _ = answer(sock)
        assert code == 401, path
    assert in_flight(client) == 0


def test_a_body_that_never_completes_is_408(gateway: Any) -> None:
    client = gateway(body_read_timeout=1)
    with connect(str(client.base_url)) as sock:
        headers = {**STALLER, **auth_headers("github", FIXTURE.body)}
        sock.sendall(request_head("/webhooks/github", len(FIXTURE.body), headers) + FIXTURE.body[:100])
        code, _ = answer(sock)
    assert code == 408
    logged = client.get(
        "/api/v1/deliveries", params={"verdict": "rejected"}, headers={"Authorization": "Bearer admin-token"}
    ).json()["items"]
    assert [(e["status"], "not received within 1 s" in e["reason"]) for e in logged] == [(408, True)]


def test_a_slow_but_steady_sender_within_the_deadline_is_accepted(gateway: Any) -> None:
    client = gateway(body_read_timeout=10)
    with connect(str(client.base_url)) as sock:
        headers = {**FIXTURE.signed(), "Content-Type": "application/json"}
        sock.sendall(request_head("/webhooks/github", len(FIXTURE.body), headers))
        for i in range(0, len(FIXTURE.body), 8 * KIB):
            sock.sendall(FIXTURE.body[i : i + 8 * KIB])
            time.sleep(0.05)
        code, _ = answer(sock)
    assert code == 202
