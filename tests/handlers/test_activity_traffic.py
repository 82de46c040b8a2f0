"""Traffic as activity: what the Prometheus reader makes of the ingress controllers' series."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from redis.asyncio import Redis

from handlers.keys import Keys
from handlers.lifecycle.prometheus import QUERIES, TrafficReader, namespace_of
from tests.support.prometheus import FakePrometheus

NGINX = "nginx_ingress_controller_requests"
TRAEFIK = "traefik_service_requests_total"
OPEN = "traefik_service_open_connections"
NAMESPACES = {"shop-pr-1", "shop-pr-10", "web-pr-2"}


@pytest.fixture
def prometheus() -> Iterator[FakePrometheus]:
    fake = FakePrometheus()
    yield fake
    fake.close()


def read(redis_server: Any, url: str, namespaces: set[str] = NAMESPACES) -> set[str]:
    async def go() -> set[str]:
        client = Redis.from_url(redis_server.url)
        reader = TrafficReader(client, Keys("k8s-ee:"), url)
        try:
            return await reader.active(namespaces)
        finally:
            await reader.close()
            await client.aclose()

    return asyncio.run(go())


def test_traefik_service_names_map_to_their_namespace_exactly() -> None:
    traefik = QUERIES[1]
    assert namespace_of(traefik, "shop-pr-1-shop-pr-1-app-http@kubernetes", NAMESPACES) == "shop-pr-1"
    assert namespace_of(traefik, "shop-pr-10-shop-pr-10-app-http@kubernetes", NAMESPACES) == "shop-pr-10"
    # The wake route's service, another provider's, another Service: none of them.
    assert namespace_of(traefik, "shop-pr-1-shop-pr-1-wake-8081@kubernetes", NAMESPACES) is None
    assert namespace_of(traefik, "shop-pr-1-shop-pr-1-app-http@file", NAMESPACES) is None
    assert namespace_of(traefik, "kube-system-dashboard-80@kubernetes", NAMESPACES) is None


def test_counters_that_moved_are_activity_and_the_wake_route_is_not(
    prometheus: FakePrometheus, redis_server: Any, redis_client: Any
) -> None:
    prometheus.set(NGINX, {"namespace": "shop-pr-1", "service": "shop-pr-1-app"}, 10)
    prometheus.set(NGINX, {"namespace": "web-pr-2", "service": "web-pr-2-wake"}, 4)
    prometheus.set(TRAEFIK, {"service": "shop-pr-10-shop-pr-10-app-http@kubernetes"}, 3)
    # The first read only takes note: a counter's value says nothing of when it was counted.
    assert read(redis_server, prometheus.url) == set()

    prometheus.set(NGINX, {"namespace": "shop-pr-1", "service": "shop-pr-1-app"}, 11)
    prometheus.set(NGINX, {"namespace": "web-pr-2", "service": "web-pr-2-wake"}, 40)
    assert read(redis_server, prometheus.url) == {"shop-pr-1"}
    # Nothing moved since: nothing active.
    assert read(redis_server, prometheus.url) == set()
    # A namespace's first request after a read (a new series) is activity too.
    prometheus.set(NGINX, {"namespace": "web-pr-2", "service": "web-pr-2-app"}, 1)
    assert read(redis_server, prometheus.url) == {"web-pr-2"}


def test_an_open_connection_is_activity_while_it_is_open(
    prometheus: FakePrometheus, redis_server: Any, redis_client: Any
) -> None:
    prometheus.set(OPEN, {"service": "shop-pr-1-shop-pr-1-app-http@kubernetes", "protocol": "websocket"}, 1)
    assert read(redis_server, prometheus.url) == {"shop-pr-1"}
    assert read(redis_server, prometheus.url) == {"shop-pr-1"}
    prometheus.set(OPEN, {"service": "shop-pr-1-shop-pr-1-app-http@kubernetes", "protocol": "websocket"}, 0)
    assert read(redis_server, prometheus.url) == set()


def test_a_prometheus_that_cannot_answer_makes_nothing_active(redis_server: Any, redis_client: Any) -> None:
    assert read(redis_server, "http://127.0.0.1:9") == set()
