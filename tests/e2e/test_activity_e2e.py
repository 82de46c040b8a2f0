"""Traffic as activity, end to end: the ingress controllers' counters in Prometheus keep a used
environment awake, an open connection too, and the wake page's own requests do not.

Webhooks over HTTP to the gateway; the worker ticking as in production (it reads Prometheus each
minute, and at its start); a Prometheus of the tests' own (tests/support/prometheus.py) holding
what ingress-nginx and Traefik would export.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.kubeapi import KubeAPIServer
from tests.support.lifecycle import Gateway, gateway_with_wake, idle_since, lifecycle_config
from tests.support.prometheus import FakePrometheus
from tests.support.pull_requests import REPO, send, sha
from tests.support.worker import BackgroundWorker, drain, kube_cluster, wait_for

CONFIG = "projectId: shop\napp:\n  port: 8080\n"
NGINX = "nginx_ingress_controller_requests"
TRAEFIK = "traefik_service_requests_total"
TRAEFIK_OPEN = "traefik_service_open_connections"


@pytest.fixture
def prometheus() -> Iterator[FakePrometheus]:
    fake = FakePrometheus()
    yield fake
    fake.close()


@pytest.fixture
def gw(redis_server: Any, redis_client: Any) -> Iterator[Gateway]:
    with gateway_with_wake(redis_server.url) as gateway:
        yield gateway


def key(number: int) -> str:
    return f"github:{REPO}:{number}"


def test_traffic_and_open_connections_keep_environments_awake_and_the_wake_route_does_not(
    gw: Gateway,
    kube: KubeAPIServer,
    prometheus: FakePrometheus,
    tmp_path: Path,
    redis_server: Any,
    redis_client: Any,
) -> None:
    config = lifecycle_config(
        tmp_path,
        redis_server.url,
        CONFIG,
        activity_prometheus_url=prometheus.url,
        sweep_interval=0,
        resync_interval=0,
    )
    for number in (41, 42, 43, 44):
        send(gw.api, "opened", number, sha(number), 0)
    drain(config, kube_cluster(kube.url))
    # What the controllers counted so far (the first read only takes note of it).
    prometheus.set(NGINX, {"namespace": "shop-pr-41", "service": "shop-pr-41-app", "path": "/"}, 10)
    prometheus.set(NGINX, {"namespace": "shop-pr-42", "service": "shop-pr-42-wake", "path": "/"}, 3)
    prometheus.set(TRAEFIK, {"service": "shop-pr-43-shop-pr-43-app-http@kubernetes"}, 7)
    cluster = kube_cluster(kube.url)
    with BackgroundWorker(config, cluster, periodic=True):
        wait_for(lambda: any(NGINX in q for q in prometheus.queries))
        # Nobody sent an event to any of them for five hours (the idle time is four)...
        for number in (41, 42, 43, 44):
            idle_since(redis_client, key(number), time.time() - 5 * 3600)
        # ...but 41 had requests through ingress-nginx and 43 through Traefik, and 44 holds a
        # websocket open. 42 only had the waiting page's own requests (its wake route).
        prometheus.set(NGINX, {"namespace": "shop-pr-41", "service": "shop-pr-41-app", "path": "/"}, 12)
        prometheus.set(NGINX, {"namespace": "shop-pr-42", "service": "shop-pr-42-wake", "path": "/"}, 50)
        prometheus.set(TRAEFIK, {"service": "shop-pr-43-shop-pr-43-app-http@kubernetes"}, 9)
        prometheus.set(
            TRAEFIK_OPEN, {"service": "shop-pr-44-shop-pr-44-app-http@kubernetes", "protocol": "websocket"}, 1
        )
        # The next read (the test does not wait a minute for it: it asks for one).
        redis_client.delete("k8s-ee:lifecycle-due:activity")
        wait_for(lambda: gw.environment("shop-pr-42")["state"] == "hibernated")
        time.sleep(1.5)  # a tick or two more: nothing else falls asleep
        states = {n: gw.environment(f"shop-pr-{n}")["state"] for n in (41, 43, 44)}
        assert states == {41: "deployed", 43: "deployed", 44: "deployed"}
