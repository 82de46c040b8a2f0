"""`/readyz` and `k8s_ee_worker_heartbeat_age_seconds` follow the worker's heartbeat."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from handlers.cluster.directory import DirectoryCluster
from handlers.settings import load_worker_config
from tests.support.heartbeat import worker_seen
from tests.support.worker import BackgroundWorker


def heartbeat_age(client: Any) -> float:
    found = re.search(r"^k8s_ee_worker_heartbeat_age_seconds (\S+)$", client.get("/metrics").text, re.M)
    assert found
    return float(found.group(1))


def test_no_worker_ever_seen_is_not_ready(gateway: Any) -> None:
    client = gateway()
    answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json() == {
        "status": "unavailable",
        "reason": "no worker has ever been seen (K8S_EE_WORKER_HEARTBEAT_TIMEOUT=60 s): start `k8s-ee worker`",
    }
    assert heartbeat_age(client) == float("inf")


def test_a_silent_worker_makes_the_gateway_not_ready(gateway: Any, redis_server: Any) -> None:
    client = gateway(worker_heartbeat_timeout=30)
    worker_seen(redis_server.url, seconds_ago=45)
    answer = client.get("/readyz")
    assert answer.status_code == 503
    assert re.fullmatch(
        r"no worker has been seen for 4\d s \(K8S_EE_WORKER_HEARTBEAT_TIMEOUT=30 s\).*",
        answer.json()["reason"],
    )
    assert 44 < heartbeat_age(client) < 120
    worker_seen(redis_server.url, seconds_ago=5)
    assert client.get("/readyz").json() == {"status": "ready"}
    assert heartbeat_age(client) < 30


def test_a_running_worker_keeps_the_gateway_ready(gateway: Any, redis_server: Any, tmp_path: Path) -> None:
    client = gateway(worker_heartbeat_timeout=4)
    assert client.get("/readyz").status_code == 503
    config = load_worker_config(redis_url=redis_server.url, worker_heartbeat_timeout=4)
    with BackgroundWorker(config, DirectoryCluster(tmp_path)):  # type: ignore[arg-type]
        deadline = time.monotonic() + 30
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, client.get("/readyz").text
            time.sleep(0.1)
        # It keeps beating: past one timeout, still ready.
        time.sleep(5)
        assert client.get("/readyz").status_code == 200
        assert heartbeat_age(client) < 4
