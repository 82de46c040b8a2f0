from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.settings import load_gateway_settings
from handlers.settings import WorkerConfig, load_worker_config
from tests.fakes.kubeapi import KubeAPIServer
from tests.support.environments import CONFIG
from tests.support.http_server import ServedApp
from tests.support.redis_server import RedisServer
from tests.support.senders import SECRET_SETTINGS


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.cleanup()


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[Any]:
    client = redis_server.client()
    # This Redis was started by this test session: emptying it between tests is ours to do,
    # and its command statistics too, which a test may count (whatever ran before it).
    client.flushall()
    client.config_resetstat()
    yield client
    client.close()


@pytest.fixture
def kube() -> Iterator[KubeAPIServer]:
    """The test Kubernetes API server (tests/fakes/kubeapi), on a free loopback port."""
    with KubeAPIServer() as server:
        yield server


Gateway = Callable[..., httpx.Client]


@pytest.fixture
def gateway(redis_client: Any, redis_server: RedisServer) -> Iterator[Gateway]:
    """Start the real web app on uvicorn; returns an HTTP client for it. Settings can be overridden."""
    started: list[tuple[ServedApp, httpx.Client]] = []

    def start(**overrides: Any) -> httpx.Client:
        values: dict[str, Any] = {"redis_url": redis_server.url, **SECRET_SETTINGS, **overrides}
        served = ServedApp(create_app(load_gateway_settings(**values))).__enter__()
        client = httpx.Client(base_url=served.url, timeout=15)
        started.append((served, client))
        return client

    yield start
    for served, client in started:
        client.close()
        served.__exit__(None, None, None)


@pytest.fixture
def worker_config(tmp_path: Path, redis_server: RedisServer) -> WorkerConfig:
    """The worker's settings for end-to-end tests: this session's Redis, a default k8s-ee.yaml
    (CONFIG), a short lock TTL."""
    config = tmp_path / "k8s-ee.yaml"
    config.write_text(CONFIG)
    return load_worker_config(
        redis_url=redis_server.url,
        default_config=config,
        preview_domain="preview.example.com",
        lock_ttl=3,
        reconcile_max_tries=3,
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `after_all_others` read what the others did (tests/install/test_rbac.py)."""
    last = [item for item in items if item.get_closest_marker("after_all_others")]
    if last:
        items[:] = [item for item in items if item not in last] + last


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """With K8S_EE_KUBE_REQUEST_LOG set, write every request the test API servers received
    (tests/install/test_rbac.py runs the end-to-end suites this way when they are not part of
    its own session)."""
    target = os.environ.get("K8S_EE_KUBE_REQUEST_LOG")
    if target:
        from tests.fakes.kubeapi.controls import SESSION_REQUESTS

        Path(target).write_text(json.dumps(sorted(SESSION_REQUESTS)))
