"""The wake service over HTTP: whose host it is, what a browser and an API client get, nothing
from outside on the page, and payload text kept inert."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.lifecycle import Gateway, gateway_with_wake

EVIL = "x</p><script>alert(1)</script>"


@pytest.fixture
def gw(redis_server: Any, redis_client: Any) -> Iterator[Gateway]:
    with gateway_with_wake(redis_server.url) as gateway:
        yield gateway


def environment(redis_client: Any, state: str, **fields: Any) -> None:
    key = "github:acme/web:3"
    record = {
        "provider": "github",
        "repository": "acme/web",
        "number": 3,
        "state": state,
        "namespace": "web-pr-3",
        "preview_url": "https://web-pr-3.preview.example.com",
        "head_ref": EVIL,
        **fields,
    }
    redis_client.set(f"k8s-ee:status:{key}", json.dumps(record))
    redis_client.set("k8s-ee:namespace:web-pr-3", key)


def test_a_host_that_is_no_preview_is_not_found(gw: Gateway, redis_client: Any) -> None:
    environment(redis_client, "hibernated")
    assert gw.visit("nobody-pr-1", Accept="text/html").status_code == 404
    # The same first label under another domain is not this environment's host.
    other = gw.wake.get("/", headers={"Host": "web-pr-3.elsewhere.example.org", "Accept": "application/json"})
    assert other.status_code == 404 and other.json()["status"] == "not_found"
    assert gw.wake.get("/", headers={"Accept": "text/html"}).status_code == 404


def test_the_page_is_self_contained_and_payload_text_is_inert(gw: Gateway, redis_client: Any) -> None:
    environment(redis_client, "hibernated")
    page = gw.visit("web-pr-3", "/deep/link?x=1", Accept="text/html")
    assert page.status_code == 503 and page.headers["cache-control"] == "no-store"
    assert page.headers["x-k8s-ee-wake"] == "1"
    assert "<script>alert(1)</script>" not in page.text and "&lt;script&gt;" in page.text
    # No asset from anywhere: no src, no link, no URL but the page's own stream and status.
    assert not re.search(r"\s(src|href)=", page.text)
    assert "http://" not in page.text and "https://" not in page.text
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    nonce = re.search(r"'nonce-([^']+)'", policy)
    assert nonce is not None and page.text.count(f'nonce="{nonce.group(1)}"') == 3


def test_api_clients_are_told_to_come_back(gw: Gateway, redis_client: Any) -> None:
    environment(redis_client, "deploying", note="waking up: app 0/1 ready: starting")
    answer = gw.visit("web-pr-3", "/api/orders", Accept="application/json")
    assert answer.status_code == 503 and answer.headers["retry-after"] == "5"
    assert answer.json() == {
        "status": "waking",
        "environment": "web-pr-3",
        "phase": "starting",
        "progress": "waking up: app 0/1 ready: starting",
        "retry_after": 5,
    }
    # Other methods too: an API client's POST is not taken for the app's.
    assert gw.wake.post("/api/orders", headers={"Host": "web-pr-3.preview.example.com"}).status_code == 503


def test_a_failed_wake_says_so_and_a_destroyed_environment_is_gone(gw: Gateway, redis_client: Any) -> None:
    environment(redis_client, "failed", last_error="woken, but not ready after 900 s")
    page = gw.visit("web-pr-3", Accept="text/html")
    assert "did not wake" in page.text and "not ready after 900 s" in page.text
    assert gw.visit("web-pr-3", Accept="application/json").json()["status"] == "failed"
    environment(redis_client, "destroyed")
    assert gw.visit("web-pr-3", Accept="text/html").status_code == 404
