"""End to end: webhook in, worker, test API server, and what the pull request and subscribers see."""

from __future__ import annotations

import json
from typing import Any

from handlers.comment import MARKER
from handlers.keys import Keys
from handlers.settings import load_worker_config
from providers.events import Provider
from providers.hosts.build import build_hosts
from providers.hosts.settings import load_host_settings
from tests.fakes.fakehosts import FakeGitHub
from tests.fakes.kubeapi import KubeAPIServer
from tests.support.hosts import open_pull
from tests.support.pull_requests import REPO, send, sha
from tests.support.receivers import SUBSCRIBER_SECRET, Receiver
from tests.support.worker import drain, kube_cluster


def test_comment_deployment_and_status_webhook(
    gateway: Any, redis_server: Any, receiver: Receiver, tmp_path: Any
) -> None:
    settings = load_worker_config(
        redis_url=redis_server.url,
        preview_domain="preview.example.com",
        status_webhooks=json.dumps([{"url": receiver.url, "secret": SUBSCRIBER_SECRET}]),
        status_webhooks_allow_private=True,
    )
    client = gateway()
    with KubeAPIServer() as kube, FakeGitHub() as github:
        github.add_token("ghp-test")
        github.add_repo(REPO)
        for n in (1, 2, 3):
            github.add_file(REPO, "k8s-ee.yaml", "projectId: shop\n", ref=sha(n))
        pull = github.add_pull(
            REPO, 8, head_sha=sha(1), head_ref="x](http://evil)<img src=x onerror=alert(1)>"
        )
        hosts = build_hosts(
            load_host_settings(
                github_api_url=github.url,
                github_token="ghp-test",
                github_seconds_between_requests=0,
                github_seconds_between_writes=0,
            )
        )
        cluster = kube_cluster(kube.url)
        # Three deploys of three commits: one comment, edited in place.
        for n in (1, 2, 3):
            pull.head_sha = sha(n)
            send(client, "opened" if n == 1 else "synchronize", 8, sha(n), n)
            drain(settings, cluster, hosts={Provider.GITHUB: hosts[Provider.GITHUB]})

        [comment] = github.comments(REPO, 8)
        assert comment.body.startswith(MARKER)
        assert "deployed" in comment.body and "https://shop-pr-8.preview.example.com" in comment.body
        assert sha(3)[:12] in comment.body
        assert "<img" not in comment.body  # the hostile branch name is inert

        deployments = github.deployments(REPO)
        assert {d.sha for d in deployments} == {sha(1), sha(2), sha(3)}
        latest = next(d for d in deployments if d.sha == sha(3))
        assert latest.environment == "pr-8" and latest.state == "success"
        assert any(
            s.context == "k8s-ee/preview" and s.state == "success"
            for s in github.commit_statuses(REPO, sha(3))
        )

        pull.state = "closed"
        send(client, "closed", 8, sha(3), 10)
        drain(settings, cluster, hosts={Provider.GITHUB: hosts[Provider.GITHUB]})
        [comment] = github.comments(REPO, 8)
        assert "destroyed" in comment.body
        assert next(d for d in github.deployments(REPO) if d.sha == sha(3)).state == "inactive"

    states = [r["body"]["environment"]["state"] for r in receiver.received]
    assert all(r["ok"] for r in receiver.received)
    assert states[0] == "queued" and "deployed" in states and states[-1] == "destroyed"


def test_a_failing_host_delays_the_report_never_the_environment(gateway: Any, redis_server: Any) -> None:
    settings = load_worker_config(redis_url=redis_server.url, preview_domain="preview.example.com")
    client = gateway()
    with KubeAPIServer() as kube, FakeGitHub() as github:
        open_pull(github, REPO, 9, [sha(1)])
        hosts = build_hosts(
            load_host_settings(
                github_api_url=github.url,
                github_token="ghp-test",
                github_seconds_between_requests=0,
                github_seconds_between_writes=0,
                host_rerun_after=0,
            )
        )
        # GitHub fails every comment write for a while: the report is retried, the environment is not touched.
        github.add_fault(502, times=3, method="POST", path=f"/repos/{REPO}/issues/9/comments")
        send(client, "opened", 9, sha(1), 0)
        drain(settings, kube_cluster(kube.url), hosts={Provider.GITHUB: hosts[Provider.GITHUB]})
        status = client.get(
            "/api/v1/environments/shop-pr-9", headers={"Authorization": "Bearer admin-token"}
        ).json()
        assert status["state"] == "deployed"
        # Retried through the queue until it got through: one comment, and the report is clean again.
        [comment] = github.comments(REPO, 9)
        assert "deployed" in comment.body
        assert status["report"]["last_error"] is None
        posts = [r for r in github.requests if r.method == "POST" and r.path.endswith("/issues/9/comments")]
        assert len(posts) >= 4


def test_racing_reports_make_one_comment_and_the_budget_is_exported(gateway: Any, redis_server: Any) -> None:
    import asyncio

    from redis.asyncio import Redis

    from handlers.report import Reporter
    from handlers.status import EnvironmentStatus, StatusStore

    client = gateway()
    with FakeGitHub() as github:
        github.add_token("ghp-test")
        github.add_repo(REPO)
        github.add_pull(REPO, 12, head_sha=sha(1), head_ref="feature")
        host = build_hosts(
            load_host_settings(
                github_api_url=github.url,
                github_token="ghp-test",
                github_seconds_between_requests=0,
                github_seconds_between_writes=0,
            )
        )[Provider.GITHUB]

        async def race() -> list[Any]:
            redis = Redis.from_url(redis_server.url)
            statuses = StatusStore(redis, Keys("k8s-ee:"), 3_600_000, 3_600_000)
            from datetime import UTC, datetime

            await statuses.put(
                EnvironmentStatus(
                    provider=Provider.GITHUB,
                    repository=REPO,
                    number=12,
                    state="deployed",
                    namespace="shop-pr-12",
                    head_sha=sha(1),
                    head_ref="feature",
                    preview_url="https://shop-pr-12.preview.example.com",
                    updated_at=datetime.now(UTC),
                )
            )
            reporter = Reporter(redis, Keys("k8s-ee:"), statuses, {Provider.GITHUB: host})
            env = f"github:{REPO}:12"
            try:
                return list(
                    await asyncio.gather(
                        *(reporter.report(env, datetime.now(UTC)) for _ in range(2)), return_exceptions=True
                    )
                )
            finally:
                await redis.aclose()

        outcomes = asyncio.run(race())
        # One report ran; the other found it running and left the environment to it.
        assert sorted(outcomes) == ["busy", "no change"] or sorted(outcomes) == ["busy", "reported"]
        assert len(github.comments(REPO, 12)) == 1

    # The worker recorded GitHub's remaining budget; the gateway exports it.
    metrics = client.get("/metrics").text
    assert 'k8s_ee_provider_rate_limit_remaining{key="github:token"}' in metrics
