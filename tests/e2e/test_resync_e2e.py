"""The resync, end to end, on all four hosts: with webhooks switched off entirely, environments
still follow their pull requests, within one interval (a close: once two reads a pass apart
showed it).

The code hosts are the fakes (their SDKs over HTTP), the cluster the test API server, the worker
the real arq worker ticking as in production (K8S_EE_RESYNC_INTERVAL of a few seconds), or the
test queuing each pass itself. No webhook is ever sent: an opened change gets its environment, a
push is deployed, a closed change is destroyed after a second read a pass later; a host that
cannot answer changes nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from handlers.settings import WorkerConfig
from providers.events import Provider
from providers.hosts.base import Host
from tests.fakes.fakehosts import FakeBitbucketCloud, FakeBitbucketServer, FakeGitHub, FakeGitLab, FakeHost
from tests.fakes.kubeapi import KubeAPIServer
from tests.support.hosts import bitbucket_cloud_host, bitbucket_server_host, github_host, gitlab_host
from tests.support.lifecycle import ADMIN, lifecycle_config, resync_now, sighted_earlier
from tests.support.worker import BackgroundWorker, drain, kube_cluster, wait_for

TOKEN = "resync-token-0123456789"
USER = "ci-bot@example.com"
CONFIG = "projectId: shop\napp:\n  port: 8080\n"
INTERVAL = 2.0


def sha(n: int) -> str:
    # Unlike in their first 12 characters, which is all Bitbucket Cloud lists of a head.
    return hashlib.sha1(f"commit {n}".encode()).hexdigest()


@dataclass
class Code:
    """One code host, steered the way people would: open, push, close."""

    provider: Provider
    repository: str
    fake: FakeHost
    host: Host
    open: Callable[[int, str], None]
    push: Callable[[int, str], None]
    close: Callable[[int], None]
    reopen: Callable[[int], None]


def _github() -> Iterator[Code]:
    with FakeGitHub() as fake:
        fake.add_token(TOKEN)
        fake.add_repo("acme/shop")

        pulls: dict[int, Any] = {}

        def open_(n: int, head: str) -> None:
            fake.add_file("acme/shop", "k8s-ee.yaml", CONFIG, ref=head)
            pulls[n] = fake.add_pull("acme/shop", n, head_sha=head, head_ref=f"feature-{n}")

        def push(n: int, head: str) -> None:
            fake.add_file("acme/shop", "k8s-ee.yaml", CONFIG, ref=head)
            pulls[n].head_sha = head

        def close(n: int) -> None:
            pulls[n].state = "closed"

        def reopen(n: int) -> None:
            pulls[n].state = "open"

        yield Code(Provider.GITHUB, "acme/shop", fake, github_host(fake, TOKEN), open_, push, close, reopen)


def _gitlab() -> Iterator[Code]:
    with FakeGitLab() as fake:
        fake.add_token(TOKEN)
        fake.add_project("acme/team/shop")

        pulls: dict[int, Any] = {}

        def open_(n: int, head: str) -> None:
            fake.add_file("acme/team/shop", "k8s-ee.yaml", CONFIG, ref=head)
            pulls[n] = fake.add_merge_request("acme/team/shop", n, sha=head, source_branch=f"feature-{n}")

        def push(n: int, head: str) -> None:
            fake.add_file("acme/team/shop", "k8s-ee.yaml", CONFIG, ref=head)
            pulls[n].sha = head

        def close(n: int) -> None:
            pulls[n].state = "merged"

        def reopen(n: int) -> None:
            pulls[n].state = "opened"

        yield Code(
            Provider.GITLAB, "acme/team/shop", fake, gitlab_host(fake, TOKEN), open_, push, close, reopen
        )


def _bitbucket_cloud() -> Iterator[Code]:
    with FakeBitbucketCloud() as fake:
        fake.add_basic(USER, TOKEN)
        fake.add_repository("acme/shop")

        pulls: dict[int, Any] = {}

        def open_(n: int, head: str) -> None:
            fake.add_file("acme/shop", "k8s-ee.yaml", CONFIG, ref=head)
            pulls[n] = fake.add_pull_request("acme/shop", n, source_commit=head, source_branch=f"feature-{n}")

        def push(n: int, head: str) -> None:
            fake.add_file("acme/shop", "k8s-ee.yaml", CONFIG, ref=head)
            pulls[n].source_commit = head

        def close(n: int) -> None:
            pulls[n].state = "DECLINED"

        def reopen(n: int) -> None:
            pulls[n].state = "OPEN"

        host = bitbucket_cloud_host(fake, USER, TOKEN)
        yield Code(Provider.BITBUCKET_CLOUD, "acme/shop", fake, host, open_, push, close, reopen)


def _bitbucket_server() -> Iterator[Code]:
    with FakeBitbucketServer() as fake:
        fake.add_token(TOKEN)
        fake.add_repository("SHOP/shop")

        pulls: dict[int, Any] = {}

        def open_(n: int, head: str) -> None:
            fake.add_file("SHOP/shop", "k8s-ee.yaml", CONFIG, ref=head)
            pulls[n] = fake.add_pull_request("SHOP/shop", n, latest_commit=head, from_branch=f"feature-{n}")

        def push(n: int, head: str) -> None:
            fake.add_file("SHOP/shop", "k8s-ee.yaml", CONFIG, ref=head)
            pulls[n].latest_commit = head

        def close(n: int) -> None:
            pulls[n].state = "MERGED"

        def reopen(n: int) -> None:
            pulls[n].state = "OPEN"

        host = bitbucket_server_host(fake, TOKEN)
        yield Code(Provider.BITBUCKET_SERVER, "SHOP/shop", fake, host, open_, push, close, reopen)


HOSTS = {
    "github": _github,
    "gitlab": _gitlab,
    "bitbucket-cloud": _bitbucket_cloud,
    "bitbucket-server": _bitbucket_server,
}


@pytest.fixture(params=list(HOSTS))
def code(request: pytest.FixtureRequest) -> Iterator[Code]:
    made = contextmanager(HOSTS[request.param])()
    with made as value:
        yield value
        value.host.close()


def config_for(tmp_path: Path, redis_server: Any, code: Code, **overrides: Any) -> WorkerConfig:
    return lifecycle_config(
        tmp_path,
        redis_server.url,
        CONFIG,
        resync_interval=INTERVAL,
        sweep_interval=0,
        # No environment yet, and no webhook ever: the repository is named so it is read.
        resync_repositories=[f"{code.provider.value}:{code.repository}"],
        **overrides,
    )


def head_label(kube: KubeAPIServer, namespace: str) -> str | None:
    found = kube.get_object("Namespace", "", namespace)
    return None if found is None else str(found["metadata"]["labels"]["k8s-ee/commit-sha"])


def test_without_webhooks_environments_follow_their_changes_within_an_interval(
    code: Code, kube: KubeAPIServer, tmp_path: Path, redis_server: Any, redis_client: Any, gateway: Any
) -> None:
    config = config_for(tmp_path, redis_server, code)
    client = gateway()
    cluster = kube_cluster(kube.url)
    with BackgroundWorker(config, cluster, {code.provider: code.host}, periodic=True):

        def state() -> str | None:
            answer = client.get("/api/v1/environments/shop-pr-7", headers=ADMIN)
            return str(answer.json()["state"]) if answer.status_code == 200 else None

        code.open(7, sha(1))
        wait_for(lambda: state() == "deployed", timeout=INTERVAL * 4)
        assert head_label(kube, "shop-pr-7") == sha(1)
        # The events it made went through the policy like a webhook's, marked as the resync's.
        # (The links are written as the reconcile finishes, just after the status it reports.)
        wait_for(lambda: bool(redis_client.keys("k8s-ee:applied:*resync*")), timeout=INTERVAL * 2)

        code.push(7, sha(2))
        wait_for(lambda: head_label(kube, "shop-pr-7") == sha(2), timeout=INTERVAL * 4)

        # Closed: sighted on one pass, destroyed on the next.
        code.close(7)
        wait_for(lambda: state() == "destroyed", timeout=INTERVAL * 6)
        assert head_label(kube, "shop-pr-7") is None


def test_a_host_that_cannot_be_read_changes_nothing_and_is_counted(
    code: Code, kube: KubeAPIServer, tmp_path: Path, redis_server: Any, redis_client: Any
) -> None:
    config = config_for(tmp_path, redis_server, code)
    cluster = kube_cluster(kube.url)
    hosts = {code.provider: code.host}
    code.open(8, sha(1))
    resync_now(config)
    drain(config, cluster, hosts)
    assert head_label(kube, "shop-pr-8") == sha(1)

    # The host is down (every call 503): the environment is kept, however many passes run.
    code.close(8)
    code.fake.add_fault(503, times=-1)
    for _ in range(3):
        resync_now(config)
        drain(config, cluster, hosts)
    assert head_label(kube, "shop-pr-8") == sha(1)
    counts = _counts(redis_client)
    assert counts[("errors", "resync", code.provider.value)] >= 3
    assert counts[("runs", "resync", "ok")] >= 4

    # Back up: the change is found closed, once: a sighting, nothing is deleted yet.
    code.fake.clear_faults()
    resync_now(config)
    drain(config, cluster, hosts)
    assert head_label(kube, "shop-pr-8") == sha(1)
    # The next pass, an interval later, reads it closed again: now it goes.
    sighted_earlier(redis_client, env(code, 8), INTERVAL)
    resync_now(config)
    drain(config, cluster, hosts)
    assert head_label(kube, "shop-pr-8") is None


def test_a_closed_change_goes_only_after_two_reads_a_pass_apart_and_an_open_read_between_clears(
    code: Code, kube: KubeAPIServer, tmp_path: Path, redis_server: Any, redis_client: Any
) -> None:
    config = config_for(tmp_path, redis_server, code)
    cluster = kube_cluster(kube.url)
    hosts = {code.provider: code.host}
    key = env(code, 9)
    sighting = f"k8s-ee:gone-seen:{key}"
    code.open(9, sha(1))
    resync_now(config)
    drain(config, cluster, hosts)
    assert head_label(kube, "shop-pr-9") == sha(1)

    # The host shows it closed: a sighting (which expires), nothing deleted.
    code.close(9)
    resync_now(config)
    drain(config, cluster, hosts)
    assert head_label(kube, "shop-pr-9") == sha(1)
    assert redis_client.exists(sighting) and redis_client.ttl(sighting) > 0
    # The same read again right away (a pass re-run, not the next one): still kept.
    resync_now(config)
    drain(config, cluster, hosts)
    assert head_label(kube, "shop-pr-9") == sha(1)

    # A pass later the host shows it open (it answered wrongly, or it was reopened): the sighting
    # is forgotten, so the next closed read is a first one again.
    code.reopen(9)
    sighted_earlier(redis_client, key, INTERVAL)
    resync_now(config)
    drain(config, cluster, hosts)
    assert not redis_client.exists(sighting)
    code.close(9)
    resync_now(config)
    drain(config, cluster, hosts)
    assert head_label(kube, "shop-pr-9") == sha(1)

    # Two consecutive successful reads a pass apart: destroyed, by an event from the resync.
    sighted_earlier(redis_client, key, INTERVAL)
    resync_now(config)
    drain(config, cluster, hosts)
    assert head_label(kube, "shop-pr-9") is None
    assert not redis_client.exists(sighting)
    counts = _counts(redis_client)
    assert counts[("changes", "resync", "suspected")] == 2
    assert counts[("changes", "resync", "destroyed")] == 1


def env(code: Code, number: int) -> str:
    return f"{code.provider.value}:{code.repository}:{number}"


def _counts(redis_client: Any) -> dict[tuple[str, ...], int]:
    raw = redis_client.hgetall("k8s-ee:lifecycle-counters")
    return {tuple(k.decode().split("|")): int(v) for k, v in raw.items()}
