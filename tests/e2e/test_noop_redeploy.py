"""End to end: a redeploy that would change nothing costs at most two API requests.

Webhook over HTTP, real Redis, the arq worker, the real `kubernetes` client against the test
API server, whose request log is what is counted. The periodic re-apply is driven by the
cluster's clock, not by waiting.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kubernetes import client as k8s

from handlers.cluster.kubernetes import KubernetesCluster
from handlers.settings import WorkerConfig
from tests.fakes.kubeapi import KubeAPIServer
from tests.fakes.kubeapi.controls import RequestRecord
from tests.support.environments import by_namespace, namespace
from tests.support.pull_requests import send, sha
from tests.support.worker import drain, kube_cluster

NS = "shop-pr-42"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def status(client: Any) -> dict[str, Any]:
    found = by_namespace(client, NS)
    assert found is not None
    return dict(found)


def of_environment(kube: KubeAPIServer) -> list[RequestRecord]:
    """The requests about the environment's namespace; the others are each drained worker's
    start-up reads (the version, the API server's endpoints), never a write."""
    mine = [
        r
        for r in kube.requests
        if r.path.startswith(f"/api/v1/namespaces/{NS}") or f"/namespaces/{NS}/" in r.path
    ]
    assert all(r.method == "GET" for r in kube.requests if r not in mine)
    return mine


def redeploy(
    client: Any, kube: KubeAPIServer, config: WorkerConfig, cluster: KubernetesCluster, minute: float
) -> list[RequestRecord]:
    """The same head again (a re-delivered event, a /deploy-preview): the requests it made."""
    kube.reset_requests()
    send(client, "synchronize", 42, sha(1), minute)
    drain(config, cluster)
    return of_environment(kube)


def deployed(
    client: Any, kube: KubeAPIServer, config: WorkerConfig, cluster: KubernetesCluster
) -> list[RequestRecord]:
    kube.reset_requests()
    send(client, "opened", 42, sha(1), 0)
    drain(config, cluster)
    assert status(client)["state"] == "deployed"
    return of_environment(kube)


def test_an_identical_redeploy_reads_the_namespace_and_the_app_and_writes_nothing(
    gateway: Any, kube: KubeAPIServer, worker_config: WorkerConfig
) -> None:
    client = gateway()
    cluster = kube_cluster(kube.url)
    first = deployed(client, kube, worker_config, cluster)
    patches = [r for r in first if r.method == "PATCH"]
    assert len(patches) >= 10  # everything applied, the namespace first
    before = status(client)

    again = redeploy(client, kube, worker_config, cluster, 1)

    assert [(r.method, r.path) for r in again] == [
        ("GET", f"/api/v1/namespaces/{NS}"),
        ("GET", f"/apis/apps/v1/namespaces/{NS}/deployments/{NS}-app"),
    ]
    after = status(client)
    assert after["state"] == "deployed" and after["generation"] > before["generation"]
    # Nothing was applied: still deployed since then.
    assert after["applied_at"] == before["applied_at"] and after["deployed_at"] == before["deployed_at"]
    assert after["applied_digest"] == before["applied_digest"] is not None

    # A changed k8s-ee.yaml is applied in full.
    assert worker_config.worker.default_config is not None
    worker_config.worker.default_config.write_text(
        "projectId: shop\napp:\n  port: 8081\ndatabases:\n  redis: true\n"
    )
    changed = redeploy(client, kube, worker_config, cluster, 2)
    assert len([r for r in changed if r.method == "PATCH"]) == len(patches)
    assert status(client)["state"] == "deployed"
    assert status(client)["applied_digest"] != before["applied_digest"]

    # The destroy is what it always was.
    kube.reset_requests()
    send(client, "closed", 42, sha(1), 3)
    drain(worker_config, cluster)
    assert namespace(kube, NS) is None
    assert [r.method for r in of_environment(kube)][:2] == ["GET", "DELETE"]


def test_a_deleted_namespace_is_always_applied_again(
    gateway: Any, kube: KubeAPIServer, worker_config: WorkerConfig
) -> None:
    client = gateway()
    cluster = kube_cluster(kube.url)
    first = deployed(client, kube, worker_config, cluster)
    kube.delete_namespace(NS)

    again = redeploy(client, kube, worker_config, cluster, 1)

    assert len([r for r in again if r.method == "PATCH"]) == len([r for r in first if r.method == "PATCH"])
    assert namespace(kube, NS) is not None and status(client)["state"] == "deployed"


def test_an_app_that_stopped_answering_is_not_called_deployed(
    gateway: Any, kube: KubeAPIServer, worker_config: WorkerConfig
) -> None:
    client = gateway()
    cluster = kube_cluster(kube.url)
    deployed(client, kube, worker_config, cluster)
    before = status(client)
    # Its pod goes (a node drained, say); the one that replaces it is not ready for a while.
    kube.ready_delay = 1.0
    with k8s.ApiClient(k8s.Configuration(host=kube.url)) as api:
        k8s.CoreV1Api(api).delete_collection_namespaced_pod(
            NS, label_selector="app.kubernetes.io/name=app", _preload_content=False
        )

    again = redeploy(client, kube, worker_config, cluster, 1)

    # Nothing applied, and not called deployed at once: watched like any rollout (every target
    # read, again and again) until the app answers again, and deployed from then on.
    assert not [r for r in again if r.method == "PATCH"]
    assert any("/deployments/app-redis" in r.path for r in again) and len(again) > 2
    after = status(client)
    assert after["state"] == "deployed" and after["deployed_at"] > before["deployed_at"]
    assert after["applied_at"] == before["applied_at"]


def test_drift_is_corrected_by_the_periodic_reapply(
    gateway: Any, kube: KubeAPIServer, worker_config: WorkerConfig
) -> None:
    clock = Clock()
    client = gateway()
    cluster = kube_cluster(kube.url, clock=clock, reapply_after=timedelta(hours=6))
    deployed(client, kube, worker_config, cluster)
    # Someone deletes the app's Service by hand, through the API as kubectl would.
    with k8s.ApiClient(k8s.Configuration(host=kube.url)) as api:
        k8s.CoreV1Api(api).delete_namespaced_service(f"{NS}-app", NS, _preload_content=False)

    clock.now += timedelta(hours=5, minutes=59)
    inside = redeploy(client, kube, worker_config, cluster, 1)
    assert len(inside) <= 2 and kube.get_object("Service", NS, f"{NS}-app") is None

    clock.now += timedelta(minutes=1)
    due = redeploy(client, kube, worker_config, cluster, 2)
    assert any(r.method == "PATCH" and r.path.endswith(f"/services/{NS}-app") for r in due)
    assert kube.get_object("Service", NS, f"{NS}-app") is not None
    # The re-apply is recorded: the next redeploy is a no-op again.
    assert len(redeploy(client, kube, worker_config, cluster, 3)) <= 2


def test_a_reapply_period_of_zero_applies_every_time(
    gateway: Any, kube: KubeAPIServer, worker_config: WorkerConfig, tmp_path: Path
) -> None:
    client = gateway()
    cluster = kube_cluster(kube.url, reapply_after=None)
    first = deployed(client, kube, worker_config, cluster)

    again = redeploy(client, kube, worker_config, cluster, 1)

    assert len([r for r in again if r.method == "PATCH"]) == len([r for r in first if r.method == "PATCH"])
