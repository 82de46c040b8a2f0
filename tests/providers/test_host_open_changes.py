"""Listing a repository's open changes (the resync's one read), on all four hosts through their SDKs.

One list call per page and none per change; every field the resync compares (head, branch, draft,
fork); a repository the credentials cannot see is `NotFound`; a host that cannot answer is
`HostUnavailable`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from providers.hosts.base import Host, HostUnavailable, NotFound
from tests.fakes.fakehosts import FakeBitbucketCloud, FakeBitbucketServer, FakeGitHub, FakeGitLab, FakeHost
from tests.support.hosts import bitbucket_cloud_host, bitbucket_server_host, github_host, gitlab_host

TOKEN = "reader-token-0123456789"
USER = "ci-bot@example.com"


@dataclass
class Setup:
    fake: FakeHost
    host: Host
    repository: str
    # Add a change: number, head, open?, draft?, fork?
    add: Callable[..., None]
    list_path: str
    page_size: int


def sha(n: int) -> str:
    return f"{n:040x}"


@contextmanager
def github() -> Iterator[Setup]:
    with FakeGitHub() as fake:
        fake.add_token(TOKEN)
        fake.add_repo("acme/web")

        def add(
            number: int, head: str, *, open: bool = True, draft: bool = False, fork: bool = False
        ) -> None:
            fake.add_pull(
                "acme/web",
                number,
                head_sha=head,
                head_ref=f"feature-{number}",
                state="open" if open else "closed",
                draft=draft,
                head_repo="octocat/web" if fork else "",
            )

        yield Setup(fake, github_host(fake, TOKEN), "acme/web", add, "/repos/acme/web/pulls", 100)


@contextmanager
def gitlab() -> Iterator[Setup]:
    with FakeGitLab() as fake:
        fake.add_token(TOKEN)
        fake.add_project("acme/platform/web")

        def add(
            number: int, head: str, *, open: bool = True, draft: bool = False, fork: bool = False
        ) -> None:
            fake.add_merge_request(
                "acme/platform/web",
                number,
                sha=head,
                source_branch=f"feature-{number}",
                state="opened" if open else "merged",
                draft=draft,
                source_project_id=4242 if fork else None,
            )

        path = "/api/v4/projects/acme%2Fplatform%2Fweb/merge_requests"
        yield Setup(fake, gitlab_host(fake, TOKEN), "acme/platform/web", add, path, 100)


@contextmanager
def bitbucket_cloud() -> Iterator[Setup]:
    with FakeBitbucketCloud() as fake:
        fake.add_basic(USER, TOKEN)
        fake.add_repository("acme/web")

        def add(
            number: int, head: str, *, open: bool = True, draft: bool = False, fork: bool = False
        ) -> None:
            fake.add_pull_request(
                "acme/web",
                number,
                source_commit=head,
                source_branch=f"feature-{number}",
                state="OPEN" if open else "DECLINED",
                draft=draft,
                source_repository="someone/web" if fork else "",
            )

        host = bitbucket_cloud_host(fake, USER, TOKEN)
        yield Setup(fake, host, "acme/web", add, "/2.0/repositories/acme/web/pullrequests", 50)


@contextmanager
def bitbucket_server() -> Iterator[Setup]:
    with FakeBitbucketServer() as fake:
        fake.add_token(TOKEN)
        fake.add_repository("PROJ/web")

        def add(
            number: int, head: str, *, open: bool = True, draft: bool = False, fork: bool = False
        ) -> None:
            fake.add_pull_request(
                "PROJ/web",
                number,
                latest_commit=head,
                from_branch=f"feature-{number}",
                state="OPEN" if open else "MERGED",
                draft=draft,
                from_repository="~SOMEONE/web" if fork else "",
            )

        host = bitbucket_server_host(fake, TOKEN)
        path = "/rest/api/1.0/projects/PROJ/repos/web/pull-requests"
        yield Setup(fake, host, "PROJ/web", add, path, 100)


HOSTS = {
    "github": github,
    "gitlab": gitlab,
    "bitbucket-cloud": bitbucket_cloud,
    "bitbucket-server": bitbucket_server,
}


@pytest.fixture(params=list(HOSTS))
def setup(request: pytest.FixtureRequest) -> Iterator[Setup]:
    with HOSTS[request.param]() as made:
        yield made
        made.host.close()


def test_every_open_change_with_the_fields_the_resync_compares(setup: Setup) -> None:
    setup.add(1, sha(1))
    setup.add(2, sha(2), draft=True)
    setup.add(3, sha(3), fork=True)
    setup.add(4, sha(4), open=False)

    found = {change.number: change for change in setup.host.open_changes(setup.repository)}

    assert set(found) == {1, 2, 3}
    assert all(change.state == "open" for change in found.values())
    # Bitbucket Cloud lists the hash abbreviated: a prefix of the full one.
    assert sha(1).startswith(found[1].head_sha) and len(found[1].head_sha) >= 12
    assert found[1].head_ref == "feature-1" and found[1].base_ref == "main"
    assert (found[1].draft, found[2].draft) == (False, True)
    assert (found[1].fork, found[3].fork) == (False, True)


def test_one_call_per_page_and_none_per_change(setup: Setup) -> None:
    count = setup.page_size * 2 + 5
    for number in range(1, count + 1):
        setup.add(number, sha(number))
    setup.fake.reset_requests()

    found = setup.host.open_changes(setup.repository)

    assert sorted(change.number for change in found) == list(range(1, count + 1))
    calls = setup.fake.calls()
    lists = [call for call in calls if call[1] == setup.list_path]
    assert len(lists) == 3, calls
    # Nothing but the pages (GitHub's token client reads nothing else first).
    assert len(calls) == len(lists), calls


def test_a_repository_it_cannot_see_is_not_found(setup: Setup) -> None:
    hidden = {"github": "acme/gone", "gitlab": "acme/gone", "bitbucket-cloud": "acme/gone"}
    repository = hidden.get(setup.fake.name, "PROJ/gone")
    with pytest.raises(NotFound):
        setup.host.open_changes(repository)


def test_a_host_that_cannot_answer_is_unavailable(setup: Setup) -> None:
    setup.add(1, sha(1))
    setup.fake.add_fault(503, times=-1)
    with pytest.raises(HostUnavailable):
        setup.host.open_changes(setup.repository)
