"""Hibernation and wake, end to end: webhooks and the admin API over HTTP to the gateway, the wake
service, real Redis, the arq worker, the test Kubernetes API server.

Every rule has a test here: what sleeps and what keeps running (and the comment says so), the
replicas kept and restored exactly, CloudNativePG's hibernation and a cluster too unhealthy for
it, the preview host routed to the wake service and back, wake on a visit (a browser's page, an
API client's 503), on a push, on request; the idle check; a wake reaching "deployed" only once
the app's pod is ready.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from handlers.hibernate import ANNOTATION_REPLICAS, CNPG_HIBERNATION
from handlers.settings import WorkerConfig
from providers.events import Provider
from tests.fakes.fakehosts import FakeGitHub
from tests.fakes.kubeapi import KubeAPIServer
from tests.support.hosts import github_host
from tests.support.lifecycle import (
    Gateway,
    Operators,
    gateway_with_wake,
    hold_pods,
    idle_since,
    ingress_backend,
    lifecycle_config,
    mark_ready,
    operators,
    replicas,
    sweep_now,
)
from tests.support.pull_requests import REPO, T0, send, send_github, sha
from tests.support.receivers import SUBSCRIBER_SECRET, Receiver
from tests.support.senders import FIXTURES
from tests.support.worker import BackgroundWorker, drain, kube_cluster, wait_for

CONFIG = (
    "projectId: shop\napp:\n  port: 8080\ndatabases:\n  postgresql: true\n  redis: true\n  mongodb: true\n"
)
NS = "shop-pr-42"
KEY = f"github:{REPO}:42"


@pytest.fixture
def ops(kube: KubeAPIServer) -> Operators:
    return operators(kube)


@pytest.fixture
def config(tmp_path: Path, redis_server: Any, redis_client: Any, ops: Operators) -> WorkerConfig:
    return lifecycle_config(tmp_path, redis_server.url, CONFIG)


@pytest.fixture
def gw(redis_server: Any, redis_client: Any) -> Iterator[Gateway]:
    with gateway_with_wake(redis_server.url) as gateway:
        yield gateway


def deployed(gw: Gateway, kube: KubeAPIServer, config: WorkerConfig) -> None:
    send(gw.api, "opened", 42, sha(1), 0)
    drain(config, kube_cluster(kube.url))
    assert gw.environment(NS)["state"] == "deployed"


def test_hibernate_on_request_scales_to_zero_keeps_data_and_routes_to_the_wake_service(
    gw: Gateway, kube: KubeAPIServer, config: WorkerConfig
) -> None:
    deployed(gw, kube, config)
    # Someone scaled the app to three by hand: that is what comes back after the wake.
    _scale(kube, NS, f"{NS}-app", 3)
    claims_before = {c["metadata"]["name"] for c in kube.objects("PersistentVolumeClaim", NS)}

    answer = gw.act(KEY, "hibernate")
    assert answer.status_code == 202, answer.text
    assert answer.json()["event"]["source"] == "api"
    drain(config, kube_cluster(kube.url))

    status = gw.environment(NS)
    assert status["state"] == "hibernated"
    assert set(replicas(kube, NS).values()) == {0}
    assert status["replicas"][f"{NS}-app"] == 3
    app = kube.get_object("Deployment", NS, f"{NS}-app")
    assert app is not None and app["metadata"]["annotations"][ANNOTATION_REPLICAS] == "3"
    [cluster] = kube.objects("Cluster", NS)
    assert cluster["metadata"]["annotations"][CNPG_HIBERNATION] == "on"
    # Nothing was deleted: every object and volume claim is still there.
    assert {c["metadata"]["name"] for c in kube.objects("PersistentVolumeClaim", NS)} == claims_before
    assert kube.objects("MongoDBCommunity", NS)
    # MongoDB cannot sleep: it keeps running, and the comment says so.
    assert "MongoDB keeps running" in status["note"]
    # The host goes to the wake service, through an ExternalName Service both controllers follow.
    assert ingress_backend(kube, NS) == f"{NS}-wake"
    wake = kube.get_object("Service", NS, f"{NS}-wake")
    assert wake is not None and wake["spec"]["type"] == "ExternalName"
    port = wake["spec"]["ports"][0]
    assert port["port"] == port["targetPort"] == 8081 and port["name"] == "http"


def _scale(kube: KubeAPIServer, namespace: str, name: str, count: int) -> None:
    """`kubectl scale`: the scale written by another field manager than the gateway's."""
    import httpx

    answer = httpx.patch(
        f"{kube.url}/apis/apps/v1/namespaces/{namespace}/deployments/{name}",
        params={"fieldManager": "kubectl-scale"},
        headers={"Content-Type": "application/merge-patch+json"},
        json={"spec": {"replicas": count}},
    )
    assert answer.status_code == 200, answer.text


def test_a_visit_wakes_it_and_it_is_deployed_once_the_app_is_ready(
    gw: Gateway, kube: KubeAPIServer, config: WorkerConfig, redis_client: Any
) -> None:
    deployed(gw, kube, config)
    gw.act(KEY, "hibernate")
    drain(config, kube_cluster(kube.url))
    assert gw.environment(NS)["state"] == "hibernated"

    # An API client is told to come back; a browser gets the waiting page. Both ask for the wake.
    api = gw.visit(NS, "/orders", Accept="application/json")
    assert api.status_code == 503 and int(api.headers["Retry-After"]) >= 1
    assert api.json()["status"] == "waking"
    page = gw.visit(NS, "/orders", Accept="text/html,application/xhtml+xml")
    assert page.status_code == 503 and page.headers["content-type"].startswith("text/html")
    assert NS in page.text and "EventSource" in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    # A crowd of visitors asks once: one wake event in the delivery log.
    for _ in range(5):
        gw.visit(NS, "/", Accept="text/html")
    visits = gw.api.get("/api/v1/deliveries?provider=github", headers={"Authorization": "Bearer admin-token"})
    wakes = [d for d in visits.json()["items"] if d["event_type"] == "env.wake"]
    assert len(wakes) == 1 and wakes[0]["event"]["source"] == "visit"

    cluster = kube_cluster(kube.url)
    hold_pods(kube)
    with BackgroundWorker(config, cluster):
        # Woken: the app comes back at its replicas, the host stays on the wake service meanwhile.
        wait_for(lambda: replicas(kube, NS).get(f"{NS}-app") == 1)
        wait_for(lambda: "waking" in (gw.environment(NS)["note"] or ""))
        assert gw.environment(NS)["state"] == "deploying"
        assert ingress_backend(kube, NS) == f"{NS}-wake"
        assert gw.visit(NS, Accept="application/json").json()["phase"] == "starting"
        time.sleep(0.5)
        assert gw.environment(NS)["state"] == "deploying"  # not ready: not deployed
        # The pod becomes ready: the host goes back to the app, and only then is it deployed.
        mark_ready(kube)
        wait_for(lambda: gw.environment(NS)["state"] == "deployed")
        assert ingress_backend(kube, NS) == f"{NS}-app"
    [cluster_object] = kube.objects("Cluster", NS)
    assert CNPG_HIBERNATION not in (cluster_object["metadata"].get("annotations") or {})


def test_a_push_wakes_it_and_the_idle_check_puts_it_back_to_sleep(
    gw: Gateway, kube: KubeAPIServer, config: WorkerConfig, redis_client: Any
) -> None:
    deployed(gw, kube, config)
    cluster = kube_cluster(kube.url)
    # Nobody used it for five hours (the default idle time is four): the next tick hibernates it.
    idle_since(redis_client, KEY, time.time() - 5 * 3600)
    with BackgroundWorker(config, cluster, periodic=True):
        wait_for(lambda: gw.environment(NS)["state"] == "hibernated")
        status = gw.environment(NS)
        assert "after 4 h without activity" in status["note"]
        assert status["wakes_on_visit"] is True
        # A push to its branch (new commits), after it fell asleep, wakes it.
        send(gw.api, "synchronize", 42, sha(2), (time.time() - T0.timestamp()) / 60)
        wait_for(lambda: replicas(kube, NS).get(f"{NS}-app") == 1)
        wait_for(lambda: gw.environment(NS)["state"] == "deployed")
        assert gw.environment(NS)["head_sha"] == sha(2)
        # Used just now: not idle, so it stays awake through further ticks.
        time.sleep(2.5)
        assert gw.environment(NS)["state"] == "deployed"


def test_hibernation_is_reported_on_the_change_to_subscribers_and_in_the_metrics(
    redis_server: Any,
    redis_client: Any,
    kube: KubeAPIServer,
    tmp_path: Path,
    receiver: Receiver,
    ops: Operators,
) -> None:
    config = lifecycle_config(
        tmp_path,
        redis_server.url,
        CONFIG,
        status_webhooks=json.dumps([{"url": receiver.url, "secret": SUBSCRIBER_SECRET}]),
        status_webhooks_allow_private=True,
    )
    with gateway_with_wake(redis_server.url) as gw, FakeGitHub() as github:
        github.add_token("ghp-test")
        github.add_repo(REPO)
        github.add_file(REPO, "k8s-ee.yaml", CONFIG, ref=sha(1))
        github.add_pull(REPO, 42, head_sha=sha(1), head_ref="feature")
        host = github_host(github, "ghp-test")
        hosts = {Provider.GITHUB: host}
        send(gw.api, "opened", 42, sha(1), 0)
        drain(config, kube_cluster(kube.url), hosts)
        gw.act(KEY, "hibernate")
        drain(config, kube_cluster(kube.url), hosts)
        host.close()

        [comment] = github.comments(REPO, 42)
        assert "hibernated" in comment.body and "MongoDB keeps running" in comment.body
        # A visit wakes it: the comment links the preview.
        assert "https://shop-pr-42.preview.example.com" in comment.body
        states = [r["body"]["environment"]["state"] for r in receiver.received]
        assert states[-1] == "hibernated" and all(r["ok"] for r in receiver.received)
        assert 'k8s_ee_hibernations_total{source="api"} 1.0' in gw.api.get("/metrics").text


def test_an_unhealthy_postgresql_is_said_to_keep_running_until_cloudnativepg_hibernates_it(
    gw: Gateway, kube: KubeAPIServer, config: WorkerConfig, ops: Operators
) -> None:
    deployed(gw, kube, config)
    # CloudNativePG defers hibernating a cluster that is not healthy (and has no hibernation
    # condition yet): the comment must not claim PostgreSQL sleeps.
    ops.healthy = False
    gw.act(KEY, "hibernate")
    drain(config, kube_cluster(kube.url))
    status = gw.environment(NS)
    assert status["state"] == "hibernated"
    assert "PostgreSQL keeps running for now" in status["note"] and "Setting up primary" in status["note"]
    [cluster] = kube.objects("Cluster", NS)
    assert cluster["metadata"]["annotations"][CNPG_HIBERNATION] == "on"  # asked for all the same

    # Healthy now: the operator (on its own round) hibernates it, and the next sweep's look says so.
    ops.healthy = True
    kube.set_status("Cluster", NS, "app-postgresql", ops.cnpg(cluster))  # the operator's next round
    [cluster] = kube.objects("Cluster", NS)
    assert cluster["status"]["conditions"][0]["reason"] == "Hibernated"
    sweep_now(config)
    drain(config, kube_cluster(kube.url))
    status = gw.environment(NS)
    assert status["state"] == "hibernated" and "PostgreSQL" not in status["note"]


def test_waiting_visitors_are_bounded_per_environment(
    redis_server: Any, redis_client: Any, kube: KubeAPIServer, config: WorkerConfig
) -> None:
    with gateway_with_wake(redis_server.url, wake_max_pending=2) as gw:
        deployed(gw, kube, config)
        gw.act(KEY, "hibernate")
        drain(config, kube_cluster(kube.url))
        host = {"Host": f"{NS}.preview.example.com", "Accept": "text/event-stream"}
        first = gw.wake.stream("GET", "/.k8s-ee-wake/events", headers=host)
        second = gw.wake.stream("GET", "/.k8s-ee-wake/events", headers=host)
        with first as one, second as two:
            assert one.status_code == two.status_code == 200
            assert one.headers["content-type"].startswith("text/event-stream")
            # (An iterator dropped would close its connection: this one is kept to the end.)
            lines = one.iter_lines()
            assert next(lines).startswith("event: state")
            # A third waits for nothing: told to come back.
            third = gw.wake.get("/.k8s-ee-wake/events", headers=host)
            assert third.status_code == 503 and third.headers["Retry-After"] == "2"
            # The page itself is never held: it answers at once.
            assert gw.visit(NS, Accept="text/html").status_code == 503
            lines.close()
        # A place freed is a place taken again.
        deadline = time.monotonic() + 10
        while True:
            with gw.wake.stream("GET", "/.k8s-ee-wake/events", headers=host) as again:
                if again.status_code == 200 or time.monotonic() > deadline:
                    assert again.status_code == 200
                    break
            time.sleep(0.1)


def test_a_repository_sets_its_own_idle_time(
    gw: Gateway, kube: KubeAPIServer, tmp_path: Path, redis_server: Any, redis_client: Any, ops: Operators
) -> None:
    config = lifecycle_config(tmp_path, redis_server.url, "projectId: shop\nhibernation:\n  after: 30m\n")
    send(gw.api, "opened", 42, sha(1), 0)
    drain(config, kube_cluster(kube.url))
    assert gw.environment(NS)["state"] == "deployed"
    # Forty minutes without activity: past its own thirty, well inside the gateway's four hours.
    idle_since(redis_client, KEY, time.time() - 40 * 60)
    with BackgroundWorker(config, kube_cluster(kube.url), periodic=True):
        wait_for(lambda: gw.environment(NS)["state"] == "hibernated")
    assert "after 30 min without activity" in gw.environment(NS)["note"]


def test_comments_api_calls_and_wakes_are_activity(
    gw: Gateway, kube: KubeAPIServer, config: WorkerConfig, redis_client: Any
) -> None:
    deployed(gw, kube, config)

    def last_activity() -> float:
        return float(redis_client.zscore("k8s-ee:activity", KEY))

    idle_since(redis_client, KEY, time.time() - 3 * 3600)
    before = last_activity()
    comment = json.loads((FIXTURES / "github" / "issue_comment.created.json").read_text())
    comment["issue"]["number"] = 42
    comment["comment"]["body"] = "Looks good to me"
    # Written just now (an old comment redelivered would not make it any less idle).
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    comment["comment"]["created_at"] = comment["comment"]["updated_at"] = now
    send_github(gw.api, comment, event="issue_comment")
    drain(config, kube_cluster(kube.url))
    assert last_activity() > before + 3 * 3600 - 60

    idle_since(redis_client, KEY, time.time() - 3 * 3600)
    assert gw.act(KEY, "hibernate").status_code == 202
    drain(config, kube_cluster(kube.url))
    assert gw.environment(NS)["state"] == "hibernated"
    assert last_activity() > time.time() - 60
    # Woken from the admin API (as the command line does): awake again, its idle clock restarted.
    idle_since(redis_client, KEY, time.time() - 3 * 3600)
    assert gw.act(KEY, "wake").status_code == 202
    drain(config, kube_cluster(kube.url))
    assert gw.environment(NS)["state"] == "deployed"
    assert float(redis_client.zscore("k8s-ee:idle-deadlines", KEY)) > time.time() + 3 * 3600
