"""What each verified delivery is answered: a code host is never refused for a payload's shape;
the generic trigger is, with 400 naming the field. Over HTTP, real uvicorn and Redis."""

from __future__ import annotations

import json
import random
import re
import string
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from handlers.config import ConfigError, config_from_mapping
from tests.support.senders import (
    ADMIN_TOKEN,
    GENERIC_TOKEN,
    GITLAB_SIGNING,
    GITLAB_TOKEN,
    Fixture,
    auth_headers,
    load_fixtures,
    standard_signature,
)

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
QUEUE = "k8s-ee:queue"
FIXTURES = {(f.provider, f.name): f for f in load_fixtures()}


def fixture(provider: str, name: str) -> Fixture:
    return FIXTURES[(provider, name)]


def post(client: Any, base: Fixture, data: Any, **headers: str) -> Any:
    body = json.dumps(data).encode()
    sent = {**base.headers, **headers, **auth_headers(base.provider, body)}
    return client.post(base.endpoint, content=body, headers=sent)


def mutate(provider: str, name: str, change: Callable[[dict[str, Any]], object]) -> tuple[Fixture, Any]:
    base = fixture(provider, name)
    data = json.loads(base.body)
    change(data)
    return base, data


SHAPE_PROBLEMS = [
    # (provider, fixture, mutation, what the reason names)
    ("github", "pull_request.opened", lambda d: d["pull_request"].pop("head"), "pull_request.head"),
    ("github", "pull_request.opened", lambda d: d["pull_request"].update(number="42"), "pull_request.number"),
    (
        "github",
        "pull_request.opened",
        lambda d: d["pull_request"]["head"].update(sha="not-a-sha"),
        "head_sha",
    ),
    ("github", "pull_request.opened", lambda d: d["repository"].update(full_name="web"), "repository"),
    ("github", "pull_request.opened", lambda d: d["repository"].update(full_name="acme/web/"), "repository"),
    ("github", "pull_request.opened", lambda d: d["repository"].update(full_name=" acme/web"), "repository"),
    (
        "github",
        "pull_request.opened",
        lambda d: d["pull_request"].update(updated_at="0001-01-01T00:00:00+01:00"),
        "pull_request.updated_at",
    ),
    (
        "gitlab",
        "merge_request.open",
        lambda d: d["object_attributes"].pop("action"),
        "object_attributes.action",
    ),
    (
        "gitlab",
        "merge_request.open",
        lambda d: d["object_attributes"].update(iid=None),
        "object_attributes.iid",
    ),
    (
        "gitlab",
        "merge_request.open",
        lambda d: d["object_attributes"].update(source_branch="a b"),
        "head_ref",
    ),
    ("bitbucket-cloud", "pullrequest.created", lambda d: d.pop("pullrequest"), "pullrequest"),
    ("bitbucket-cloud", "pullrequest.created", lambda d: d["pullrequest"].update(id=True), "pullrequest.id"),
    ("bitbucket-server", "pr.opened", lambda d: d.update(eventKey="pr:merged"), "eventKey"),
    (
        "bitbucket-server",
        "pr.opened",
        lambda d: d["pullRequest"]["fromRef"].update(latestCommit=7),
        "pullRequest.fromRef.latestCommit",
    ),
    ("bitbucket-server", "pr.opened", lambda d: d.update(date=10**30), "date"),
]


@pytest.mark.parametrize(("provider", "name", "change", "named"), SHAPE_PROBLEMS)
def test_a_verified_code_host_delivery_is_never_refused_for_its_shape(
    gateway: Any, redis_client: Any, provider: str, name: str, change: Any, named: str
) -> None:
    client = gateway()
    base, data = mutate(provider, name, change)
    answer = post(client, base, data)
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "unusable"
    assert named in answer.json()["reason"]
    assert redis_client.zcard(QUEUE) == 0
    logged = client.get("/api/v1/deliveries", params={"verdict": "unusable"}, headers=ADMIN).json()["items"]
    assert [(e["status"], e["reason"]) for e in logged] == [(200, answer.json()["reason"])]
    counted = re.findall(
        r'^k8s_ee_deliveries_total\{.*verdict="unusable"\} (\S+)$', client.get("/metrics").text, re.M
    )
    assert counted == ["1.0"]


@pytest.mark.parametrize("provider", ["github", "gitlab", "bitbucket-cloud", "bitbucket-server"])
def test_not_json_at_all_is_still_a_400_and_credentials_still_401(gateway: Any, provider: str) -> None:
    client = gateway()
    base = next(f for f in FIXTURES.values() if f.provider == provider and f.expected["status"] == "accepted")
    body = b"<html>not a webhook</html>"
    answer = client.post(
        base.endpoint, content=body, headers={**base.headers, **auth_headers(provider, body)}
    )
    assert answer.status_code == 400 and "JSON" in answer.json()["reason"]
    answer = client.post(
        base.endpoint,
        content=base.body,
        headers={**base.headers, "Content-Type": "text/plain", **auth_headers(provider, base.body)},
    )
    assert answer.status_code == 415
    assert client.post(base.endpoint, content=base.body, headers=base.headers).status_code == 401


def test_an_unknown_event_is_ignored(gateway: Any) -> None:
    client = gateway()
    base = fixture("github", "pull_request.opened")
    answer = post(client, base, json.loads(base.body), **{"X-GitHub-Event": "sponsorship"})
    assert answer.status_code == 200 and answer.json()["status"] == "ignored"


@pytest.mark.parametrize(
    ("name", "key", "merged"),
    [
        ("pullrequest.created", "pullrequest:fulfilled", True),
        ("pullrequest.created", "pullrequest:rejected", False),
    ],
)
def test_bitbucket_event_key_alone_says_what_happened(
    gateway: Any, redis_client: Any, name: str, key: str, merged: bool
) -> None:
    client = gateway()
    base = fixture("bitbucket-cloud", name)
    data = json.loads(base.body)
    assert data["pullrequest"]["state"] == "OPEN"
    answer = post(client, base, data, **{"X-Event-Key": key})
    assert answer.status_code == 202, answer.text
    assert answer.json()["event"]["type"] == "change.closed"
    assert answer.json()["event"]["merged"] is merged


@pytest.mark.parametrize(
    ("state", "event_type", "merged"),
    [
        ("opened", "change.updated", False),
        ("merged", "change.closed", True),
        ("closed", "change.closed", False),
    ],
)
def test_gitlab_system_hook_merge_request_without_action_acts_on_its_state(
    gateway: Any, state: str, event_type: str, merged: bool
) -> None:
    client = gateway()
    base = fixture("gitlab", "merge_request.open")
    data = json.loads(base.body)
    del data["object_attributes"]["action"]
    data["object_attributes"]["state"] = state
    answer = post(client, base, data, **{"X-Gitlab-Event": "System Hook"})
    assert answer.status_code == 202, answer.text
    assert (answer.json()["event"]["type"], answer.json()["event"]["merged"]) == (event_type, merged)
    # The same payload from a project hook is missing its action: unusable.
    answer = post(client, base, data)
    assert answer.json()["status"] == "unusable" and "object_attributes.action" in answer.json()["reason"]


GENERIC = fixture("generic", "deploy")


def generic(client: Any, **change: Any) -> Any:
    body = json.dumps({**json.loads(GENERIC.body), **change}).encode()
    return client.post(
        GENERIC.endpoint,
        content=body,
        headers={**GENERIC.headers, "Authorization": f"Bearer {GENERIC_TOKEN}"},
    )


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"image": "registry.example.com/acme/web:v1 --privileged"}, "field image: "),
        ({"image": "registry.example.com/acme/web:v1\n"}, "field image: "),
        ({"repository": "web"}, "field repository: "),
        ({"repository": "acme/web/"}, "field repository: "),
        ({"repository": " acme/web"}, "field repository: "),
        ({"sha": "zzzzzzzz"}, "field sha: "),
    ],
)
def test_the_generic_trigger_refuses_what_the_worker_could_not_use(
    gateway: Any, redis_client: Any, change: dict[str, Any], named: str
) -> None:
    answer = generic(gateway(), **change)
    assert answer.status_code == 400, answer.text
    assert answer.json()["reason"].startswith(named)
    assert redis_client.zcard(QUEUE) == 0


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"projectId": "Web_App"},
        {"projectId": "web", "databases": {"postgresql": {"storage": "1GB"}}},
        {"projectId": "web", "resources": {"limits": {"memory": "lots"}}, "colour": "blue"},
    ],
)
def test_inline_config_is_checked_at_the_door_with_the_workers_messages(
    gateway: Any, redis_client: Any, config: dict[str, Any]
) -> None:
    answer = generic(gateway(), config=config)
    assert answer.status_code == 400, answer.text
    with pytest.raises(ConfigError) as worker:
        config_from_mapping(config)
    expected = "; ".join(f"field config.{p.path}: {p.message}" for p in worker.value.problems)
    assert answer.json()["reason"] == expected
    assert redis_client.zcard(QUEUE) == 0


def test_an_empty_inline_config_says_project_id_is_required(gateway: Any) -> None:
    assert generic(gateway(), config={}).json()["reason"] == "field config.projectId: is required"


def test_a_valid_inline_config_is_accepted(gateway: Any) -> None:
    answer = generic(gateway(), config={"projectId": "web", "databases": {"postgresql": True}})
    assert answer.status_code == 202, answer.text


def test_random_event_names_make_no_new_metric_series(gateway: Any) -> None:
    client = gateway()
    base = fixture("github", "pull_request.opened")
    rng = random.Random(8)
    for _ in range(200):
        name = "".join(rng.choices(string.ascii_letters, k=12))
        headers = {**base.signed(), "X-GitHub-Event": name}
        assert client.post(base.endpoint, content=base.body, headers=headers).json()["status"] == "ignored"
    gitlab = fixture("gitlab", "merge_request.open")
    for _ in range(50):
        name = "".join(rng.choices(string.ascii_letters, k=12))
        headers = {**gitlab.signed(), "X-Gitlab-Event": name}
        assert (
            client.post(gitlab.endpoint, content=gitlab.body, headers=headers).json()["status"] == "ignored"
        )
    series = re.findall(r"^k8s_ee_deliveries_total\{(.*)\} ", client.get("/metrics").text, re.M)
    assert sorted(series) == [
        'provider="github",type="other",verdict="ignored"',
        'provider="gitlab",type="other",verdict="ignored"',
    ]


def test_a_signed_gitlab_delivery_is_deduplicated_by_its_signed_webhook_id(
    gateway: Any, redis_client: Any
) -> None:
    client = gateway()
    base = fixture("gitlab", "merge_request.open")
    now = int(time.time())
    signature = standard_signature(GITLAB_SIGNING, "msg-1", now, base.body)
    signed = {
        **base.headers,
        "webhook-id": "msg-1",
        "webhook-timestamp": str(now),
        "webhook-signature": signature,
    }
    first = client.post(base.endpoint, content=base.body, headers={**signed, "Idempotency-Key": "a"})
    assert first.status_code == 202 and first.json()["delivery_id"] == "msg-1"
    # A replay that changes the unsigned Idempotency-Key is still the same delivery.
    replay = client.post(
        base.endpoint, content=base.body, headers={**signed, "Idempotency-Key": str(uuid.uuid4())}
    )
    assert replay.status_code == 200 and replay.json()["status"] == "duplicate"
    assert redis_client.zcard(QUEUE) == 1
    # Token-authenticated deliveries keep Idempotency-Key.
    token = {**base.headers, "X-Gitlab-Token": GITLAB_TOKEN, "Idempotency-Key": "idem-7"}
    assert client.post(base.endpoint, content=base.body, headers=token).json()["delivery_id"] == "idem-7"
