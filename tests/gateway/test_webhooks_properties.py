"""Arbitrary bodies and headers at every endpoint: never a 500, never a 2xx without valid credentials."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.app import create_app
from gateway.settings import load_gateway_settings
from tests.support.http_server import ServedApp
from tests.support.senders import ENDPOINTS, SECRET_SETTINGS, auth_headers, load_fixtures

HEADER_NAMES = [
    "Content-Type",
    "X-GitHub-Event",
    "X-GitHub-Delivery",
    "X-Hub-Signature-256",
    "X-Hub-Signature",
    "X-Gitlab-Event",
    "X-Gitlab-Token",
    "Idempotency-Key",
    "X-Event-Key",
    "X-Request-UUID",
    "X-Request-Id",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "Authorization",
]
FIXTURE_BODIES = [f.body for f in load_fixtures()]
header_value = st.one_of(
    st.sampled_from(
        [
            "application/json",
            "application/x-www-form-urlencoded",
            "pull_request",
            "Merge Request Hook",
            "pullrequest:created",
            "pr:opened",
            "Bearer x",
            "sha256=00",
            "v1,AAAA",
            "push",
            "ping",
        ]
    ),
    # Printable ASCII without outer spaces: what HTTP allows a client to send at all.
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40).map(str.strip),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(orjson.dumps),
    # Real payloads with a field knocked out or replaced: the parser's hardest inputs.
    st.integers(0, len(FIXTURE_BODIES) - 1).map(FIXTURE_BODIES.__getitem__),
)


@pytest.fixture(scope="module")
def served(redis_server: Any) -> Any:
    settings = load_gateway_settings(redis_url=redis_server.url, **SECRET_SETTINGS)
    with ServedApp(create_app(settings)) as app, httpx.Client(base_url=app.url, timeout=15) as client:
        yield client


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    provider=st.sampled_from(sorted(ENDPOINTS)),
    body=bodies,
    headers=st.dictionaries(st.sampled_from(HEADER_NAMES), header_value, max_size=8),
    sign=st.booleans(),
)
def test_no_500_and_no_unauthenticated_2xx(
    served: Any, provider: str, body: bytes, headers: dict[str, str], sign: bool
) -> None:
    if sign:
        headers = {**headers, **auth_headers(provider, body)}
    answer = served.post(ENDPOINTS[provider], content=body, headers=headers)
    assert answer.status_code < 500, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.json()["status"]
    if not sign:
        assert answer.status_code == 401, answer.text
    else:
        assert answer.status_code in {200, 202, 400, 401, 403, 415}, answer.text
