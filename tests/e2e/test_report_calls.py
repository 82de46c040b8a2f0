"""How many GitHub calls one pull request's lifecycle costs (open, one push, close), counted from
the fake host's request log, and what the pull request shows at the end."""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Any

from handlers.comment import MARKER
from handlers.settings import load_worker_config
from providers.events import Provider
from tests.fakes.fakehosts import FakeGitHub
from tests.fakes.kubeapi import KubeAPIServer
from tests.support.hosts import github_host, open_pull
from tests.support.pull_requests import REPO, pull_request, send, send_github
from tests.support.worker import drain, kube_cluster

# The target for open, one push and close (it was 29 to 30 calls, 17 of them writes).
MAX_CALLS = 18


def sha(n: int) -> str:
    """Commits whose short hashes differ, as the comment shows them."""
    return hashlib.sha1(str(n).encode()).hexdigest()


def test_a_lifecycle_costs_at_most_18_github_calls(gateway: Any, redis_server: Any) -> None:
    # A report delay long enough for each step (the test API server makes deploys ready at once)
    # to settle before it is reported, whatever the load on the machine.
    settings = load_worker_config(
        redis_url=redis_server.url, preview_domain="preview.example.com", report_delay=2.0
    )
    client = gateway()
    with KubeAPIServer() as kube, FakeGitHub() as github:
        pull = open_pull(github, REPO, 8, [sha(1), sha(2)])
        hosts = {Provider.GITHUB: github_host(github, "ghp-test")}
        cluster = kube_cluster(kube.url)
        send(client, "opened", 8, sha(1), 1)
        drain(settings, cluster, hosts=hosts)
        pull.head_sha = sha(2)
        send(client, "synchronize", 8, sha(2), 2)
        drain(settings, cluster, hosts=hosts)
        pull.state = "closed"
        send(client, "closed", 8, sha(2), 3)
        drain(settings, cluster, hosts=hosts)

        calls = Counter(f"{r.method} {r.path}" for r in github.requests)
        listing = "\n".join(f"{n:3} {call}" for call, n in sorted(calls.items()))
        [comment] = github.comments(REPO, 8)
        assert comment.body.startswith(MARKER) and "destroyed" in comment.body
        assert sha(2)[:12] in comment.body
        deployments = {d.sha: d for d in github.deployments(REPO)}
        assert set(deployments) == {sha(1), sha(2)}
        assert all(d.environment == "pr-8" and d.state == "inactive" for d in deployments.values())
        assert [s.state for s in deployments[sha(2)].statuses][-1] == "inactive"
        assert "success" in [s.state for s in deployments[sha(2)].statuses]
        latest = github.commit_statuses(REPO, sha(2))[-1]
        assert latest.context == "k8s-ee/preview" and latest.state == "success"
        # Each step's states coalesce into one report; the comment is created once, without a
        # search (the pull request had no comments), and edited by its id; each commit gets one
        # deployment (no search for it), and nothing is written twice.
        assert calls[f"GET /repos/{REPO}/issues/8/comments"] == 0, listing
        assert calls[f"POST /repos/{REPO}/deployments"] == 2, listing
        assert not any(path.startswith(f"GET /repos/{REPO}/deployments") for path in calls), listing
        assert len(github.requests) <= MAX_CALLS, listing


def test_a_comment_already_on_the_pull_request_is_found_and_edited(gateway: Any, redis_server: Any) -> None:
    # The first edition's comment (or one whose id was lost) is on the pull request: GitHub counts
    # it, so the first report searches, finds its marker and edits it; no second comment.
    settings = load_worker_config(redis_url=redis_server.url, preview_domain="preview.example.com")
    client = gateway()
    with KubeAPIServer() as kube, FakeGitHub() as github:
        open_pull(github, REPO, 9, [sha(1)])
        github.add_comment(REPO, 9, "LGTM", user="reviewer")
        earlier = github.add_comment(REPO, 9, f"{MARKER}\nfrom the first edition", user="k8s-ee-bot")
        hosts = {Provider.GITHUB: github_host(github, "ghp-test")}
        # The first event this gateway sees of it, counting the comments as GitHub would.
        payload = pull_request("synchronize", 9, sha(1), 1)
        payload["pull_request"]["comments"] = 2
        send_github(client, payload)
        drain(settings, kube_cluster(kube.url), hosts=hosts)

        comments = github.comments(REPO, 9)
        assert [c.id for c in comments] == [comments[0].id, earlier.id]
        assert MARKER in comments[1].body and "deployed" in comments[1].body
        assert any(
            r.method == "GET" and r.path == f"/repos/{REPO}/issues/9/comments" for r in github.requests
        )
