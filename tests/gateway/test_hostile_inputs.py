"""Timestamps and dates of every shape, over HTTP: a 401 or a 400 naming the field, never a 500."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.app import create_app
from gateway.endpoints import ENDPOINTS, Endpoint
from gateway.settings import load_gateway_settings
from tests.support.http_server import ServedApp
from tests.support.senders import (
    GENERIC_SECRET,
    GENERIC_TOKEN,
    GITLAB_SIGNING,
    SECRET_SETTINGS,
    load_fixtures,
    standard_signature,
)

GENERIC = next(f for f in load_fixtures("generic") if f.name == "deploy")
GITLAB = next(f for f in load_fixtures("gitlab") if f.name == "merge_request.open")


@pytest.fixture(scope="module")
def served(redis_server: Any) -> Iterator[httpx.Client]:
    app = create_app(load_gateway_settings(redis_url=redis_server.url, **SECRET_SETTINGS))
    with ServedApp(app) as running, httpx.Client(base_url=running.url, timeout=15) as client:
        yield client


def signed(secret: str, timestamp: str, body: bytes) -> dict[str, bytes]:
    msg_id = f"ts-{uuid.uuid4()}"
    # Signed over the timestamp as sent: the timestamp is the only thing on trial.
    signature = standard_signature(secret, msg_id, timestamp, body)  # type: ignore[arg-type]
    return {
        "webhook-id": msg_id.encode(),
        "webhook-timestamp": timestamp.encode("utf-8"),
        "webhook-signature": signature.encode(),
        "Idempotency-Key": msg_id.encode(),
    }


NOW = int(time.time())
timestamps = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.integers(min_value=0, max_value=10**400).map(str),
    st.integers(min_value=NOW - 100, max_value=NOW + 100).map(lambda n: f"+{n}"),
    st.integers(min_value=NOW - 100, max_value=NOW + 100).map(lambda n: f"{n:_}"),
    st.integers(min_value=NOW - 100, max_value=NOW + 100).map(lambda n: f"{n} 0"),
    st.integers(min_value=NOW - 100, max_value=NOW + 100).map(lambda n: f"{n}.5"),
    # The same digits in other scripts: `int()` reads them, a timestamp is never written so.
    st.integers(min_value=NOW - 100, max_value=NOW + 100).map(
        lambda n: str(n).translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    ),
    st.just("1" * 500),
    st.just("0" * 20 + str(NOW)),
    # What HTTP lets a client send at all: no control characters, no surrounding spaces.
    st.text(min_size=1, max_size=30)
    .map(lambda t: "".join(c for c in t if c.isprintable()).strip())
    .filter(bool),
)


def well_formed(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 12 and abs(int(text) - time.time()) < 250


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(timestamp=timestamps, endpoint=st.sampled_from(["generic", "gitlab"]))
def test_timestamps_of_every_shape(served: httpx.Client, timestamp: str, endpoint: str) -> None:
    fixture, secret = (GENERIC, GENERIC_SECRET) if endpoint == "generic" else (GITLAB, GITLAB_SIGNING)
    headers: dict[str, Any] = {**fixture.headers, **signed(secret, timestamp, fixture.body)}
    answer = served.post(fixture.endpoint, content=fixture.body, headers=headers)
    assert answer.status_code < 500, answer.text
    if well_formed(timestamp):
        assert answer.status_code == 202, answer.text
    else:
        assert answer.status_code == 401, answer.text
        assert "webhook-timestamp" in answer.json()["reason"]


offsets = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
    lambda m: ("-" if m < 0 else "+") + f"{abs(m) // 60:02d}:{abs(m) % 60:02d}"
)
dates = st.one_of(
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)).flatmap(
        lambda d: (
            st.sampled_from(["", "Z"]).map(lambda z: d.isoformat() + z)
            | offsets.map(lambda o: d.isoformat() + o)
        )
    ),
    st.sampled_from(["0001-01-01T00:00:00+00:01", "9999-12-31T23:59:59-00:01", "0000-01-01T00:00:00Z"]),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(when=dates)
def test_generic_occurred_at_of_every_shape(served: httpx.Client, when: Any) -> None:
    body = json.dumps({**json.loads(GENERIC.body), "occurred_at": when}).encode()
    headers = {**GENERIC.headers, "Authorization": f"Bearer {GENERIC_TOKEN}"}
    answer = served.post(GENERIC.endpoint, content=body, headers=headers)
    assert answer.status_code in (202, 400), answer.text
    if answer.status_code == 400:
        assert answer.json()["reason"].startswith("field occurred_at: "), answer.text
    else:
        moment = datetime.fromisoformat(answer.json()["event"]["occurred_at"])
        assert datetime(1970, 1, 1, tzinfo=UTC) <= moment < datetime(9000, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"])
def test_out_of_range_occurred_at_is_a_400_naming_the_field(served: httpx.Client, when: str) -> None:
    body = json.dumps({**json.loads(GENERIC.body), "occurred_at": when}).encode()
    headers = {**GENERIC.headers, "Authorization": f"Bearer {GENERIC_TOKEN}"}
    answer = served.post(GENERIC.endpoint, content=body, headers=headers)
    assert answer.status_code == 400
    assert answer.json()["reason"].startswith("field occurred_at: must be a time from 1970-01-01")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(when=dates)
def test_code_host_dates_of_every_shape(served: httpx.Client, when: Any) -> None:
    # A GitLab merge request whose `updated_at` is anything at all: used, or unusable; never a 500.
    data = json.loads(GITLAB.body)
    data["object_attributes"]["updated_at"] = when
    body = json.dumps(data).encode()
    headers = {**GITLAB.headers, "X-Gitlab-Token": SECRET_SETTINGS["gitlab_webhook_token"]}
    answer = served.post(
        GITLAB.endpoint, content=body, headers={**headers, "Idempotency-Key": str(uuid.uuid4())}
    )
    assert answer.status_code in (200, 202), answer.text
    if answer.status_code == 200:
        assert answer.json()["status"] == "unusable"
        assert "updated_at" in answer.json()["reason"]


def crash(*args: object) -> Any:
    return 1 // 0


def _broken(part: str) -> tuple[Endpoint, ...]:
    """The real table, with a bug (ZeroDivisionError) in the generic trigger's verify or GitHub's parse."""
    github = next(row for row in ENDPOINTS if row.name == "github")
    broken_adapter = dataclasses.replace(github.choose({}), parse=crash)
    rows = []
    for row in ENDPOINTS:
        if row.name == "generic" and part == "verify":
            row = dataclasses.replace(row, verify=crash)
        if row.name == "github" and part == "parse":
            row = dataclasses.replace(row, choose=lambda headers: broken_adapter)
        rows.append(row)
    return tuple(rows)


def test_a_bug_in_verification_is_a_401_with_a_reason(redis_server: Any, caplog: Any) -> None:
    app = create_app(load_gateway_settings(redis_url=redis_server.url, **SECRET_SETTINGS), _broken("verify"))
    with ServedApp(app) as running, caplog.at_level(logging.ERROR, logger="k8s_ee.gateway"):
        answer = httpx.post(
            running.url + GENERIC.endpoint,
            content=GENERIC.body,
            headers={**GENERIC.headers, "Authorization": f"Bearer {GENERIC_TOKEN}"},
        )
    assert answer.status_code == 401 and "could not be verified" in answer.json()["reason"]
    assert any("verifying a delivery failed unexpectedly" in r.getMessage() for r in caplog.records)


def test_a_bug_in_reading_a_verified_delivery_is_unusable_not_a_500(redis_server: Any, caplog: Any) -> None:
    github = next(f for f in load_fixtures("github") if f.name == "pull_request.opened")
    app = create_app(load_gateway_settings(redis_url=redis_server.url, **SECRET_SETTINGS), _broken("parse"))
    with ServedApp(app) as running, caplog.at_level(logging.ERROR, logger="k8s_ee.gateway"):
        answer = httpx.post(running.url + github.endpoint, content=github.body, headers=github.signed())
    assert answer.status_code == 200 and answer.json()["status"] == "unusable"
    assert "could not read this delivery" in answer.json()["reason"]
    assert any("reading a verified delivery failed unexpectedly" in r.getMessage() for r in caplog.records)
