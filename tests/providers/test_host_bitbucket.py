"""Bitbucket Cloud and Data Center reads through atlassian-python-api, against the fakes on loopback."""

from __future__ import annotations

import time
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from atlassian import Bitbucket
from atlassian.bitbucket.cloud import Cloud

from providers.hosts.base import ChangeState, Host, HostUnavailable, NotFound
from providers.hosts.settings import load_host_settings
from providers.settings import SettingsError
from tests.fakes.fakehosts import FakeBitbucketCloud, FakeBitbucketServer, fake_sha
from tests.support.hosts import bitbucket_cloud_host, bitbucket_server_host

USER = "ci-bot@example.com"
TOKEN = "ATATT-reader-0123456789"
CLOUD_REPO = "acme/web-app"
SERVER_REPO = "PROJ/web-app"


@pytest.fixture
def cloud() -> Iterator[FakeBitbucketCloud]:
    with FakeBitbucketCloud() as server:
        server.add_basic(USER, TOKEN)
        server.add_repository(CLOUD_REPO)
        yield server


@pytest.fixture
def server() -> Iterator[FakeBitbucketServer]:
    with FakeBitbucketServer() as fake:
        fake.add_token(TOKEN)
        fake.add_repository(SERVER_REPO)
        yield fake


def cloud_host(fake: FakeBitbucketCloud, **overrides: Any) -> Host:
    return bitbucket_cloud_host(fake, USER, TOKEN, **overrides)


def server_host(fake: FakeBitbucketServer, **overrides: Any) -> Host:
    return bitbucket_server_host(fake, TOKEN, **overrides)


# == Bitbucket Cloud ============================================================================


@pytest.mark.parametrize(
    ("fields", "state", "draft"),
    [
        ({"state": "OPEN"}, "open", False),
        ({"state": "OPEN", "draft": True}, "open", True),
        ({"state": "MERGED"}, "merged", False),
        ({"state": "DECLINED"}, "closed", False),
        ({"state": "SUPERSEDED"}, "closed", False),
    ],
)
def test_cloud_change_reports_state(
    cloud: FakeBitbucketCloud, fields: dict[str, Any], state: str, draft: bool
) -> None:
    updated = datetime(2025, 3, 1, 12, 30, 15, 250000, tzinfo=UTC)
    pull = cloud.add_pull_request(CLOUD_REPO, 7, source_branch="feat/x", updated_on=updated, **fields)

    change = cloud_host(cloud).change(CLOUD_REPO, 7)

    assert change == ChangeState(
        state=state,  # type: ignore[arg-type]
        head_sha=pull.source_commit,
        head_ref="feat/x",
        base_ref="main",
        draft=draft,
        updated_at=updated,
        title="A change",
        url=f"{cloud.origin}/acme/web-app/pull-requests/7",
    )


def test_cloud_expands_the_short_commit_hash(cloud: FakeBitbucketCloud) -> None:
    pull = cloud.add_pull_request(CLOUD_REPO, 7)

    change = cloud_host(cloud).change(CLOUD_REPO, 7)

    assert len(change.head_sha) == 40
    assert change.head_sha == pull.source_commit
    assert [(r.method, r.path, r.auth, r.credential) for r in cloud.requests] == [
        ("GET", "/2.0/repositories/acme/web-app/pullrequests/7", "basic", f"{USER}:{TOKEN}"),
        (
            "GET",
            f"/2.0/repositories/acme/web-app/commit/{pull.source_commit[:12]}",
            "basic",
            f"{USER}:{TOKEN}",
        ),
    ]


def test_cloud_change_that_does_not_exist_is_not_found(cloud: FakeBitbucketCloud) -> None:
    with pytest.raises(NotFound, match=r"pull request acme/web-app#9 not found"):
        cloud_host(cloud).change(CLOUD_REPO, 9)
    with pytest.raises(NotFound, match="Repository acme/gone not found"):
        cloud_host(cloud).change("acme/gone", 1)


def test_cloud_read_file_at_a_commit(cloud: FakeBitbucketCloud) -> None:
    old, new = fake_sha("old"), fake_sha("new")
    cloud.add_file(CLOUD_REPO, "k8s-ee.yaml", "projectId: old\n", ref=old)
    cloud.add_file(CLOUD_REPO, "k8s-ee.yaml", "projectId: new\n", ref=new)
    cloud.add_file(CLOUD_REPO, "deploy dir/k8s-ee.yaml", "projectId: nested\n", ref=new)
    host = cloud_host(cloud)

    assert host.read_file(CLOUD_REPO, "k8s-ee.yaml", old) == "projectId: old\n"
    assert host.read_file(CLOUD_REPO, "k8s-ee.yaml", new) == "projectId: new\n"
    assert host.read_file(CLOUD_REPO, "deploy dir/k8s-ee.yaml", new) == "projectId: nested\n"
    assert host.read_file(CLOUD_REPO, "missing.yaml", new) is None
    assert host.read_file(CLOUD_REPO, "k8s-ee.yaml", fake_sha("unknown")) is None
    assert cloud.calls()[:3] == [
        ("GET", f"/2.0/repositories/acme/web-app/src/{old}/k8s-ee.yaml"),
        ("GET", f"/2.0/repositories/acme/web-app/src/{new}/k8s-ee.yaml"),
        ("GET", f"/2.0/repositories/acme/web-app/src/{new}/deploy%20dir/k8s-ee.yaml"),
    ]


def test_cloud_access_token_is_sent_as_bearer(cloud: FakeBitbucketCloud) -> None:
    cloud.add_bearer("repo-access-token")
    cloud.add_pull_request(CLOUD_REPO, 7)
    host = cloud_host(cloud, bitbucket_cloud_username=None, bitbucket_cloud_token="repo-access-token")
    assert host.change(CLOUD_REPO, 7).state == "open"
    assert {(r.auth, r.credential) for r in cloud.requests} == {("bearer", "repo-access-token")}


def test_cloud_bad_token_is_host_unavailable_without_the_token(cloud: FakeBitbucketCloud) -> None:
    secret = "ATATT-wrong-and-secret"
    with pytest.raises(HostUnavailable) as raised:
        cloud_host(cloud, bitbucket_cloud_token=secret).change(CLOUD_REPO, 7)
    assert "rejected the credentials" in str(raised.value)
    assert "K8S_EE_BITBUCKET_CLOUD_TOKEN" in str(raised.value)
    assert raised.value.status == 401
    assert secret not in "".join(traceback.format_exception(raised.value))
    assert len(cloud.requests) == 1


def test_cloud_5xx_is_retried_then_host_unavailable(cloud: FakeBitbucketCloud) -> None:
    cloud.add_pull_request(CLOUD_REPO, 7)
    cloud.add_fault(502, times=1, path="/pullrequests/")
    assert cloud_host(cloud).change(CLOUD_REPO, 7).state == "open"
    assert len(cloud.requests) == 3  # the retried pull request, then the commit

    cloud.reset_requests()
    cloud.add_fault(500, times=-1)
    with pytest.raises(HostUnavailable) as raised:
        cloud_host(cloud).change(CLOUD_REPO, 7)
    assert raised.value.status == 500
    assert len(cloud.requests) == 3


def test_cloud_long_retry_after_gives_up_at_once(cloud: FakeBitbucketCloud) -> None:
    cloud.add_pull_request(CLOUD_REPO, 7)
    cloud.add_fault(429, times=-1, retry_after=300, message="Rate limit for this resource has been exceeded")
    started = time.monotonic()
    with pytest.raises(HostUnavailable, match="Rate limit") as raised:
        cloud_host(cloud).change(CLOUD_REPO, 7)
    assert time.monotonic() - started < 5
    assert raised.value.retry_after == 300
    assert len(cloud.requests) == 1


def test_cloud_unreachable_is_host_unavailable(cloud: FakeBitbucketCloud) -> None:
    host = cloud_host(cloud, host_retries=0)
    cloud.stop()
    with pytest.raises(HostUnavailable, match="cannot reach Bitbucket Cloud"):
        host.change(CLOUD_REPO, 7)


def test_cloud_fake_pages_with_next_urls(cloud: FakeBitbucketCloud) -> None:
    for number in range(1, 13):
        cloud.add_pull_request(CLOUD_REPO, number)
    client = Cloud(url=cloud.origin, username=USER, password=TOKEN)

    pulls = list(client.repositories.get("acme", "web-app").pullrequests.each())

    assert sorted(pull.id for pull in pulls) == list(range(1, 13))
    listing = [
        r for r in cloud.requests if r.path.endswith("/pullrequests/") or r.path.endswith("/pullrequests")
    ]
    assert [r.query.get("page") for r in listing] == [None, "2"]
    client.close()


# == Bitbucket Data Center ======================================================================


@pytest.mark.parametrize(
    ("fields", "state", "draft"),
    [
        ({"state": "OPEN"}, "open", False),
        ({"state": "OPEN", "draft": True}, "open", True),
        ({"state": "MERGED"}, "merged", False),
        ({"state": "DECLINED"}, "closed", False),
    ],
)
def test_server_change_reports_state(
    server: FakeBitbucketServer, fields: dict[str, Any], state: str, draft: bool
) -> None:
    updated = datetime(2025, 3, 1, 12, 30, 15, tzinfo=UTC)
    pull = server.add_pull_request(SERVER_REPO, 4, from_branch="feat/x", updated=updated, **fields)

    change = server_host(server).change(SERVER_REPO, 4)

    assert change == ChangeState(
        state=state,  # type: ignore[arg-type]
        head_sha=pull.latest_commit,
        head_ref="feat/x",
        base_ref="main",
        draft=draft,
        updated_at=updated,
        title="A change",
        url=f"{server.origin}/projects/PROJ/repos/web-app/pull-requests/4",
    )
    assert [(r.method, r.path, r.auth, r.credential) for r in server.requests] == [
        ("GET", "/rest/api/1.0/projects/PROJ/repos/web-app/pull-requests/4", "bearer", TOKEN)
    ]


def test_server_change_that_does_not_exist_is_not_found(server: FakeBitbucketServer) -> None:
    with pytest.raises(NotFound, match="Pull request 9 does not exist"):
        server_host(server).change(SERVER_REPO, 9)


def test_server_read_file_at_a_ref(server: FakeBitbucketServer) -> None:
    old, new = fake_sha("old"), fake_sha("new")
    server.add_file(SERVER_REPO, "k8s-ee.yaml", "projectId: old\n", ref=old)
    server.add_file(SERVER_REPO, "k8s-ee.yaml", "projectId: new\n", ref=new)
    server.add_file(SERVER_REPO, "ops#1/k8s-ee.yaml", "projectId: odd\n", ref=new)
    host = server_host(server)

    assert host.read_file(SERVER_REPO, "k8s-ee.yaml", old) == "projectId: old\n"
    assert host.read_file(SERVER_REPO, "k8s-ee.yaml", new) == "projectId: new\n"
    assert host.read_file(SERVER_REPO, "ops#1/k8s-ee.yaml", new) == "projectId: odd\n"
    assert host.read_file(SERVER_REPO, "missing.yaml", new) is None
    assert [(r.path, r.query) for r in server.requests[:3]] == [
        ("/rest/api/1.0/projects/PROJ/repos/web-app/raw/k8s-ee.yaml", {"at": old}),
        ("/rest/api/1.0/projects/PROJ/repos/web-app/raw/k8s-ee.yaml", {"at": new}),
        ("/rest/api/1.0/projects/PROJ/repos/web-app/raw/ops%231/k8s-ee.yaml", {"at": new}),
    ]


def test_server_bad_token_is_host_unavailable_without_the_token(server: FakeBitbucketServer) -> None:
    secret = "BBDC-wrong-and-secret"
    with pytest.raises(HostUnavailable, match="Authentication failed") as raised:
        server_host(server, bitbucket_server_token=secret).change(SERVER_REPO, 4)
    assert "K8S_EE_BITBUCKET_SERVER_TOKEN" in str(raised.value)
    assert raised.value.status == 401
    assert secret not in "".join(traceback.format_exception(raised.value))
    assert len(server.requests) == 1


def test_server_5xx_is_host_unavailable_after_bounded_retries(server: FakeBitbucketServer) -> None:
    server.add_pull_request(SERVER_REPO, 4)
    server.add_fault(503, times=-1)
    with pytest.raises(HostUnavailable) as raised:
        server_host(server, host_retries=1).change(SERVER_REPO, 4)
    assert raised.value.status == 503
    assert len(server.requests) == 2


def test_server_needs_a_url_for_its_token() -> None:
    with pytest.raises(SettingsError, match="K8S_EE_BITBUCKET_SERVER_URL"):
        load_host_settings(bitbucket_server_token=TOKEN)


def test_server_fake_pages_with_next_page_start(server: FakeBitbucketServer) -> None:
    for number in range(1, 6):
        server.add_pull_request(SERVER_REPO, number, state="OPEN" if number % 2 else "MERGED")
    client = Bitbucket(url=server.origin, token=TOKEN)

    pulls = list(client.get_pull_requests("PROJ", "web-app", state="ALL", limit=2))

    assert [pull["id"] for pull in pulls] == [5, 4, 3, 2, 1]
    assert [r.query.get("start") for r in server.requests] == [None, "2", "4"]
    client.close()


def test_cloud_first_commit_at_follows_next_links(cloud: FakeBitbucketCloud) -> None:
    start = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)
    commits = [(fake_sha(f"c{i}"), start + timedelta(minutes=i)) for i in range(130)]
    cloud.add_pull_request(CLOUD_REPO, 5, commits=commits)
    host = cloud_host(cloud)
    assert host.first_commit_at(CLOUD_REPO, 5) == start
    with pytest.raises(NotFound):
        host.first_commit_at(CLOUD_REPO, 6)


def test_server_first_commit_at_reads_every_page(server: FakeBitbucketServer) -> None:
    start = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)
    commits = [(fake_sha(f"c{i}"), start + timedelta(minutes=i)) for i in range(230)]
    server.add_pull_request(SERVER_REPO, 5, commits=commits)
    host = server_host(server)
    assert host.first_commit_at(SERVER_REPO, 5) == start
    with pytest.raises(NotFound):
        host.first_commit_at(SERVER_REPO, 6)
