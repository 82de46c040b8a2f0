"""End to end over HTTP: real uvicorn, real Redis, every provider's fixtures signed as the sender would."""

from __future__ import annotations

import pickle
import subprocess
import sys
import time
import uuid
from typing import Any

import pytest
from arq.jobs import deserialize_job

from providers.events import LifecycleEvent
from tests.support.heartbeat import worker_seen
from tests.support.redis_server import RedisServer
from tests.support.senders import (
    ADMIN_TOKEN,
    GENERIC_SECRET,
    GENERIC_TOKEN,
    GITHUB_OLD_SECRET,
    GITLAB_SIGNING,
    GITLAB_TOKEN,
    Fixture,
    auth_headers,
    hub_signature,
    load_fixtures,
    standard_signature,
)

FIXTURES = load_fixtures()
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
QUEUE = "k8s-ee:queue"


def first(provider: str, status: str = "accepted") -> Fixture:
    return next(f for f in FIXTURES if f.provider == provider and f.expected["status"] == status)


def queued_events(redis: Any) -> list[LifecycleEvent]:
    events = []
    for job_id in redis.zrange(QUEUE, 0, -1):
        raw = redis.get(b"arq:job:" + job_id)
        # arq's own reader: what the worker will see.
        job = deserialize_job(raw, deserializer=pickle.loads)
        assert job.function == "process_event" and not job.kwargs
        events.append(LifecycleEvent.model_validate_json(job.args[0]))
    return events


def test_every_provider_has_fixtures() -> None:
    providers = {f.provider for f in FIXTURES}
    assert providers == {"github", "gitlab", "bitbucket-cloud", "bitbucket-server", "generic"}


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda f: f"{f.provider}/{f.name}")
def test_fixture_delivery(fixture: Fixture, gateway: Any, redis_client: Any) -> None:
    client = gateway()
    delivery_id = str(uuid.uuid4())
    answer = client.post(fixture.endpoint, content=fixture.body, headers=fixture.signed(delivery_id))
    expected = fixture.expected
    body = answer.json()
    assert body["status"] == expected["status"], body
    if expected["status"] == "accepted":
        assert answer.status_code == 202
        event = body["event"]
        assert event["delivery_id"] == delivery_id
        assert {k: v for k, v in event.items() if k not in ("delivery_id", "received_at")} == expected[
            "event"
        ]
        # Stored and queued before the answer: the job is there, in arq's format.
        [queued] = queued_events(redis_client)
        assert queued.model_dump(mode="json") == event
    else:
        assert answer.status_code == 200
        assert redis_client.zcard(QUEUE) == 0
        if expected["status"] == "ignored":
            assert body["reason"]


@pytest.mark.parametrize("provider", ["github", "gitlab", "bitbucket-cloud", "bitbucket-server", "generic"])
def test_bad_and_missing_credentials_are_401(provider: str, gateway: Any, redis_client: Any) -> None:
    client = gateway()
    fixture = first(provider)
    good = fixture.signed()
    if provider == "gitlab":
        # GitLab's secret token does not cover the body: a wrong token is the forgery.
        tampered, headers = fixture.body, {**good, "X-Gitlab-Token": "guess"}
    else:
        tampered, headers = fixture.body.replace(b"}", b" }", 1), good
    answer = client.post(fixture.endpoint, content=tampered, headers=headers)
    assert answer.status_code == 401, answer.text
    assert answer.json()["status"] == "rejected" and answer.json()["reason"]
    answer = client.post(fixture.endpoint, content=fixture.body, headers=fixture.headers)
    assert answer.status_code == 401
    assert redis_client.zcard(QUEUE) == 0


def test_duplicate_delivery_is_stored_once(gateway: Any, redis_client: Any) -> None:
    client = gateway()
    fixture = first("github")
    headers = fixture.signed("dup-1")
    assert client.post(fixture.endpoint, content=fixture.body, headers=headers).status_code == 202
    again = client.post(fixture.endpoint, content=fixture.body, headers=headers)
    assert again.status_code == 200
    assert again.json()["status"] == "duplicate"
    assert "already accepted" in again.json()["reason"]
    assert redis_client.zcard(QUEUE) == 1


def test_gitlab_idempotency_key_is_the_dedup_key(gateway: Any, redis_client: Any) -> None:
    client = gateway()
    fixture = first("gitlab")
    headers = {**fixture.headers, "X-Gitlab-Token": GITLAB_TOKEN, "Idempotency-Key": "idem-1"}
    assert (
        client.post(
            fixture.endpoint, content=fixture.body, headers={**headers, "X-Gitlab-Webhook-UUID": "a"}
        ).status_code
        == 202
    )
    # A retry keeps the Idempotency-Key; the webhook UUID may differ.
    again = client.post(
        fixture.endpoint, content=fixture.body, headers={**headers, "X-Gitlab-Webhook-UUID": "b"}
    )
    assert again.json()["status"] == "duplicate"


def test_generic_requests_without_id_are_each_acted_on(gateway: Any, redis_client: Any) -> None:
    client = gateway()
    deploy = next(f for f in FIXTURES if f.provider == "generic" and f.name == "deploy")
    destroy = next(f for f in FIXTURES if f.provider == "generic" and f.name == "destroy")
    auth = {"Authorization": f"Bearer {GENERIC_TOKEN}"}
    answers = [
        client.post(f.endpoint, content=f.body, headers={**f.headers, **auth})
        for f in (deploy, destroy, deploy)
    ]
    # deploy, destroy, deploy of the same bodies: three commands, the last one not lost.
    assert [a.status_code for a in answers] == [202, 202, 202], [a.text for a in answers]
    ids = [a.json()["delivery_id"] for a in answers]
    assert len(set(ids)) == 3 and all(i.startswith("req-") for i in ids)
    # In the order received (the queue's score is the millisecond: two may share one, and then
    # the queue lists them by job id; the worker orders an environment's events by received_at).
    queued = sorted(queued_events(redis_client), key=lambda e: e.received_at)
    assert [e.type.value for e in queued] == ["env.deploy", "env.destroy", "env.deploy"]
    # With a webhook-id, a repeat is the same delivery, as before.
    with_id = {**deploy.headers, **auth, "webhook-id": "ci-run-7"}
    assert client.post(deploy.endpoint, content=deploy.body, headers=with_id).status_code == 202
    again = client.post(deploy.endpoint, content=deploy.body, headers=with_id)
    assert again.json()["status"] == "duplicate"


def test_a_code_host_delivery_without_id_is_deduplicated_by_body_hash(
    gateway: Any, redis_client: Any
) -> None:
    client = gateway()
    fixture = first("github")
    headers = {k: v for k, v in fixture.signed().items() if k != "X-GitHub-Delivery"}
    answer = client.post(fixture.endpoint, content=fixture.body, headers=headers)
    assert answer.status_code == 202 and answer.json()["delivery_id"].startswith("sha256-")
    assert (
        client.post(fixture.endpoint, content=fixture.body, headers=headers).json()["status"] == "duplicate"
    )


def test_rotated_github_secrets_both_pass(gateway: Any, redis_client: Any) -> None:
    client = gateway()
    fixture = first("github")
    old = {
        **fixture.headers,
        "X-GitHub-Delivery": "old",
        "X-Hub-Signature-256": hub_signature(GITHUB_OLD_SECRET, fixture.body),
    }
    assert client.post(fixture.endpoint, content=fixture.body, headers=old).status_code == 202
    assert (
        client.post(fixture.endpoint, content=fixture.body, headers=fixture.signed("new")).status_code == 202
    )
    wrong = {
        **old,
        "X-GitHub-Delivery": "wrong",
        "X-Hub-Signature-256": hub_signature("retired", fixture.body),
    }
    assert client.post(fixture.endpoint, content=fixture.body, headers=wrong).status_code == 401


def test_github_documentation_test_vector(gateway: Any) -> None:
    client = gateway(github_webhook_secret="It's a Secret to Everybody")
    headers = {
        "X-GitHub-Event": "pull_request",
        "X-GitHub-Delivery": "vector",
        "Content-Type": "application/json",
        "X-Hub-Signature-256": "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
    }
    answer = client.post("/webhooks/github", content=b"Hello, World!", headers=headers)
    # The signature passes; the body is not JSON, which is the next thing said.
    assert answer.status_code == 400, answer.text
    assert "JSON" in answer.json()["reason"]
    headers["X-Hub-Signature-256"] = "sha256=" + "0" * 64
    assert client.post("/webhooks/github", content=b"Hello, World!", headers=headers).status_code == 401


def test_generic_signature_window_and_replay(gateway: Any, redis_client: Any) -> None:
    client = gateway()
    fixture = first("generic")
    now = time.time()
    fresh = {**fixture.headers, **auth_headers("generic", fixture.body, "msg-1", now=now)}
    assert client.post(fixture.endpoint, content=fixture.body, headers=fresh).status_code == 202
    # The same message again inside the window is a replay: nothing is queued twice.
    replay = client.post(fixture.endpoint, content=fixture.body, headers=fresh)
    assert replay.status_code == 200 and replay.json()["status"] == "duplicate"
    # Well outside the 5-minute window: the gateway reads its clock a little after the test does.
    for skew in (-360, 360):
        stale = {**fixture.headers, **auth_headers("generic", fixture.body, f"msg-{skew}", now=now + skew)}
        answer = client.post(fixture.endpoint, content=fixture.body, headers=stale)
        assert answer.status_code == 401 and "timestamp" in answer.json()["reason"]
    inside = {**fixture.headers, **auth_headers("generic", fixture.body, "msg-inside", now=now - 250)}
    assert client.post(fixture.endpoint, content=fixture.body, headers=inside).status_code == 202
    assert redis_client.zcard(QUEUE) == 2


def test_generic_bearer_token(gateway: Any) -> None:
    client = gateway()
    fixture = first("generic")
    ok = {**fixture.headers, "Authorization": f"Bearer {GENERIC_TOKEN}", "webhook-id": "bearer-1"}
    assert client.post(fixture.endpoint, content=fixture.body, headers=ok).status_code == 202
    bad = {**fixture.headers, "Authorization": "Bearer nope", "webhook-id": "bearer-2"}
    assert client.post(fixture.endpoint, content=fixture.body, headers=bad).status_code == 401


def test_gitlab_signing_token_window(gateway: Any, redis_client: Any) -> None:
    client = gateway()
    fixture = first("gitlab")
    now = int(time.time())

    def signed(msg_id: str, ts: int) -> dict[str, str]:
        return {
            **fixture.headers,
            "webhook-id": msg_id,
            "webhook-timestamp": str(ts),
            "webhook-signature": standard_signature(GITLAB_SIGNING, msg_id, ts, fixture.body),
            "Idempotency-Key": msg_id,
        }

    assert client.post(fixture.endpoint, content=fixture.body, headers=signed("gl-1", now)).status_code == 202
    assert (
        client.post(fixture.endpoint, content=fixture.body, headers=signed("gl-1", now)).json()["status"]
        == "duplicate"
    )
    assert (
        client.post(fixture.endpoint, content=fixture.body, headers=signed("gl-2", now - 600)).status_code
        == 401
    )
    wrong = {
        **signed("gl-3", now),
        "webhook-signature": standard_signature(GENERIC_SECRET, "gl-3", now, fixture.body),
    }
    # A wrong signature is refused even when the token alongside it is right.
    assert (
        client.post(
            fixture.endpoint, content=fixture.body, headers={**wrong, "X-Gitlab-Token": GITLAB_TOKEN}
        ).status_code
        == 401
    )


def test_a_verified_delivery_of_the_wrong_shape_is_200_unusable(gateway: Any, redis_client: Any) -> None:
    client = gateway()
    fixture = first("github")
    body = b'{"action": "opened"}'
    answer = client.post(
        fixture.endpoint, content=body, headers={**fixture.headers, **auth_headers("github", body)}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "unusable"
    assert answer.json()["reason"].startswith("missing field ")
    # Not JSON at all is still a 400.
    body = b"{not json"
    answer = client.post(
        fixture.endpoint, content=body, headers={**fixture.headers, **auth_headers("github", body)}
    )
    assert answer.status_code == 400 and "JSON" in answer.json()["reason"]
    assert redis_client.zcard(QUEUE) == 0
    logged = client.get("/api/v1/deliveries", params={"verdict": "unusable"}, headers=ADMIN).json()["items"]
    assert [(e["verdict"], e["status"]) for e in logged] == [("unusable", 200)]
    assert (
        'k8s_ee_deliveries_total{provider="github",type="-",verdict="unusable"} 1.0'
        in client.get("/metrics").text
    )


def test_missing_event_header_is_unusable(gateway: Any) -> None:
    client = gateway()
    fixture = first("github")
    headers = {k: v for k, v in fixture.signed().items() if k.lower() != "x-github-event"}
    answer = client.post(fixture.endpoint, content=fixture.body, headers=headers)
    assert answer.status_code == 200 and answer.json()["status"] == "unusable"
    assert "X-GitHub-Event".lower() in answer.json()["reason"].lower()


def test_unsupported_content_type_is_415(gateway: Any) -> None:
    client = gateway()
    fixture = first("gitlab")
    headers = {**fixture.signed(), "Content-Type": "text/plain"}
    answer = client.post(fixture.endpoint, content=fixture.body, headers=headers)
    assert answer.status_code == 415 and "application/json" in answer.json()["reason"]


def test_body_over_the_limit_is_413(gateway: Any, redis_client: Any) -> None:
    client = gateway(max_body_bytes=4096)
    fixture = first("github")
    body = fixture.body + b" " * 5000
    answer = client.post(
        fixture.endpoint, content=body, headers={**fixture.headers, **auth_headers("github", body)}
    )
    assert answer.status_code == 413 and "4096" in answer.json()["reason"]

    # Without a Content-Length (chunked), the limit still holds while reading.
    def chunks() -> Any:
        for i in range(0, len(body), 1000):
            yield body[i : i + 1000]

    answer = client.post(
        fixture.endpoint, content=chunks(), headers={**fixture.headers, **auth_headers("github", body)}
    )
    assert answer.status_code == 413
    assert redis_client.zcard(QUEUE) == 0


def test_allowlist_refuses_with_403(gateway: Any, redis_client: Any) -> None:
    fixture = first("github")
    repository = fixture.expected["event"]["repository"]  # type: ignore[index]
    owner = repository.split("/")[0]
    client = gateway(allowlist_mode="allowlist", allowlist_organizations="someone-else")
    answer = client.post(fixture.endpoint, content=fixture.body, headers=fixture.signed())
    assert answer.status_code == 403 and repository in answer.json()["reason"]
    # Logged under the repository, so its owners can find why nothing happened.
    logged = client.get("/api/v1/deliveries", params={"repository": repository}, headers=ADMIN).json()[
        "items"
    ]
    assert [(e["verdict"], e["status"]) for e in logged] == [("rejected", 403)]
    client = gateway(allowlist_mode="allowlist", allowlist_organizations=owner.upper())
    assert client.post(fixture.endpoint, content=fixture.body, headers=fixture.signed()).status_code == 202
    client = gateway(allowlist_mode="denylist", allowlist_repositories=repository)
    assert client.post(fixture.endpoint, content=fixture.body, headers=fixture.signed()).status_code == 403
    client = gateway(allowlist_mode="allowlist")
    assert client.post(fixture.endpoint, content=fixture.body, headers=fixture.signed()).status_code == 403


def test_provider_without_secret_refuses_unless_insecure(gateway: Any) -> None:
    fixture = first("bitbucket-cloud")
    client = gateway(bitbucket_webhook_secret="")
    answer = client.post(
        fixture.endpoint, content=fixture.body, headers=fixture.headers | {"X-Request-UUID": "{a}"}
    )
    assert answer.status_code == 401 and "K8S_EE_BITBUCKET_WEBHOOK_SECRET" in answer.json()["reason"]
    client = gateway(bitbucket_webhook_secret="", bitbucket_insecure=True)
    answer = client.post(
        fixture.endpoint, content=fixture.body, headers=fixture.headers | {"X-Request-UUID": "{b}"}
    )
    assert answer.status_code == 202


def test_redis_down_gives_503_then_recovers(gateway: Any) -> None:
    own = RedisServer().start()
    try:
        client = gateway(redis_url=own.url, redis_timeout=0.5)
        fixture = first("github")
        assert (
            client.post(fixture.endpoint, content=fixture.body, headers=fixture.signed("before")).status_code
            == 202
        )
        worker_seen(own.url)
        assert client.get("/readyz").status_code == 200
        own.stop()
        answer = client.post(fixture.endpoint, content=fixture.body, headers=fixture.signed("during"))
        assert answer.status_code == 503
        assert answer.json()["status"] == "unavailable" and "redeliver" in answer.json()["reason"]
        assert client.get("/readyz").status_code == 503
        own.start()
        worker_seen(own.url)
        # The sender's redelivery of the same delivery is now accepted, not taken for a duplicate.
        assert (
            client.post(fixture.endpoint, content=fixture.body, headers=fixture.signed("during")).status_code
            == 202
        )
        assert client.get("/readyz").status_code == 200
    finally:
        own.cleanup()


def test_health_ready_and_metrics(gateway: Any, redis_server: RedisServer) -> None:
    client = gateway()
    assert client.get("/healthz").json() == {"status": "ok"}
    worker_seen(redis_server.url)
    assert client.get("/readyz").json() == {"status": "ready"}
    fixture = first("github")
    client.post(fixture.endpoint, content=fixture.body, headers=fixture.signed())
    client.post(fixture.endpoint, content=fixture.body, headers=fixture.headers)
    text = client.get("/metrics").text
    event_type = fixture.expected["event"]["type"]  # type: ignore[index]
    assert f'k8s_ee_deliveries_total{{provider="github",type="{event_type}",verdict="accepted"}} 1.0' in text
    assert 'verdict="rejected"} 1.0' in text
    assert "k8s_ee_queue_depth 1.0" in text
    assert 'k8s_ee_request_duration_seconds_count{route="/webhooks/github"} 2.0' in text


def test_unknown_route_and_method_answer_json(gateway: Any) -> None:
    client = gateway()
    assert client.get("/nope").status_code == 404
    assert client.get("/nope").json()["error"]
    answer = client.get("/webhooks/github")
    assert answer.status_code == 405 and answer.json()["error"]


def test_web_process_does_not_import_the_worker_libraries() -> None:
    code = (
        # gateway.cli.variables: `serve` checks the environment against the worker's settings too.
        "import sys; import gateway.app, gateway.cli, gateway.cli.variables; gateway.app.create_app; "
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('kubernetes', 'github', 'gitlab', 'atlassian', 'httpx', 'arq')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_hung_redis_gives_503_within_the_deadline_not_a_hang(gateway: Any, redis_client: Any) -> None:
    import os
    import signal

    own = RedisServer().start()
    try:
        client = gateway(redis_url=own.url, redis_timeout=0.5)
        fixture = first("github")
        assert (
            client.post(fixture.endpoint, content=fixture.body, headers=fixture.signed("h-1")).status_code
            == 202
        )
        assert own.process is not None
        # Stopped, not dead: connections stay open and nothing answers.
        os.kill(own.process.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            assert (
                client.post(fixture.endpoint, content=fixture.body, headers=fixture.signed("h-2")).status_code
                == 503
            )
            assert client.get("/readyz").status_code == 503
            assert client.get("/api/v1/deliveries", headers=ADMIN).status_code == 503
            assert time.monotonic() - started < 10
        finally:
            os.kill(own.process.pid, signal.SIGCONT)
        # The script sent before the deadline may still have run once Redis woke: then the
        # redelivery is a duplicate of a stored delivery. Either way it is queued exactly once.
        again = client.post(fixture.endpoint, content=fixture.body, headers=fixture.signed("h-2"))
        assert again.status_code == 202 or again.json()["status"] == "duplicate"
        queued = [e.delivery_id for e in queued_events(own.client())]
        assert sorted(queued) == ["h-1", "h-2"]
    finally:
        own.cleanup()
