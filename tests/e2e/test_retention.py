"""Every key expires or is deleted: a full lifecycle, then past the retention periods (made
short through the settings), and nothing is left in Redis."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from handlers.settings import load_worker_config
from providers.events import Provider
from providers.hosts.build import build_hosts
from providers.hosts.settings import load_host_settings
from tests.fakes.fakehosts import FakeGitHub
from tests.fakes.kubeapi import KubeAPIServer
from tests.support.environments import CONFIG, send_generic
from tests.support.pull_requests import REPO, pull_request, send_github, sha
from tests.support.senders import FIXTURES, auth_headers
from tests.support.worker import drain, kube_cluster

# Hours: 2 s of delivery log, 3 s of destroyed environments.
DELIVERIES_H = 2 / 3600
ENVIRONMENTS_H = 3 / 3600


def push(branch: str, head: str) -> dict[str, Any]:
    return {
        "ref": f"refs/heads/{branch}",
        "before": sha(0),
        "after": head,
        "created": False,
        "deleted": False,
        "repository": {"full_name": REPO, "owner": {"login": REPO.split("/")[0]}},
        "sender": {"login": "octocat"},
        "head_commit": {"id": head, "timestamp": "2026-11-01T12:30:00Z"},
    }


def send_gitlab(client: Any, name: str) -> None:
    body = (FIXTURES / "gitlab" / f"{name}.json").read_bytes()
    headers = json.loads((FIXTURES / "gitlab" / f"{name}.headers.json").read_text())
    answer = client.post(
        "/webhooks/gitlab", content=body, headers={**headers, **auth_headers("gitlab", body)}
    )
    assert answer.status_code == 202, answer.text


def test_nothing_is_left_in_redis_after_a_lifecycle_and_the_retention(
    gateway: Any, kube: KubeAPIServer, redis_client: Any, redis_server: Any, tmp_path: Path
) -> None:
    config = tmp_path / "k8s-ee.yaml"
    config.write_text(CONFIG)
    worker_config = load_worker_config(
        redis_url=redis_server.url,
        default_config=config,
        delivery_retention_hours=DELIVERIES_H,
        environment_retention_hours=ENVIRONMENTS_H,
    )
    client = gateway(delivery_retention_hours=DELIVERIES_H, environment_retention_hours=ENVIRONMENTS_H)
    cluster = kube_cluster(kube.url)

    with FakeGitHub() as github:
        github.add_token("ghp-test")
        github.add_repo(REPO)
        for n in (1, 2):
            github.add_file(REPO, "k8s-ee.yaml", CONFIG, ref=sha(n))
        pull = github.add_pull(REPO, 21, head_sha=sha(1), head_ref="feature")
        hosts = build_hosts(
            load_host_settings(
                github_api_url=github.url,
                github_token="ghp-test",
                github_seconds_between_requests=0,
                github_seconds_between_writes=0,
            )
        )
        # GitHub has credentials (the comment, the statuses, the rate-limit budget); GitLab
        # has none (the reporter warns once, and remembers it did).
        workers = {"hosts": {Provider.GITHUB: hosts[Provider.GITHUB]}}

        # A pull request's whole life, a push to its branch, a close before any open for
        # another one; a merge request; a generic environment deployed, hibernated, destroyed.
        # The last of them all end in the last run of the worker, so that the assertions
        # below come well inside the retention.
        send_github(client, pull_request("opened", 21, sha(1), 1))
        send_generic(client, action="deploy", number=23, sha=sha(3), branch="main")
        drain(worker_config, cluster, **workers)
        pull.head_sha = sha(2)
        send_github(client, pull_request("synchronize", 21, sha(2), 2))
        send_github(client, push("feature", sha(2)), event="push")
        send_github(client, pull_request("closed", 22, sha(5), 3))
        send_gitlab(client, "merge_request.open")
        send_generic(client, action="hibernate", number=23)
        drain(worker_config, cluster, **workers)
        pull.state = "closed"
        send_github(client, pull_request("closed", 21, sha(2), 4))
        send_gitlab(client, "merge_request.close")
        send_generic(client, action="destroy", number=23)
        drain(worker_config, cluster, **workers)
        [comment] = github.comments(REPO, 21)
        assert "destroyed" in comment.body
    assert kube.objects("Namespace") == []
    kept = {key.decode() for key in redis_client.keys("k8s-ee:*")}
    # Kept for now (the retention is not over): what the API shows, what was reported.
    assert {f"k8s-ee:status:github:{REPO}:21", f"k8s-ee:report:github:{REPO}:21"} <= kept
    assert any(key.startswith("k8s-ee:report-skip-warned:gitlab:") for key in kept)

    time.sleep(ENVIRONMENTS_H * 3600 + 1)
    left = {key.decode(): redis_client.pttl(key) for key in redis_client.keys("*")}
    # arq's record that a worker was alive (a drained worker leaves it, and it expires).
    health = "k8s-ee:queue:health-check"
    assert left.pop(health, 1) > 0
    assert left == {}
