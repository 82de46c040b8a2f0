"""End to end: "deployed" means the preview answers; and the rules a real API server enforces.

Webhook over HTTP, real Redis, the arq worker, the test API server with its controllers
(pods become ready after `ready_delay`, a bad image never starts, pods are admitted against
the namespace's quota).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from handlers.settings import WorkerConfig, load_worker_config
from providers.events import Provider
from providers.hosts.build import build_hosts
from providers.hosts.settings import load_host_settings
from tests.fakes.fakehosts import FakeGitHub
from tests.fakes.kubeapi import Fault, KubeAPIServer
from tests.support.hosts import open_pull
from tests.support.pull_requests import REPO, send, sha
from tests.support.senders import ADMIN_TOKEN
from tests.support.worker import BackgroundWorker, drain, kube_cluster, wait_for

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

IMAGE = "ghcr.io/northwind-labs/shop"


def settings(tmp_path: Path, redis_server: Any, config: str, **overrides: Any) -> WorkerConfig:
    path = tmp_path / "k8s-ee.yaml"
    path.write_text(config)
    return load_worker_config(
        redis_url=redis_server.url,
        default_config=path,
        preview_domain="preview.example.com",
        lock_ttl=3,
        reconcile_max_tries=3,
        **overrides,
    )


def config_text(*lines: str) -> str:
    return (
        "\n".join(["projectId: shop", "app:", "  port: 8080", "image:", f"  repository: {IMAGE}", *lines])
        + "\n"
    )


def environment(client: Any, namespace: str) -> dict[str, Any]:
    answer = client.get(f"/api/v1/environments/{namespace}", headers=ADMIN)
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def current(client: Any, namespace: str) -> dict[str, Any]:
    """The environment's status, or {} before the worker has recorded it."""
    answer = client.get(f"/api/v1/environments/{namespace}", headers=ADMIN)
    return answer.json() if answer.status_code == 200 else {}  # type: ignore[no-any-return]


def cnpg_healthy(obj: dict[str, Any]) -> dict[str, Any]:
    """What CloudNativePG writes once its instance is up."""
    instances = obj["spec"]["instances"]
    return {
        "phase": "Cluster in healthy state",
        "instances": instances,
        "readyInstances": instances,
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "ClusterIsReady", "message": "Cluster is Ready"}
        ],
    }


def test_deployed_only_once_the_app_is_available(
    gateway: Any, kube: KubeAPIServer, tmp_path: Path, redis_server: Any
) -> None:
    kube.ready_delay = 1.5
    config = settings(
        tmp_path, redis_server, config_text("databases:", "  redis: true"), ready_progress_interval=0
    )
    client = gateway()
    with BackgroundWorker(config, kube_cluster(kube.url)):
        send(client, "opened", 42, sha(1), 0)
        waiting = wait_for(
            lambda: (
                (s := current(client, "shop-pr-42")).get("state") == "deploying" and s.get("progress") and s
            )
        )
        # Applied, not up: no URL is live yet, and the status says how far it got.
        assert waiting["applied_at"] is not None and waiting["deployed_at"] is None
        assert "app 0/1" in waiting["progress"]
        deployed = wait_for(lambda: (s := current(client, "shop-pr-42")).get("state") == "deployed" and s)
    applied_at = datetime.fromisoformat(deployed["applied_at"])
    deployed_at = datetime.fromisoformat(deployed["deployed_at"])
    assert (deployed_at - applied_at).total_seconds() >= 1.0
    assert deployed["progress"] is None
    pods = kube.objects("Pod", "shop-pr-42")
    assert pods and all(p["status"]["phase"] == "Running" for p in pods)


def test_an_image_that_cannot_be_pulled_fails_with_that_reason_and_the_comment_says_so(
    gateway: Any, kube: KubeAPIServer, tmp_path: Path, redis_server: Any
) -> None:
    kube.mark_image(f"{IMAGE}:pr-8", "ImagePullBackOff")
    config = settings(tmp_path, redis_server, config_text())
    client = gateway()
    with FakeGitHub() as github:
        open_pull(github, REPO, 8, [sha(1)], config_text())
        hosts = build_hosts(
            load_host_settings(
                github_api_url=github.url,
                github_token="ghp-test",
                github_seconds_between_requests=0,
                github_seconds_between_writes=0,
            )
        )
        send(client, "opened", 8, sha(1), 0)
        drain(config, kube_cluster(kube.url), hosts={Provider.GITHUB: hosts[Provider.GITHUB]})
        status = environment(client, "shop-pr-8")
        assert status["state"] == "failed"
        assert status["last_error"] == (
            f"app: container app: image {IMAGE}:pr-8 cannot be pulled "
            f'(ImagePullBackOff: Back-off pulling image "{IMAGE}:pr-8")'
        )
        [comment] = github.comments(REPO, 8)
        assert "failed" in comment.body and "cannot be pulled" in comment.body
        assert "ImagePullBackOff" in comment.body
        assert "https://shop-pr-8.preview.example.com" not in comment.body  # never shown as live
        assert not any(s.state == "success" for s in github.commit_statuses(REPO, sha(1)))


def test_an_app_bigger_than_the_first_edition_quota_deploys_and_its_surge_pod_fits(
    gateway: Any, kube: KubeAPIServer, tmp_path: Path, redis_server: Any
) -> None:
    big = config_text(
        "resources:",
        "  requests: {cpu: 500m, memory: 512Mi}",
        "  limits: {cpu: '1', memory: 1Gi}",
        "databases:",
        "  redis: true",
        "  postgresql: true",
    )
    config = settings(tmp_path, redis_server, big)
    kube.set_status_hook("Cluster", cnpg_healthy)
    # CloudNativePG's instance pod, as the operator makes it from the Cluster: it uses its share too.
    kube.add_fault_object(
        Fault(
            "PATCH",
            r"/clusters/app-postgresql$",
            status=None,
            action=lambda: kube.add_object(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": "app-postgresql-1", "namespace": "shop-pr-9"},
                    "spec": {
                        "initContainers": [
                            {
                                "name": "bootstrap-controller",
                                "image": "cnpg:1",
                                "resources": _cnpg_resources(),
                            }
                        ],
                        "containers": [
                            {"name": "postgres", "image": "pg:16", "resources": _cnpg_resources()}
                        ],
                    },
                }
            ),
        )
    )
    client = gateway()
    cluster = kube_cluster(kube.url)
    send(client, "opened", 9, sha(1), 0)
    drain(config, cluster)
    assert environment(client, "shop-pr-9")["state"] == "deployed", environment(client, "shop-pr-9")
    hard = kube.get_object("ResourceQuota", "shop-pr-9", "pr-quota")["spec"]["hard"]  # type: ignore[index]
    # The first edition's table would give 1495m: not even the app's first pod and its surge fit.
    assert hard["limits.cpu"] == "2700m"

    # A new commit: the rolling update's surge pod is admitted beside the old pod.
    send(client, "synchronize", 9, sha(2), 1)
    drain(config, cluster)
    status = environment(client, "shop-pr-9")
    assert status["state"] == "deployed" and status["head_sha"] == sha(2), status
    replica_sets = [
        r
        for r in kube.objects("ReplicaSet", "shop-pr-9")
        if r["metadata"]["name"].startswith("shop-pr-9-app-")
    ]
    assert sorted(r["spec"]["replicas"] for r in replica_sets) == [0, 1]
    assert not any(
        c["type"] == "ReplicaFailure" for r in replica_sets for c in r["status"].get("conditions", [])
    )


def _cnpg_resources() -> dict[str, Any]:
    return {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": "500m", "memory": "512Mi"}}


def test_a_service_monitor_without_its_crd_still_deploys_the_app(
    gateway: Any, kube: KubeAPIServer, tmp_path: Path, redis_server: Any
) -> None:
    kube.uninstall("ServiceMonitor")
    config = settings(tmp_path, redis_server, config_text("metrics:", "  enabled: true"))
    client = gateway()
    send(client, "opened", 10, sha(1), 0)
    drain(config, kube_cluster(kube.url))
    status = environment(client, "shop-pr-10")
    assert status["state"] == "deployed"
    assert status["warnings"] == [
        "ServiceMonitor/shop-pr-10-app was not applied: the Prometheus Operator is not installed "
        "(no monitoring.coreos.com/v1 ServiceMonitor)"
    ]
    assert kube.get_object("Deployment", "shop-pr-10", "shop-pr-10-app") is not None


def test_a_database_without_its_operator_fails_saying_which(
    gateway: Any, kube: KubeAPIServer, tmp_path: Path, redis_server: Any
) -> None:
    kube.uninstall("Cluster")
    config = settings(tmp_path, redis_server, config_text("databases:", "  postgresql: true"))
    client = gateway()
    send(client, "opened", 11, sha(1), 0)
    drain(config, kube_cluster(kube.url))
    status = environment(client, "shop-pr-11")
    assert status["state"] == "failed"
    assert (
        status["last_error"]
        == "the CloudNativePG operator is not installed (no postgresql.cnpg.io/v1 Cluster)"
    )
    assert kube.objects("Deployment") == []


def test_a_namespace_terminating_mid_apply_converges(
    gateway: Any, kube: KubeAPIServer, tmp_path: Path, redis_server: Any
) -> None:
    config = settings(tmp_path, redis_server, config_text("databases:", "  redis: true"))
    client = gateway()
    cluster = kube_cluster(kube.url)
    send(client, "opened", 12, sha(1), 0)
    drain(config, cluster)
    assert environment(client, "shop-pr-12")["state"] == "deployed"
    # While the next commit is applied, someone deletes the namespace (it takes a moment to go).
    kube.add_fault_object(
        Fault(
            "PATCH", r"/configmaps/", status=None, action=lambda: kube.delete_namespace("shop-pr-12", hold=3)
        )
    )
    send(client, "synchronize", 12, sha(2), 1)
    drain(config, cluster)
    status = environment(client, "shop-pr-12")
    assert status["state"] == "deployed" and status["head_sha"] == sha(2), status
    namespace = kube.get_object("Namespace", "", "shop-pr-12")
    assert namespace is not None and not namespace["metadata"].get("deletionTimestamp")
    assert namespace["metadata"]["labels"]["k8s-ee/commit-sha"] == sha(2)
    assert kube.get_object("Deployment", "shop-pr-12", "app-redis") is not None


def test_a_database_that_never_gets_ready_fails_at_the_deadline_with_what_it_waited_on(
    gateway: Any, kube: KubeAPIServer, tmp_path: Path, redis_server: Any
) -> None:
    config = settings(
        tmp_path, redis_server, config_text("databases:", "  postgresql: true"), ready_timeout=5
    )
    client = gateway()
    send(client, "opened", 13, sha(1), 0)
    drain(config, kube_cluster(kube.url))
    status = environment(client, "shop-pr-13")
    assert status["state"] == "failed"
    assert status["last_error"].startswith(
        "not ready 5 s after the apply: postgresql waiting for the CloudNativePG operator"
    )


def test_a_storage_smaller_than_the_live_volume_is_refused_naming_the_field(
    gateway: Any, kube: KubeAPIServer, tmp_path: Path, redis_server: Any
) -> None:
    config = settings(tmp_path, redis_server, config_text("databases:", "  mariadb:", "    storage: 2Gi"))
    client = gateway()
    cluster = kube_cluster(kube.url)
    send(client, "opened", 14, sha(1), 0)
    drain(config, cluster)
    assert environment(client, "shop-pr-14")["state"] == "deployed"
    assert config.worker.default_config is not None
    config.worker.default_config.write_text(config_text("databases:", "  mariadb:", "    storage: 1Gi"))
    send(client, "synchronize", 14, sha(2), 1)
    drain(config, cluster)
    status = environment(client, "shop-pr-14")
    assert status["state"] == "failed"
    assert status["last_error"].startswith(
        "k8s-ee.yaml: databases.mariadb.storage: must be at least 2Gi, the size of the live volume app-mariadb-data"
    )
    claim = kube.get_object("PersistentVolumeClaim", "shop-pr-14", "app-mariadb-data")
    assert claim is not None and claim["spec"]["resources"]["requests"]["storage"] == "2Gi"
