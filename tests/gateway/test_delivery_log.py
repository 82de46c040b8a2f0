"""The delivery log: every verdict recorded, filtered and paged by the admin API, bounded in Redis."""

from __future__ import annotations

import json
from typing import Any

import lz4.frame

from tests.support.senders import ADMIN_TOKEN, GITHUB_SECRET, load_fixtures

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
FIXTURES = load_fixtures()


def pick(provider: str, status: str) -> Any:
    return next(f for f in FIXTURES if f.provider == provider and f.expected["status"] == status)


def test_admin_api_needs_the_token(gateway: Any) -> None:
    client = gateway()
    assert client.get("/api/v1/deliveries").status_code == 401
    assert client.get("/api/v1/deliveries", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/api/v1/deliveries", headers=ADMIN).status_code == 200
    disabled = gateway(admin_token="")
    answer = disabled.get("/api/v1/deliveries", headers=ADMIN)
    assert answer.status_code == 401 and "K8S_EE_ADMIN_TOKEN" in answer.json()["error"]


def test_every_verdict_is_logged_and_filterable(gateway: Any) -> None:
    client = gateway()
    accepted = pick("github", "accepted")
    ignored = pick("gitlab", "ignored")
    client.post(accepted.endpoint, content=accepted.body, headers=accepted.signed("a-1"))
    client.post(accepted.endpoint, content=accepted.body, headers=accepted.signed("a-1"))
    client.post(ignored.endpoint, content=ignored.body, headers=ignored.signed("i-1"))
    client.post(
        accepted.endpoint, content=accepted.body, headers=accepted.headers | {"X-GitHub-Delivery": "r-1"}
    )

    items = client.get("/api/v1/deliveries", headers=ADMIN).json()["items"]
    assert [(i["delivery_id"], i["verdict"]) for i in items] == [
        ("r-1", "rejected"),
        ("i-1", "ignored"),
        ("a-1", "duplicate"),
        ("a-1", "accepted"),
    ]
    assert items[0]["status"] == 401 and items[0]["reason"]
    assert items[3]["event"]["type"] == accepted.expected["event"]["type"]

    only_gitlab = client.get("/api/v1/deliveries?provider=gitlab", headers=ADMIN).json()["items"]
    assert [i["delivery_id"] for i in only_gitlab] == ["i-1"]
    rejected = client.get("/api/v1/deliveries?verdict=rejected", headers=ADMIN).json()["items"]
    assert [i["delivery_id"] for i in rejected] == ["r-1"]
    repository = accepted.expected["event"]["repository"]
    by_repo = client.get(
        "/api/v1/deliveries", params={"repository": repository.upper()}, headers=ADMIN
    ).json()
    assert {i["verdict"] for i in by_repo["items"]} == {"accepted", "duplicate"}
    assert client.get("/api/v1/deliveries?verdict=bogus", headers=ADMIN).status_code == 400
    assert client.get("/api/v1/deliveries?provider=svn", headers=ADMIN).status_code == 400
    assert client.get("/api/v1/deliveries?limit=0", headers=ADMIN).status_code == 400


def test_pagination_walks_everything_once(gateway: Any) -> None:
    client = gateway()
    fixture = pick("generic", "accepted")
    sent = []
    for n in range(23):
        delivery = f"page-{n:02d}"
        sent.append(delivery)
        client.post(fixture.endpoint, content=fixture.body, headers=fixture.signed(delivery))
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": "5", **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/v1/deliveries", params=params, headers=ADMIN).json()
        seen += [i["delivery_id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    # Duplicates of the generic fixture body are fine here: each delivery id is distinct.
    assert seen == list(reversed(sent))


def test_one_delivery_shows_its_attempts_and_stripped_request(gateway: Any) -> None:
    client = gateway()
    fixture = pick("github", "accepted")
    client.post(fixture.endpoint, content=fixture.body, headers=fixture.signed("detail-1"))
    client.post(fixture.endpoint, content=fixture.body, headers=fixture.signed("detail-1"))
    answer = client.get("/api/v1/deliveries/detail-1", headers=ADMIN)
    assert answer.status_code == 200
    attempts = answer.json()["attempts"]
    assert [a["verdict"] for a in attempts] == ["accepted", "duplicate"]
    assert [a["attempt"] for a in attempts] == [1, 2]
    request = attempts[0]["request"]
    assert request["body"].encode() == fixture.body
    names = {name.lower() for name in request["headers"]}
    assert "x-github-event" in names
    assert "x-hub-signature-256" not in names
    assert GITHUB_SECRET not in answer.text
    assert client.get("/api/v1/deliveries/never", headers=ADMIN).status_code == 404


def test_stored_bodies_are_compressed_and_bounded_by_count(gateway: Any, redis_client: Any) -> None:
    client = gateway(delivery_bodies_max=3)
    fixture = pick("github", "accepted")
    for n in range(7):
        assert (
            client.post(fixture.endpoint, content=fixture.body, headers=fixture.signed(f"b-{n}")).status_code
            == 202
        )
    keys = sorted(k.decode() for k in redis_client.keys("k8s-ee:body:*"))
    assert keys == [f"k8s-ee:body:github:b-{n}" for n in (4, 5, 6)]
    blob = redis_client.get(keys[0])
    assert len(blob) < len(fixture.body)
    headers, _, body = lz4.frame.decompress(blob).partition(b"\n")
    assert body == fixture.body
    assert "x-github-event" in json.loads(headers)
    assert "x-hub-signature-256" not in json.loads(headers)
    # Every key the gateway writes expires, but the queue that the worker drains.
    for key in redis_client.keys("k8s-ee:*"):
        if key == b"k8s-ee:queue":
            continue
        assert redis_client.pttl(key) > 0, key


def test_log_is_bounded_by_count(gateway: Any, redis_client: Any) -> None:
    client = gateway(delivery_log_max_entries=100)
    fixture = pick("github", "accepted")
    for n in range(130):
        client.post(
            fixture.endpoint, content=fixture.body, headers=fixture.headers | {"X-GitHub-Delivery": f"x-{n}"}
        )
    assert redis_client.zcard("k8s-ee:deliveries") == 100
    assert len(redis_client.keys("k8s-ee:delivery:*")) == 100
    assert redis_client.zcard("k8s-ee:deliveries:provider:github") == 100
