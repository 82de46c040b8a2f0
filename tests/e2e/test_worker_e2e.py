"""End to end: webhook over HTTP, real Redis, the arq worker, the test Kubernetes API server.

Each required property of the worker has a test here that fails without it.
"""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path
from typing import Any

from handlers.cluster import Cluster
from handlers.cluster.directory import DirectoryCluster
from handlers.settings import WorkerConfig
from tests.fakes.kubeapi import KubeAPIServer
from tests.support.environments import ADMIN, by_namespace, namespace
from tests.support.pull_requests import REPO, send, sha
from tests.support.worker import BackgroundWorker, drain, kube_cluster, wait_for, worker_process


def environment(client: Any, name: str) -> dict[str, Any]:
    found = by_namespace(client, name)
    assert found is not None, name
    return found


def test_opened_deploys_and_closed_destroys(
    gateway: Any, kube: KubeAPIServer, worker_config: WorkerConfig
) -> None:
    client = gateway()
    cluster = kube_cluster(kube.url)
    accepted = send(client, "opened", 42, sha(1), 0)
    drain(worker_config, cluster)

    ns = namespace(kube, "shop-pr-42")
    assert ns is not None
    labels = ns["metadata"]["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "k8s-ee-gateway"
    assert labels["k8s-ee/commit-sha"] == sha(1)
    assert labels["k8s-ee/provider"] == "github"
    assert ns["metadata"]["annotations"]["k8s-ee/repository"] == REPO
    kinds = {o["kind"] for o in kube.objects(namespace="shop-pr-42")}
    assert {
        "ResourceQuota",
        "LimitRange",
        "NetworkPolicy",
        "Deployment",
        "Service",
        "Ingress",
        "ConfigMap",
        "Secret",
    } <= kinds

    status = environment(client, "shop-pr-42")
    assert status["state"] == "deployed"
    assert status["preview_url"] == "https://shop-pr-42.preview.example.com"
    assert status["databases"] == ["redis"]
    # The delivery log links the delivery to the reconcile that applied it.
    detail = client.get(f"/api/v1/deliveries/{accepted['delivery_id']}", headers=ADMIN).json()
    applied = detail["attempts"][0]["applied"]
    assert applied["reconcile"] == status["last_reconcile"] and applied["state"] == "deployed"

    send(client, "closed", 42, sha(1), 5, merged=True)
    drain(worker_config, cluster)
    assert namespace(kube, "shop-pr-42") is None
    assert environment(client, "shop-pr-42")["state"] == "destroyed"


def test_burst_coalesces_and_last_head_wins(
    gateway: Any, kube: KubeAPIServer, worker_config: WorkerConfig
) -> None:
    client = gateway()
    send(client, "opened", 7, sha(100), 0)
    for n in range(1, 10):
        send(client, "synchronize", 7, sha(100 + n), n)
    kube.reset_requests()
    drain(worker_config, kube_cluster(kube.url))
    status = environment(client, "shop-pr-7")
    assert status["head_sha"] == sha(109)
    assert namespace(kube, "shop-pr-7")["metadata"]["labels"]["k8s-ee/commit-sha"] == sha(109)  # type: ignore[index]
    # Ten events, one environment: far fewer reconciles than events.
    assert status["reconciles"] <= 3
    namespace_applies = [
        r for r in kube.requests if r.method == "PATCH" and r.path == "/api/v1/namespaces/shop-pr-7"
    ]
    assert 1 <= len(namespace_applies) <= 3


def test_late_events_do_not_resurrect_a_closed_change(
    gateway: Any, kube: KubeAPIServer, worker_config: WorkerConfig
) -> None:
    client = gateway()
    cluster = kube_cluster(kube.url)
    send(client, "opened", 9, sha(1), 0)
    drain(worker_config, cluster)
    send(client, "closed", 9, sha(2), 10)
    # Delivered after the close, but older than it: a redelivery, a reordering.
    send(client, "synchronize", 9, sha(2), 5)
    send(client, "opened", 9, sha(1), 0)
    drain(worker_config, cluster)
    assert namespace(kube, "shop-pr-9") is None
    assert environment(client, "shop-pr-9")["state"] == "destroyed"
    # A real reopen does bring it back.
    send(client, "reopened", 9, sha(2), 20)
    drain(worker_config, cluster)
    assert namespace(kube, "shop-pr-9") is not None
    assert environment(client, "shop-pr-9")["state"] == "deployed"


class Recording:
    """Wraps a real cluster and records when each apply runs, per namespace, from any worker."""

    def __init__(self, inner: Cluster, hold: float) -> None:
        self.inner = inner
        self.name = inner.name
        self.hold = hold
        self.spans: list[tuple[str, float, float, str]] = []
        self.lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        # Everything but the apply is the real cluster's (reads, readiness, facts).
        return getattr(self.inner, name)

    async def apply(
        self, namespace: str, repository: str, manifests: list[dict[str, Any]], fence: Any = None
    ) -> Any:
        import asyncio

        start = time.monotonic()
        result = await self.inner.apply(namespace, repository, manifests, fence)
        await asyncio.sleep(self.hold)
        head = manifests[0]["metadata"]["labels"]["k8s-ee/commit-sha"]
        with self.lock:
            self.spans.append((namespace, start, time.monotonic(), head))
        return result


def test_event_during_a_reconcile_is_applied_right_after(
    gateway: Any, kube: KubeAPIServer, worker_config: WorkerConfig
) -> None:
    client = gateway()
    cluster = Recording(kube_cluster(kube.url), hold=0.6)
    with BackgroundWorker(worker_config, cluster):  # type: ignore[arg-type]
        send(client, "opened", 11, sha(1), 0)
        wait_for(lambda: kube.count_requests("PATCH", "shop-pr-11") > 0)
        # The first reconcile is still holding its lock (the recording holds it 0.6 s).
        send(client, "synchronize", 11, sha(2), 1)

        def settled() -> bool:
            status = environment(client, "shop-pr-11")
            return bool(status["head_sha"] == sha(2) and status["state"] == "deployed")

        wait_for(settled)
    assert cluster.spans[-1][3] == sha(2)


def test_never_two_reconciles_of_one_environment_at_once(
    gateway: Any, kube: KubeAPIServer, worker_config: WorkerConfig
) -> None:
    client = gateway()
    cluster = Recording(kube_cluster(kube.url), hold=0.2)
    for number in (21, 22):
        send(client, "opened", number, sha(1), 0)
        for n in range(1, 6):
            send(client, "synchronize", number, sha(1 + n), n)
    # Two workers drain the same queue; their jobs for one environment race for its lock.
    drain(worker_config, cluster, workers=2)  # type: ignore[arg-type]
    for ns in ("shop-pr-21", "shop-pr-22"):
        spans = sorted((s, e) for name, s, e, _ in cluster.spans if name == ns)
        assert spans, ns
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert start >= end, f"two reconciles of {ns} overlapped"
        assert environment(client, ns)["head_sha"] == sha(6)


def test_invalid_config_fails_the_environment_with_the_field(
    gateway: Any, kube: KubeAPIServer, worker_config: WorkerConfig, tmp_path: Path
) -> None:
    assert worker_config.worker.default_config is not None
    worker_config.worker.default_config.write_text(
        "projectId: shop\ndatabases:\n  postgresql:\n    storage: 1GB\n"
    )
    client = gateway()
    send(client, "opened", 5, sha(1), 0)
    drain(worker_config, kube_cluster(kube.url))
    [status] = client.get("/api/v1/environments", headers=ADMIN).json()["items"]
    assert status["state"] == "failed"
    assert "databases.postgresql.storage" in status["last_error"]
    assert kube.objects("Namespace") == []


def test_api_errors_transient_retried_permanent_failed(
    gateway: Any, kube: KubeAPIServer, worker_config: WorkerConfig
) -> None:
    client = gateway()
    kube.add_fault("PATCH", r"/resourcequotas/pr-quota", status=500, times=2)
    send(client, "opened", 31, sha(1), 0)
    drain(worker_config, kube_cluster(kube.url))
    assert environment(client, "shop-pr-31")["state"] == "deployed"

    kube.add_fault("PATCH", r"/limitranges/pr-limits", status=422, times=1)
    send(client, "synchronize", 31, sha(2), 1)
    drain(worker_config, kube_cluster(kube.url))
    status = environment(client, "shop-pr-31")
    assert status["state"] == "failed"
    assert "LimitRange" in status["last_error"]
    assert kube.count_requests("PATCH", "limitranges/pr-limits") <= 3


def test_directory_backend_writes_and_removes_manifests(
    gateway: Any, worker_config: WorkerConfig, tmp_path: Path
) -> None:
    client = gateway()
    root = tmp_path / "environments"
    cluster = DirectoryCluster(root)
    send(client, "opened", 3, sha(1), 0)
    drain(worker_config, cluster)
    files = sorted(p.name for p in (root / "shop-pr-3").glob("*.yaml"))
    assert files[0].startswith("00-") and "namespace" in files[0].lower()
    assert any("deployment" in f.lower() for f in files)
    send(client, "closed", 3, sha(1), 2)
    drain(worker_config, cluster)
    assert not (root / "shop-pr-3").exists()


def test_worker_killed_mid_reconcile_loses_nothing(
    gateway: Any, kube: KubeAPIServer, worker_config: WorkerConfig, tmp_path: Path
) -> None:
    import signal

    client = gateway()
    # arq gives a job up for lost this long (+10 s) after its worker stopped answering.
    settings = {"reconcile_timeout": "5", "lock_ttl": "3"}
    # The Deployment's apply hangs: the first worker is killed while it waits on it.
    kube.add_fault("PATCH", r"/deployments/", status=None, delay=15, times=1)
    logs = [tmp_path / "worker-1.log", tmp_path / "worker-2.log"]
    first = worker_process(worker_config, kube.url, tmp_path, logs[0], **settings)
    try:
        send(client, "opened", 51, sha(1), 0)
        wait_for(lambda: kube.count_requests("PATCH", "/deployments/") > 0, timeout=30)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        assert namespace(kube, "shop-pr-51") is not None  # half applied
        second = worker_process(worker_config, kube.url, tmp_path, logs[1], **settings)
        try:
            wait_for(
                lambda: environment(client, "shop-pr-51")["state"] == "deployed", timeout=60, interval=0.25
            )
        except AssertionError:
            raise AssertionError("\n".join(log.read_text() for log in logs)) from None
        finally:
            second.terminate()
            second.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    deployments = kube.objects("Deployment", namespace="shop-pr-51")
    assert {d["metadata"]["name"] for d in deployments} >= {"shop-pr-51-app"}


def test_the_host_is_the_truth_when_credentials_are_configured(
    gateway: Any, kube: KubeAPIServer, worker_config: WorkerConfig
) -> None:
    from providers.events import Provider
    from providers.hosts.build import build_hosts
    from providers.hosts.settings import load_host_settings
    from tests.fakes.fakehosts import FakeGitHub

    client = gateway()
    cluster = kube_cluster(kube.url)
    with FakeGitHub() as github:
        github.add_token("ghp-test")
        github.add_repo(REPO)
        # The repository's own k8s-ee.yaml, read at the head commit (not the default config).
        github.add_file(REPO, "k8s-ee.yaml", "projectId: store\n", ref=sha(3))
        pull = github.add_pull(REPO, 61, head_sha=sha(3), head_ref="feature")
        hosts = build_hosts(
            load_host_settings(
                github_api_url=github.url, github_token="ghp-test", github_seconds_between_requests=0
            )
        )
        # The webhook says sha(2); GitHub says the head is now sha(3): GitHub wins.
        send(client, "opened", 61, sha(2), 0)
        drain(worker_config, cluster, hosts={Provider.GITHUB: hosts[Provider.GITHUB]})
        ns = namespace(kube, "store-pr-61")
        assert ns is not None and ns["metadata"]["labels"]["k8s-ee/commit-sha"] == sha(3)

        # A redelivered "opened" after GitHub closed the pull request: no resurrection.
        pull.state = "closed"
        send(client, "opened", 61, sha(3), 30)
        drain(worker_config, cluster, hosts={Provider.GITHUB: hosts[Provider.GITHUB]})
        assert namespace(kube, "store-pr-61") is None
        assert environment(client, "store-pr-61")["state"] == "destroyed"


def test_a_destroyed_environment_is_forgotten_in_time_not_at_once(
    gateway: Any, kube: KubeAPIServer, worker_config: WorkerConfig, redis_client: Any
) -> None:
    client = gateway()
    retention_s = worker_config.connection.environment_retention_ms // 1000
    cluster = kube_cluster(kube.url)
    # Deployed first: a close taken before its open (the worker may start both at once) leaves
    # only a tombstone, and this test is about the records of an environment that existed.
    send(client, "opened", 71, sha(1), 0)
    drain(worker_config, cluster)
    send(client, "closed", 71, sha(1), 1)
    drain(worker_config, cluster)
    key = f"github:{REPO}:71"
    # Kept long enough to refuse late deliveries, then expired: Redis does not grow with every PR ever closed.
    for name in (f"k8s-ee:env:{key}", f"k8s-ee:gen:{key}", f"k8s-ee:status:{key}"):
        assert 0 < redis_client.ttl(name) <= retention_s, name
    # A push to its branch no longer finds it.
    assert redis_client.keys("k8s-ee:branch-envs:*") == []
    # A reopen brings it back, and a live environment's records do not expire.
    send(client, "reopened", 71, sha(1), 2)
    drain(worker_config, cluster)
    assert redis_client.ttl(f"k8s-ee:env:{key}") == -1
    assert redis_client.ttl(f"k8s-ee:status:{key}") == -1
