"""The sweep, end to end: TTLs and their warnings, preserve and its expiry, namespaces whose record
is gone, closed changes found by the sweep itself, its lock, and what it counts on /metrics.

Webhooks and the admin API over HTTP to the gateway; the worker runs the sweep job (as its tick
would queue it) against the test API server and the fake GitHub (its SDK over HTTP), where the
warnings land as comments.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from handlers import naming
from handlers.lifecycle.notices import marker
from handlers.settings import WorkerConfig
from providers.events import Provider
from providers.hosts.base import Host
from tests.fakes.fakehosts import FakeGitHub
from tests.fakes.kubeapi import KubeAPIServer
from tests.support.hosts import github_host
from tests.support.lifecycle import (
    Gateway,
    gateway_with_wake,
    idle_since,
    lifecycle_config,
    sighted_earlier,
    sweep_now,
)
from tests.support.pull_requests import REPO, send, sha
from tests.support.worker import drain, kube_cluster

CONFIG = "projectId: shop\napp:\n  port: 8080\n"
TOKEN = "ghp-sweep-0123456789"
DAY = 86400.0
HOUR = 3600.0


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub() as fake:
        fake.add_token(TOKEN)
        fake.add_repo(REPO)
        yield fake


@pytest.fixture
def host(github: FakeGitHub) -> Iterator[Host]:
    made = github_host(github, TOKEN)
    yield made
    made.close()


@pytest.fixture
def gw(redis_server: Any, redis_client: Any) -> Iterator[Gateway]:
    with gateway_with_wake(redis_server.url) as gateway:
        yield gateway


def config_for(tmp_path: Path, redis_server: Any, **overrides: Any) -> WorkerConfig:
    return lifecycle_config(tmp_path, redis_server.url, CONFIG, **{"resync_interval": 0, **overrides})


def open_change(github: FakeGitHub, gw: Gateway, number: int, head: str) -> None:
    github.add_file(REPO, "k8s-ee.yaml", CONFIG, ref=head)
    github.add_pull(REPO, number, head_sha=head, head_ref=f"feature-{number}")
    send(gw.api, "opened", number, head, 0)


def comments(github: FakeGitHub, number: int) -> list[str]:
    return [c.body for c in github.repos[REPO].comments.values() if c.number == number]


def key(number: int) -> str:
    return f"github:{REPO}:{number}"


def namespace_exists(kube: KubeAPIServer, name: str) -> bool:
    return kube.get_object("Namespace", "", name) is not None


def run_sweep(config: WorkerConfig, kube: KubeAPIServer, host: Host | None = None) -> None:
    sweep_now(config)
    drain(config, kube_cluster(kube.url), {Provider.GITHUB: host} if host else {})


def test_ttl_warns_a_day_and_an_hour_ahead_then_destroys(
    gw: Gateway,
    kube: KubeAPIServer,
    github: FakeGitHub,
    host: Host,
    tmp_path: Path,
    redis_server: Any,
    redis_client: Any,
) -> None:
    config = config_for(tmp_path, redis_server)
    open_change(github, gw, 5, sha(1))
    drain(config, kube_cluster(kube.url), {Provider.GITHUB: host})
    assert gw.environment("shop-pr-5")["state"] == "deployed"
    ttl = config.lifecycle.ttl

    # 23 h left: the day's warning, once however often the sweep runs.
    idle_since(redis_client, key(5), time.time() - ttl + 23 * HOUR)
    run_sweep(config, kube, host)
    run_sweep(config, kube, host)
    warnings = [body for body in comments(github, 5) if marker("ttl-24h") in body]
    assert len(warnings) == 1 and "will be destroyed at" in warnings[0]
    assert namespace_exists(kube, "shop-pr-5")

    # 30 min left: the hour's warning.
    idle_since(redis_client, key(5), time.time() - ttl + 30 * 60)
    run_sweep(config, kube, host)
    assert any(marker("ttl-1h") in body for body in comments(github, 5))
    assert namespace_exists(kube, "shop-pr-5")

    # Past the TTL: destroyed, by an event from the sweep.
    idle_since(redis_client, key(5), time.time() - ttl - 60)
    run_sweep(config, kube, host)
    assert not namespace_exists(kube, "shop-pr-5")
    status = gw.environment("shop-pr-5")
    assert status["state"] == "destroyed"
    assert redis_client.hget("k8s-ee:lifecycle-counters", "changes|sweep|ttl_destroyed") == b"1"


def test_activity_restarts_the_ttl(
    gw: Gateway,
    kube: KubeAPIServer,
    github: FakeGitHub,
    host: Host,
    tmp_path: Path,
    redis_server: Any,
    redis_client: Any,
) -> None:
    config = config_for(tmp_path, redis_server)
    open_change(github, gw, 6, sha(1))
    drain(config, kube_cluster(kube.url), {Provider.GITHUB: host})
    idle_since(redis_client, key(6), time.time() - config.lifecycle.ttl - 60)
    # Someone pushes before the sweep: it is used, so it stays.
    github.add_file(REPO, "k8s-ee.yaml", CONFIG, ref=sha(2))
    github.repos[REPO].pulls[6].head_sha = sha(2)
    send(gw.api, "synchronize", 6, sha(2), 10)
    drain(config, kube_cluster(kube.url), {Provider.GITHUB: host})
    run_sweep(config, kube, host)
    assert namespace_exists(kube, "shop-pr-6")


def test_preserved_outlives_its_ttl_and_its_close_until_it_expires(
    gw: Gateway,
    kube: KubeAPIServer,
    github: FakeGitHub,
    host: Host,
    tmp_path: Path,
    redis_server: Any,
    redis_client: Any,
) -> None:
    config = config_for(tmp_path, redis_server)
    hosts = {Provider.GITHUB: host}
    open_change(github, gw, 7, sha(1))
    drain(config, kube_cluster(kube.url), hosts)
    assert gw.act(key(7), "preserve").status_code == 202
    drain(config, kube_cluster(kube.url), hosts)
    labels = kube.get_object("Namespace", "", "shop-pr-7")["metadata"]  # type: ignore[index]
    assert labels["labels"][naming.LABEL_PRESERVE] == "true"
    assert "k8s-ee/preserve-until" in labels["annotations"]

    # Past its TTL: kept, because it is preserved.
    idle_since(redis_client, key(7), time.time() - config.lifecycle.ttl - 60)
    run_sweep(config, kube, host)
    assert namespace_exists(kube, "shop-pr-7")
    # Closed: kept too, as `preserved`.
    github.repos[REPO].pulls[7].state = "closed"
    send(gw.api, "closed", 7, sha(1), 20)
    drain(config, kube_cluster(kube.url), hosts)
    assert namespace_exists(kube, "shop-pr-7")
    assert gw.environment("shop-pr-7")["state"] == "preserved"

    # Its preservation ends within the hour: warned.
    _preserved_until(redis_client, key(7), time.time() + 30 * 60)
    run_sweep(config, kube, host)
    assert any(marker("preserve-1h") in body for body in comments(github, 7))
    assert namespace_exists(kube, "shop-pr-7")

    # It has ended: said so, and its change being closed, the environment goes.
    _preserved_until(redis_client, key(7), time.time() - 1)
    run_sweep(config, kube, host)
    ended = [body for body in comments(github, 7) if marker("preserve-expired") in body]
    assert len(ended) == 1 and "no longer preserved" in ended[0]
    assert not namespace_exists(kube, "shop-pr-7")
    assert gw.environment("shop-pr-7")["state"] == "destroyed"


def test_an_expired_preservation_of_an_open_change_loses_its_label(
    gw: Gateway,
    kube: KubeAPIServer,
    github: FakeGitHub,
    host: Host,
    tmp_path: Path,
    redis_server: Any,
    redis_client: Any,
) -> None:
    config = config_for(tmp_path, redis_server)
    hosts = {Provider.GITHUB: host}
    open_change(github, gw, 8, sha(1))
    drain(config, kube_cluster(kube.url), hosts)
    gw.act(key(8), "preserve")
    drain(config, kube_cluster(kube.url), hosts)
    _preserved_until(redis_client, key(8), time.time() - 1)
    run_sweep(config, kube, host)
    namespace = kube.get_object("Namespace", "", "shop-pr-8")
    assert namespace is not None
    assert naming.LABEL_PRESERVE not in namespace["metadata"]["labels"]
    assert gw.environment("shop-pr-8")["state"] == "deployed"


def _preserved_until(redis_client: Any, env: str, moment: float) -> None:
    import json
    from datetime import UTC, datetime

    record = json.loads(redis_client.get(f"k8s-ee:env:{env}"))
    record["preserved_until"] = datetime.fromtimestamp(moment, UTC).isoformat()
    redis_client.set(f"k8s-ee:env:{env}", json.dumps(record))


def orphan(kube: KubeAPIServer, name: str, number: int, provider: str = "github") -> None:
    """A namespace the gateway made, whose environment record is gone (Redis lost, say)."""
    kube.add_object(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": name,
                "labels": {
                    naming.LABEL_MANAGED_BY: naming.MANAGED_BY,
                    naming.LABEL_PROVIDER: provider,
                    naming.LABEL_PR_NUMBER: str(number),
                },
                "annotations": {naming.ANNOTATION_REPOSITORY: REPO},
            },
        }
    )


def test_an_orphaned_namespace_goes_only_after_two_sweeps_with_the_host_readable(
    kube: KubeAPIServer, github: FakeGitHub, host: Host, tmp_path: Path, redis_server: Any, redis_client: Any
) -> None:
    config = config_for(tmp_path, redis_server, sweep_interval=2)
    orphan(kube, "shop-pr-90", 90)  # its change is closed (not listed open)
    orphan(kube, "shop-pr-91", 91)  # its change is open: taken back by the resync
    github.add_pull(REPO, 91, head_sha=sha(3), head_ref="feature-91")
    orphan(kube, "other-pr-92", 92, provider="generic")  # no host to ask: kept

    run_sweep(config, kube, host)
    assert namespace_exists(kube, "shop-pr-90")  # one sighting is only a suspicion
    # A host error on the second sweep: nothing is deleted, the error is counted.
    time.sleep(1.1)
    github.add_fault(503, times=-1)
    run_sweep(config, kube, host)
    assert namespace_exists(kube, "shop-pr-90")
    assert int(redis_client.hget("k8s-ee:lifecycle-counters", "errors|sweep|github")) >= 1
    github.clear_faults()
    run_sweep(config, kube, host)
    assert not namespace_exists(kube, "shop-pr-90")
    assert namespace_exists(kube, "shop-pr-91") and namespace_exists(kube, "other-pr-92")
    assert redis_client.sismember("k8s-ee:resync-repositories", f"github:{REPO}")
    assert int(redis_client.hget("k8s-ee:lifecycle-counters", "changes|sweep|orphan_unverifiable")) >= 1


def test_without_the_resync_the_sweep_destroys_closed_changes_after_two_reads(
    gw: Gateway,
    kube: KubeAPIServer,
    github: FakeGitHub,
    host: Host,
    tmp_path: Path,
    redis_server: Any,
    redis_client: Any,
) -> None:
    config = config_for(tmp_path, redis_server, sweep_interval=2)
    hosts = {Provider.GITHUB: host}
    open_change(github, gw, 9, sha(1))
    drain(config, kube_cluster(kube.url), hosts)
    # Closed on the host; the webhook never came.
    github.repos[REPO].pulls[9].state = "closed"
    run_sweep(config, kube, host)
    assert namespace_exists(kube, "shop-pr-9")
    sighted_earlier(redis_client, key(9), 2)
    run_sweep(config, kube, host)
    assert not namespace_exists(kube, "shop-pr-9")


def test_one_worker_sweeps_and_the_metrics_say_what_the_sweeps_did(
    gw: Gateway, kube: KubeAPIServer, tmp_path: Path, redis_server: Any, redis_client: Any
) -> None:
    config = config_for(tmp_path, redis_server)
    send(gw.api, "opened", 11, sha(1), 0)
    drain(config, kube_cluster(kube.url))
    # Another worker holds the sweep's lock: this one skips, and says so.
    redis_client.set("k8s-ee:lock:lifecycle:sweep", "someone-else", px=5000)
    run_sweep(config, kube)
    redis_client.delete("k8s-ee:lock:lifecycle:sweep")
    run_sweep(config, kube)
    text = gw.api.get("/metrics").text
    assert 'k8s_ee_sweep_runs_total{kind="sweep",result="skipped"} 1.0' in text
    assert 'k8s_ee_sweep_runs_total{kind="sweep",result="ok"} 1.0' in text
    assert 'k8s_ee_environments{state="deployed"} 1.0' in text
    assert "k8s_ee_hibernated_share_of_idle" in text
    assert "k8s_ee_sweep_errors_total" in text
