"""Redis Sentinel: the gateway and the worker find the master through real sentinels, follow a
failover, and authenticate to the servers and to the sentinels with passwords of their own."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.settings import load_gateway_settings
from handlers.cluster.directory import DirectoryCluster
from handlers.keys import Keys
from handlers.settings import load_worker_config
from providers.settings import SettingsError
from tests.support.http_server import ServedApp
from tests.support.redis_sentinel import MASTER_NAME, SentinelGroup
from tests.support.senders import ADMIN_TOKEN, GENERIC_TOKEN, SECRET_SETTINGS
from tests.support.worker import drain

PASSWORD = "master-pass:with/odd@chars"
SENTINEL_PASSWORD = "sentinel-pass"
# The URL's host and port are never used with sentinels: nothing listens on port 1.
UNUSED_URL = "redis://127.0.0.1:1/0"


@pytest.fixture
def group() -> Iterator[SentinelGroup]:
    with SentinelGroup(password=PASSWORD, sentinel_password=SENTINEL_PASSWORD) as started:
        yield started


def connection(group: SentinelGroup) -> dict[str, Any]:
    return {
        "redis_url": UNUSED_URL,
        "redis_password": PASSWORD,
        "redis_sentinels": f"{group.address}",
        "redis_sentinel_master": MASTER_NAME,
        "redis_sentinel_password": SENTINEL_PASSWORD,
    }


def worker_seen(group: SentinelGroup) -> None:
    """A worker's heartbeat, so that /readyz answers on Redis alone."""
    group.master.client().set(Keys("k8s-ee:").worker_heartbeat(), str(int(time.time() * 1000)))


def redis_reachable(client: httpx.Client) -> bool:
    answer = client.get("/readyz")
    return answer.status_code == 200 or not answer.json()["reason"].startswith("Redis unreachable")


def deploy(client: httpx.Client, number: int) -> dict[str, Any]:
    body = {
        "action": "deploy",
        "repository": "acme/web",
        "number": number,
        "sha": f"{number:040x}",
        "branch": f"feature-{number}",
        "config": {"projectId": "web"},
    }
    headers = {"Authorization": f"Bearer {GENERIC_TOKEN}", "Content-Type": "application/json"}
    deadline = time.monotonic() + 20
    while True:
        # Right after a failover the first answer may be 503 (not acknowledged): the sender retries.
        answer = client.post("/webhooks/generic", content=json.dumps(body), headers=headers)
        if answer.status_code != 503 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert answer.status_code == 202, answer.text
    result: dict[str, Any] = answer.json()
    return result


def test_gateway_and_worker_follow_the_master_through_a_failover(
    group: SentinelGroup, tmp_path: Path
) -> None:
    gateway = load_gateway_settings(**SECRET_SETTINGS, **connection(group))
    worker_seen(group)
    with ServedApp(create_app(gateway)) as served, httpx.Client(base_url=served.url, timeout=15) as client:
        assert client.get("/readyz").status_code == 200
        first = deploy(client, 1)
        assert group.master.client().exists(f"arq:job:event:generic:{first['delivery_id']}")

        new_master = group.failover()
        assert new_master != group.master.port
        second = deploy(client, 2)
        promoted = group.replica.client()  # type: ignore[union-attr]
        # Both deliveries are on the new master: the first by replication, the second written there.
        assert promoted.exists(f"arq:job:event:generic:{first['delivery_id']}")
        assert promoted.exists(f"arq:job:event:generic:{second['delivery_id']}")

        worker = load_worker_config(**connection(group), cluster="directory", directory=tmp_path)
        drain(worker, DirectoryCluster(tmp_path))
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        for name in ("web-pr-1", "web-pr-2"):
            answer = client.get(f"/api/v1/environments/{name}", headers=admin)
            assert answer.status_code == 200, answer.text
            assert answer.json()["state"] == "deployed"
        assert (tmp_path / "web-pr-2").is_dir()


def test_a_wrong_sentinel_password_is_refused(group: SentinelGroup) -> None:
    settings = load_gateway_settings(
        **SECRET_SETTINGS, **{**connection(group), "redis_sentinel_password": "no"}
    )
    with ServedApp(create_app(settings)) as served, httpx.Client(base_url=served.url, timeout=15) as client:
        assert not redis_reachable(client)


def test_without_sentinels_the_separate_password_wins_over_the_url(group: SentinelGroup) -> None:
    url = f"redis://:wrong@127.0.0.1:{group.master.port}/0"
    worker_seen(group)
    for password, reachable in ((PASSWORD, True), (None, False)):
        settings = load_gateway_settings(**SECRET_SETTINGS, redis_url=url, redis_password=password)
        with ServedApp(create_app(settings)) as served, httpx.Client(base_url=served.url) as client:
            assert redis_reachable(client) is reachable
            assert (client.get("/readyz").status_code == 200) is reachable


@pytest.mark.parametrize("value", ["sentinel-0", "redis:sentinel", "redis:0", ":26379"])
def test_a_bad_sentinel_address_names_the_variable(value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_worker_config(redis_sentinels=f"127.0.0.1:26379,{value}")
    assert "K8S_EE_REDIS_SENTINELS" in str(caught.value)
    assert value not in str(caught.value)
