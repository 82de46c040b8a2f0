"""Scaling out: one gateway process per pod, as many pods as needed, all on one Redis.

Each `k8s-ee serve` is one process on one core; more cores means more replicas (the chart's
Deployment and HPA), not more processes in a pod. Nothing is held in a process that another
needs: two gateways given the same delivery at once accept it once; each counts what it
answered in its own /metrics, so Prometheus sums the replicas; the installation's figures read
from Redis are the same whichever replica is asked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.e2e.test_metrics_e2e import sample
from tests.support.redis_server import free_port
from tests.support.senders import GENERIC_TOKEN


@pytest.fixture
def gateways(redis_client: Any, redis_server: Any) -> Iterator[list[str]]:
    processes: list[subprocess.Popen[bytes]] = []
    urls = []
    for _ in range(2):
        port = free_port()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("K8S_EE_")},
            "K8S_EE_REDIS_URL": redis_server.url,
            "K8S_EE_PORT": str(port),
            # Each its own wake service port too (the default is one port for every process).
            "K8S_EE_WAKE_PORT": str(free_port()),
            "K8S_EE_GENERIC_TOKEN": GENERIC_TOKEN,
        }
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", "serve"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        urls.append(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 30
        for url in urls:
            while True:
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "a gateway did not start"
                time.sleep(0.05)
        yield urls
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(15)


def deliver(url: str, number: int, delivery_id: str) -> int:
    body = {
        "action": "deploy",
        "repository": "acme/web",
        "number": number,
        "sha": f"{number:040x}",
        "branch": "main",
    }
    headers = {
        "Authorization": f"Bearer {GENERIC_TOKEN}",
        "Content-Type": "application/json",
        "webhook-id": delivery_id,
    }
    return httpx.post(
        f"{url}/webhooks/generic", content=json.dumps(body), headers=headers, timeout=10
    ).status_code


def test_two_gateways_share_the_work_and_count_their_own(gateways: list[str], redis_client: Any) -> None:
    first, second = gateways
    with ThreadPoolExecutor(8) as pool:
        # The same delivery to both at once, ten times over: each accepted exactly once.
        races = [pool.submit(deliver, url, n, f"race-{n}") for n in range(1, 11) for url in gateways]
        codes = [race.result() for race in races]
        assert sorted(codes) == [200] * 10 + [202] * 10, codes
        # Distinct deliveries spread over both: every one accepted.
        spread = [pool.submit(deliver, gateways[n % 2], 100 + n, f"spread-{n}") for n in range(20)]
        assert [s.result() for s in spread] == [202] * 20

    texts = [httpx.get(f"{url}/metrics").text for url in (first, second)]
    accepted = [
        sample(t, "k8s_ee_deliveries_total", 'provider="generic",type="env.deploy",verdict="accepted"') or 0
        for t in texts
    ]
    duplicates = [
        sample(t, "k8s_ee_deliveries_total", 'provider="generic",type="env.deploy",verdict="duplicate"') or 0
        for t in texts
    ]
    # Per-process counters: each counts what it answered; their sum is what was sent.
    assert sum(accepted) == 30 and sum(duplicates) == 10
    assert all(count >= 10 for count in accepted)
    # The installation's figures come from Redis: both replicas say the same.
    depths = [sample(t, "k8s_ee_queue_depth") for t in texts]
    assert depths[0] == depths[1] == redis_client.zcard("k8s-ee:queue") == 30
