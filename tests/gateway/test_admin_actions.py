"""The admin API's write routes: each action is an event stored and queued like a webhook's, logged in the
delivery log, and never more than a queued job (the web process does not touch the cluster)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from arq.jobs import deserialize_job
from redis.asyncio import Redis

from gateway.openapi import document, rendered
from gateway.settings import load_gateway_settings
from handlers.queue import Job, job_key
from handlers.status import AppliedBy, EnvironmentStatus, StatusStore
from providers.events import Provider
from tests.support.senders import ADMIN_TOKEN, auth_headers

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
BASE = "/api/v1/environments/github/acme/web/42"
OPENAPI_FILE = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def seed(redis_url: str, **fields: Any) -> None:
    """An environment the worker would have recorded."""

    async def put() -> None:
        redis = Redis.from_url(redis_url)
        settings = load_gateway_settings(redis_url=redis_url)
        store = StatusStore(
            redis,
            settings.keys,
            settings.connection.retention_ms,
            settings.connection.environment_retention_ms,
        )
        status = EnvironmentStatus(
            provider=Provider.GITHUB,
            repository="acme/web",
            number=42,
            state="deployed",
            namespace="web-pr-42",
            head_sha="a" * 40,
            updated_at=datetime.now(UTC),
            **fields,
        )
        await store.put(status)
        await store.claim("web-pr-42", status.key)
        await store.link(
            Provider.GITHUB, ["old"], AppliedBy(reconcile="x#1", state="deployed", at=datetime.now(UTC))
        )
        await redis.aclose()

    asyncio.run(put())


SETTINGS = load_gateway_settings()
APPLIED = SETTINGS.keys.applied(Provider.GENERIC, "ci-delivery-1")


def queued(redis_client: Any) -> list[Any]:
    ids = redis_client.zrange(SETTINGS.connection.queue_name, 0, -1)
    return [deserialize_job(redis_client.get(job_key(i.decode()))) for i in ids]


def test_the_environment_is_read_by_its_change(gateway: Any, redis_server: Any) -> None:
    client = gateway()
    assert client.get(BASE, headers=ADMIN).status_code == 404
    seed(redis_server.url)
    answer = client.get(BASE, headers=ADMIN)
    assert answer.status_code == 200 and answer.json()["namespace"] == "web-pr-42"
    assert client.get("/api/v1/environments/web-pr-42", headers=ADMIN).json()["number"] == 42
    assert client.get("/api/v1/environments/nope/acme/web/42", headers=ADMIN).status_code == 400


def test_an_action_is_stored_queued_and_logged_like_any_event(
    gateway: Any, redis_server: Any, redis_client: Any
) -> None:
    client = gateway()
    assert client.post(f"{BASE}/hibernate", headers=ADMIN).status_code == 404, "no such environment"
    assert queued(redis_client) == []
    seed(redis_server.url)

    answer = client.post(f"{BASE}/hibernate", headers=ADMIN)

    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["status"] == "accepted" and body["delivery_id"].startswith("admin-")
    assert body["event"]["type"] == "env.hibernate" and body["event"]["provider"] == "github"
    [job] = queued(redis_client)
    assert job.function == Job.PROCESS_EVENT
    assert json.loads(job.args[0])["delivery_id"] == body["delivery_id"]
    log = client.get("/api/v1/deliveries", params={"verdict": "accepted"}, headers=ADMIN).json()["items"]
    assert [e["delivery_id"] for e in log] == [body["delivery_id"]]
    stored = client.get(f"/api/v1/deliveries/{body['delivery_id']}", headers=ADMIN).json()["attempts"][0]
    assert "authorization" not in {k.lower() for k in stored["request"]["headers"]}, (
        "the token is never stored"
    )


def test_an_idempotency_key_makes_a_retried_action_a_duplicate(
    gateway: Any, redis_server: Any, redis_client: Any
) -> None:
    client = gateway()
    seed(redis_server.url)
    headers = {**ADMIN, "Idempotency-Key": "ci-run-7"}
    first = client.post(f"{BASE}/destroy", headers=headers)
    again = client.post(f"{BASE}/destroy", headers=headers)
    assert first.status_code == 202 and first.json()["delivery_id"] == "ci-run-7"
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    assert len(queued(redis_client)) == 1


def test_a_sync_becomes_the_event_the_missed_webhook_would_have_been(gateway: Any, redis_client: Any) -> None:
    client = gateway()
    opened = client.post(
        f"{BASE}/sync",
        headers=ADMIN,
        json={"state": "open", "head_sha": "ABCDEF1234", "head_ref": "feature", "draft": True, "fork": True},
    )
    closed = client.post(f"{BASE}/sync", headers=ADMIN, json={"state": "merged", "head_sha": "abcdef1234"})
    assert opened.status_code == 202 and closed.status_code == 202
    first, second = opened.json()["event"], closed.json()["event"]
    assert (first["type"], first["head_sha"], first["draft"], first["fork"]) == (
        "change.updated",
        "abcdef1234",
        True,
        True,
    )
    assert (second["type"], second["merged"]) == ("change.closed", True)
    refused = client.post(f"{BASE}/sync", headers=ADMIN, json={"state": "open", "bogus": 1})
    assert refused.status_code == 400 and "bogus" in refused.json()["error"]
    assert client.post(f"{BASE}/explode", headers=ADMIN).status_code == 404
    assert len(queued(redis_client)) == 2


def test_preserve_is_the_operators_command_stored_and_queued(
    gateway: Any, redis_server: Any, redis_client: Any
) -> None:
    client = gateway()
    seed(redis_server.url)
    answer = client.post(f"{BASE}/preserve", headers=ADMIN, json={"hours": 5})
    assert answer.status_code == 202, answer.text
    event = answer.json()["event"]
    assert (event["type"], event["comment"]["body"], event["operator"]) == (
        "comment.created",
        "/preserve 5",
        True,
    )
    default = client.post(f"{BASE}/preserve", headers=ADMIN).json()["event"]
    assert default["comment"]["body"] == "/preserve"
    assert (
        client.post(f"{BASE}/unpreserve", headers=ADMIN).json()["event"]["comment"]["body"] == "/unpreserve"
    )
    assert client.post(f"{BASE}/preserve", headers=ADMIN, json={"hours": 0}).status_code == 400
    assert client.post(f"{BASE}/unpreserve", headers=ADMIN, json={"hours": 3}).status_code == 400
    assert len(queued(redis_client)) == 3
    # An event from a code host never carries the mark: it is left out of the JSON when false.
    assert "operator" not in client.post(f"{BASE}/hibernate", headers=ADMIN).json()["event"]


def test_actions_need_the_admin_token(gateway: Any, redis_server: Any, redis_client: Any) -> None:
    client = gateway()
    seed(redis_server.url)
    assert client.post(f"{BASE}/destroy").status_code == 401
    assert client.post(f"{BASE}/destroy", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert queued(redis_client) == []


def test_a_replay_queues_the_stored_event_again_as_a_new_attempt(gateway: Any, redis_client: Any) -> None:
    client = gateway()
    body = json.dumps({"action": "destroy", "repository": "acme/web", "number": 42}).encode()
    sent = client.post(
        "/webhooks/generic",
        content=body,
        headers={"Content-Type": "application/json", **auth_headers("generic", body, "ci-delivery-1")},
    )
    assert sent.status_code == 202
    redis_client.delete(SETTINGS.connection.queue_name)
    redis_client.set(APPLIED, "{}")

    answer = client.post("/api/v1/deliveries/ci-delivery-1/replay", headers=ADMIN)

    assert answer.status_code == 202, answer.text
    assert answer.json()["attempt"] == 2 and answer.json()["event"]["type"] == "env.destroy"
    [job] = queued(redis_client)
    assert json.loads(job.args[0])["delivery_id"] == "ci-delivery-1"
    attempts = client.get("/api/v1/deliveries/ci-delivery-1", headers=ADMIN).json()["attempts"]
    assert [a["reason"] for a in attempts] == [None, "replayed through the admin API"]
    assert redis_client.get(APPLIED) is None, "the worker's result is recorded anew"


def test_only_an_accepted_delivery_can_be_replayed(gateway: Any) -> None:
    client = gateway()
    assert client.post("/api/v1/deliveries/nothing-here/replay", headers=ADMIN).status_code == 404
    client.post(
        "/webhooks/generic",
        content=b"{}",
        headers={"Content-Type": "application/json", "webhook-id": "bad-1"},
    )
    refused = client.post("/api/v1/deliveries/bad-1/replay", headers=ADMIN)
    assert refused.status_code == 409 and "never accepted" in refused.json()["error"]


# -- the OpenAPI document --------------------------------------------------------------------------------


def _template(path: str) -> str:
    """A Starlette route path as an OpenAPI path template (`{repository:path}` -> `{repository}`)."""
    import re

    return re.sub(r"\{(\w+):\w+\}", r"{\1}", path)


def test_the_served_document_the_committed_file_and_the_routes_agree(gateway: Any) -> None:
    client = gateway()
    served = client.get("/api/v1/openapi.json")
    assert served.status_code == 200, "the document is served without the admin token"
    assert served.json() == document()
    assert OPENAPI_FILE.read_text() == rendered(), (
        "docs/openapi.json is stale: python -m gateway.openapi > docs/openapi.json"
    )

    from gateway.app import create_app

    routes = {
        (method, _template(route.path))
        for route in create_app(load_gateway_settings()).routes
        if route.path.startswith("/api/v1")
        for method in (route.methods or set()) - {"HEAD"}
    }
    documented = {(method.upper(), path) for path, item in document()["paths"].items() for method in item}
    assert routes == documented


@pytest.mark.parametrize("path", list(document()["paths"]))
def test_every_documented_operation_names_its_answers(path: str) -> None:
    for operation in document()["paths"][path].values():
        assert operation["summary"] and operation["responses"]
        for parameter in operation.get("parameters", []):
            if parameter["in"] == "path":
                assert "{" + parameter["name"] + "}" in path
