"""The resync's limits, end to end: a provider whose request budget is low is not listed further
(its repositories wait for a later pass), and a pass that runs out of time hands the rest of its
repositories to a job of its own, having started at least one.

The fake GitHub (PyGithub over HTTP) counts its budget down call by call and says so in its
`X-RateLimit-*` headers; the cluster is the test API server; the worker runs what is queued. The
deadline is given to a pass directly (one already past), so nothing waits on the clock.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from arq.connections import RedisSettings, create_pool
from redis.asyncio import Redis

from handlers.keys import Keys
from handlers.lifecycle.emit import emit
from handlers.lifecycle.resync import BUDGET_RESERVE, Pass, Repo
from handlers.queue import Job
from handlers.settings import WorkerConfig
from providers.events import Provider
from providers.hosts.base import Host
from tests.fakes.fakehosts import FakeGitHub
from tests.fakes.kubeapi import KubeAPIServer
from tests.support.hosts import github_host
from tests.support.lifecycle import enqueue, lifecycle_config, resync_now
from tests.support.worker import drain, kube_cluster

TOKEN = "ghp-resync-limits-0123456789"
NAMES = ("alpha", "bravo", "charlie")
REPOS = [f"acme/{name}" for name in NAMES]


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub() as fake:
        fake.add_token(TOKEN)
        for name, repo in zip(NAMES, REPOS, strict=True):
            fake.add_repo(repo)
            head = hashlib.sha1(name.encode()).hexdigest()
            fake.add_file(repo, "k8s-ee.yaml", f"projectId: {name}\napp:\n  port: 8080\n", ref=head)
            fake.add_pull(repo, 1, head_sha=head, head_ref="feature-1")
        yield fake


@pytest.fixture
def host(github: FakeGitHub) -> Iterator[Host]:
    made = github_host(github, TOKEN)
    yield made
    made.close()


def config_for(tmp_path: Path, redis_server: Any) -> WorkerConfig:
    return lifecycle_config(
        tmp_path,
        redis_server.url,
        "app:\n  port: 8080\n",
        resync_interval=60,
        sweep_interval=0,
        resync_repositories=[f"github:{repo}" for repo in REPOS],
    )


def deployed(kube: KubeAPIServer) -> set[str]:
    return {name for name in NAMES if kube.get_object("Namespace", "", f"{name}-pr-1") is not None}


def listed(github: FakeGitHub) -> list[str]:
    return [r.path for r in github.requests if r.method == "GET" and r.path.endswith("/pulls")]


def deferred(redis_client: Any) -> int:
    return int(redis_client.hget("k8s-ee:lifecycle-counters", "changes|resync|deferred") or 0)


def test_a_provider_short_of_budget_is_not_listed_further_until_it_has_enough(
    github: FakeGitHub,
    host: Host,
    kube: KubeAPIServer,
    tmp_path: Path,
    redis_server: Any,
    redis_client: Any,
) -> None:
    config = config_for(tmp_path, redis_server)
    cluster = kube_cluster(kube.url)
    hosts = {Provider.GITHUB: host}
    # GitHub has fewer requests left than the resync keeps in reserve (for the reports).
    github.rate_remaining = BUDGET_RESERVE // 2
    resync_now(config)
    drain(config, cluster, hosts)
    # The budget was not known before the first call; after it, the pass stopped listing.
    assert listed(github) == [f"/repos/{REPOS[0]}/pulls"]
    assert deferred(redis_client) == 2
    assert deployed(kube) == {"alpha"}

    # The next pass, the host still short: nothing more is listed.
    resync_now(config)
    drain(config, cluster, hosts)
    assert len(listed(github)) == 1 and deferred(redis_client) == 5
    assert deployed(kube) == {"alpha"}

    # The host has budget again, and says so in its next answer (a report's, a config read's):
    # the next pass lists every repository, and the rest get their environments.
    github.rate_remaining = 5000
    host.open_changes(REPOS[0])
    resync_now(config)
    drain(config, cluster, hosts)
    assert {f"/repos/{repo}/pulls" for repo in REPOS} <= set(listed(github))
    assert deployed(kube) == set(NAMES)
    assert deferred(redis_client) == 5


def test_a_pass_out_of_time_hands_its_rest_to_the_next_job_after_starting_one(
    github: FakeGitHub,
    host: Host,
    kube: KubeAPIServer,
    tmp_path: Path,
    redis_server: Any,
    redis_client: Any,
) -> None:
    config = config_for(tmp_path, redis_server)
    cluster = kube_cluster(kube.url)
    hosts = {Provider.GITHUB: host}
    queue = config.connection.queue_name

    async def run_pass() -> list[Repo]:
        redis = Redis.from_url(redis_server.url)
        pool = await create_pool(RedisSettings.from_dsn(redis_server.url))
        try:

            async def send(event: Any) -> bool:
                return await emit(pool, queue, event)

            # Its deadline passed already (the job's time ran out before the pass began).
            late = Pass(
                redis=redis,
                keys=Keys("k8s-ee:"),
                hosts=hosts,
                emit=send,
                interval_s=60,
                deadline=time.monotonic() - 1,
            )
            await late.run(Repo(Provider.GITHUB, repo) for repo in REPOS)
            return late.left
        finally:
            await pool.aclose()
            await redis.aclose()

    left = asyncio.run(run_pass())
    # The first repository was read all the same (a pass always gets somewhere), the rest left.
    assert left == [Repo(Provider.GITHUB, REPOS[1]), Repo(Provider.GITHUB, REPOS[2])]
    assert listed(github) == [f"/repos/{REPOS[0]}/pulls"]
    drain(config, cluster, hosts)
    assert deployed(kube) == {"alpha"}

    # The job that takes the rest reads those, and only those.
    enqueue(config, Job.RESYNC, [str(repo) for repo in left], job_id="resync:rest:test")
    drain(config, cluster, hosts)
    assert sorted(listed(github)) == sorted(f"/repos/{repo}/pulls" for repo in REPOS)
    assert deployed(kube) == set(NAMES)
