"""The end-to-end flow against a real cluster: runs where K8S_EE_TEST_KUBECONFIG names a kubeconfig.

    K8S_EE_TEST_KUBECONFIG=~/.kube/config scripts/test -m cluster

It creates and deletes one namespace, `k8s-ee-e2e-pr-<random>`; the database
operators' CRDs need not be installed (the config enables no custom resources).
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from handlers.cluster.kubernetes import KubernetesCluster
from handlers.settings import load_worker_config
from tests.support.pull_requests import send, sha
from tests.support.senders import ADMIN_TOKEN
from tests.support.worker import drain

KUBECONFIG = os.environ.get("K8S_EE_TEST_KUBECONFIG")
pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(not KUBECONFIG, reason="set K8S_EE_TEST_KUBECONFIG to run against a real cluster"),
]


@pytest.fixture
def cluster() -> Iterator[KubernetesCluster]:
    real = KubernetesCluster.from_environment(KUBECONFIG)
    yield real
    real.close()


def test_open_and_close_against_a_real_cluster(
    gateway: Any, cluster: KubernetesCluster, tmp_path: Path, redis_server: Any
) -> None:
    config = tmp_path / "k8s-ee.yaml"
    config.write_text("projectId: k8s-ee-e2e\ndatabases:\n  redis: true\n")
    settings = load_worker_config(
        redis_url=redis_server.url,
        default_config=config,
        preview_domain="preview.example.com",
    )
    client = gateway()
    number = random.randint(10_000, 99_999)
    namespace = f"k8s-ee-e2e-pr-{number}"
    try:
        send(client, "opened", number, sha(1), 0)
        drain(settings, cluster)
        status = client.get(
            f"/api/v1/environments/{namespace}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        ).json()
        assert status["state"] == "deployed", status
    finally:
        send(client, "closed", number, sha(1), 5)
        drain(settings, cluster)
    status = client.get(
        f"/api/v1/environments/{namespace}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    ).json()
    assert status["state"] == "destroyed", status
