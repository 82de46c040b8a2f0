from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from handlers.settings import WorkerConfig, load_worker_config
from tests.kubeapi import KubeAPIServer
from tests.support.environments import CONFIG


@pytest.fixture
def kube() -> Iterator[KubeAPIServer]:
    with KubeAPIServer() as server:
        yield server


@pytest.fixture
def worker_config(tmp_path: Path, redis_server: Any) -> WorkerConfig:
    config = tmp_path / "k8s-ee.yaml"
    config.write_text(CONFIG)
    return load_worker_config(
        redis_url=redis_server.url,
        default_config=config,
        preview_domain="preview.example.com",
        lock_ttl=3,
        reconcile_max_tries=3,
    )
