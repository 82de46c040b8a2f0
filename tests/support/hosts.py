"""Building the code-host clients (providers/hosts) against the fakes, and what the host tests
write and measure with them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from providers.events import Provider
from providers.hosts.base import Host
from providers.hosts.build import build_hosts
from providers.hosts.reporting import MARKER, StatusReport
from providers.hosts.settings import load_host_settings
from tests.fakes.fakehosts import FakeBitbucketCloud, FakeBitbucketServer, FakeGitHub, FakeGitLab, FakeHost
from tests.fakes.fakehosts.github import GitHubPull


def only_host(provider: Provider, settings: dict[str, Any]) -> Host:
    """The one host that `settings` configure; retries do not back off unless the settings say so."""
    hosts = build_hosts(load_host_settings(**{"host_retry_backoff": 0, **settings}))
    assert set(hosts) == {provider}
    return hosts[provider]


def github_host(fake: FakeGitHub, token: str, **overrides: Any) -> Host:
    """GitHub through the fake, unpaced."""
    settings = {
        "github_api_url": fake.url,
        "github_token": token,
        "github_seconds_between_requests": 0,
        "github_seconds_between_writes": 0,
    }
    return only_host(Provider.GITHUB, settings | overrides)


def open_pull(
    fake: FakeGitHub,
    repository: str,
    number: int,
    heads: Sequence[str],
    config: str = "projectId: shop\n",
    token: str = "ghp-test",
) -> GitHubPull:
    """`repository` on the fake GitHub, readable with `token`, with `config` as its k8s-ee.yaml at
    each of `heads`, and pull request `number` open on branch `feature` at the first of them."""
    fake.add_token(token)
    fake.add_repo(repository)
    for head in heads:
        fake.add_file(repository, "k8s-ee.yaml", config, ref=head)
    return fake.add_pull(repository, number, head_sha=heads[0], head_ref="feature")


def gitlab_host(fake: FakeGitLab, token: str, **overrides: Any) -> Host:
    return only_host(Provider.GITLAB, {"gitlab_url": fake.origin, "gitlab_api_token": token} | overrides)


def bitbucket_cloud_host(fake: FakeBitbucketCloud, user: str, token: str, **overrides: Any) -> Host:
    settings = {
        "bitbucket_cloud_url": fake.origin,
        "bitbucket_cloud_username": user,
        "bitbucket_cloud_token": token,
    }
    return only_host(Provider.BITBUCKET_CLOUD, settings | overrides)


def bitbucket_server_host(fake: FakeBitbucketServer, token: str, **overrides: Any) -> Host:
    settings = {"bitbucket_server_url": fake.origin, "bitbucket_server_token": token}
    return only_host(Provider.BITBUCKET_SERVER, settings | overrides)


def body(text: str) -> str:
    """A comment body as the worker writes it: the marker, then the text."""
    return f"{MARKER}\n### Preview environment\n{text}\n"


def report(state: str, sha: str, **fields: Any) -> StatusReport:
    return StatusReport.model_validate({"state": state, "head_sha": sha, "environment": "pr-5", **fields})


def gap_before(fake: FakeHost, index: int) -> float:
    """Seconds between request `index - 1` and request `index`, as the fake saw them."""
    requests = fake.requests
    return requests[index].at - requests[index - 1].at
