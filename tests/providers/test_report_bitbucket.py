"""Reporting back on Bitbucket Cloud and Data Center pull requests through atlassian-python-api,
against the fakes on loopback: the marker comment, build statuses, rate limits and failed writes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from providers.hosts.base import Budget, Host, HostUnavailable
from providers.hosts.bitbucket_cloud import BitbucketCloudHost
from providers.hosts.bitbucket_server import BitbucketServerHost
from providers.hosts.http import HttpPolicy
from providers.hosts.reporting import BUILD_KEY, BUILD_NAME, MARKER
from tests.fakes.fakehosts import FakeBitbucketCloud, FakeBitbucketServer
from tests.support.hosts import bitbucket_cloud_host, bitbucket_server_host, body, gap_before, report
from tests.support.worker import wait_for

USER = "ci-bot@example.com"
TOKEN = "ATATT-writer-0123456789"
CLOUD_REPO = "acme/web-app"
SERVER_REPO = "PROJ/web-app"
CLOUD_COMMENTS = "/2.0/repositories/acme/web-app/pullrequests/5/comments"
SERVER_PULL = "/rest/api/1.0/projects/PROJ/repos/web-app/pull-requests/5"
PREVIEW = "https://web-app-pr-5.preview.example.com"
STATES = ["queued", "deploying", "deployed", "failed", "destroyed", "hibernated", "preserved", "skipped"]


@pytest.fixture
def cloud() -> Iterator[FakeBitbucketCloud]:
    with FakeBitbucketCloud() as fake:
        fake.add_basic(USER, TOKEN)
        fake.add_repository(CLOUD_REPO)
        fake.add_pull_request(CLOUD_REPO, 5, source_branch="feature/login")
        yield fake


@pytest.fixture
def server() -> Iterator[FakeBitbucketServer]:
    with FakeBitbucketServer() as fake:
        fake.add_token(TOKEN)
        fake.add_repository(SERVER_REPO)
        fake.add_pull_request(SERVER_REPO, 5, from_branch="feature/login")
        yield fake


def cloud_host(fake: FakeBitbucketCloud, **overrides: Any) -> Host:
    return bitbucket_cloud_host(fake, USER, TOKEN, **overrides)


def server_host(fake: FakeBitbucketServer, **overrides: Any) -> Host:
    return bitbucket_server_host(fake, TOKEN, **overrides)


# == Bitbucket Cloud ============================================================================


def test_cloud_without_a_search_the_comment_is_created_in_one_call(cloud: FakeBitbucketCloud) -> None:
    comment_id = cloud_host(cloud).upsert_comment(CLOUD_REPO, 5, body("new"), MARKER, search=False)

    assert cloud.calls() == [("POST", CLOUD_COMMENTS)]
    assert [str(c.id) for c in cloud.comments(CLOUD_REPO, 5)] == [comment_id]


def test_cloud_comment_is_edited_not_duplicated_across_three_upserts(cloud: FakeBitbucketCloud) -> None:
    cloud.add_comment(CLOUD_REPO, 5, "Nice work")
    host = cloud_host(cloud)

    ids = [host.upsert_comment(CLOUD_REPO, 5, body(f"state {n}"), MARKER) for n in range(3)]

    assert len(set(ids)) == 1
    assert [c.raw for c in cloud.comments(CLOUD_REPO, 5)] == ["Nice work", body("state 2")]
    assert cloud.calls() == [
        ("GET", CLOUD_COMMENTS),
        ("POST", CLOUD_COMMENTS),
        ("GET", CLOUD_COMMENTS),
        ("PUT", f"{CLOUD_COMMENTS}/{ids[0]}"),
        ("GET", CLOUD_COMMENTS),
        ("PUT", f"{CLOUD_COMMENTS}/{ids[0]}"),
    ]
    assert cloud.requests[1].json() == {"content": {"raw": body("state 0")}}
    assert cloud.requests[0].query == {"pagelen": "100"}
    assert all(r.auth == "basic" and r.credential == f"{USER}:{TOKEN}" for r in cloud.requests)


def test_cloud_marker_is_found_on_page_three(cloud: FakeBitbucketCloud) -> None:
    for n in range(3):
        cloud.add_comment(CLOUD_REPO, 5, f"comment {n}")
    cloud.add_comment(CLOUD_REPO, 5, body("a reply quoting it"), parent=1)
    marked = cloud.add_comment(CLOUD_REPO, 5, body("old"))
    cloud.add_comment(CLOUD_REPO, 5, "a later comment")
    host = BitbucketCloudHost(
        cloud.origin, SecretStr(TOKEN), HttpPolicy(backoff=0), username=USER, per_page=2
    )

    assert host.upsert_comment(CLOUD_REPO, 5, body("new"), MARKER) == str(marked.id)

    assert [(r.method, r.path, r.query.get("page")) for r in cloud.requests] == [
        ("GET", CLOUD_COMMENTS, None),
        ("GET", CLOUD_COMMENTS, "2"),
        ("GET", CLOUD_COMMENTS, "3"),
        ("PUT", f"{CLOUD_COMMENTS}/{marked.id}", None),
    ]
    assert [c.raw for c in cloud.comments(CLOUD_REPO, 5)][3:] == [
        body("a reply quoting it"),
        body("new"),
        "a later comment",
    ]


def test_cloud_known_id_fast_path_makes_exactly_one_put(cloud: FakeBitbucketCloud) -> None:
    host = cloud_host(cloud)
    known = host.upsert_comment(CLOUD_REPO, 5, body("first"), MARKER)
    cloud.reset_requests()

    assert host.upsert_comment(CLOUD_REPO, 5, body("second"), MARKER, known_id=known) == known
    assert cloud.calls() == [("PUT", f"{CLOUD_COMMENTS}/{known}")]


def test_cloud_deleted_known_comment_falls_back_to_the_search(cloud: FakeBitbucketCloud) -> None:
    host = cloud_host(cloud)
    known = host.upsert_comment(CLOUD_REPO, 5, body("first"), MARKER)
    cloud.repositories[CLOUD_REPO].comments[int(known)].deleted = True  # Bitbucket keeps it, deleted
    cloud.reset_requests()

    again = host.upsert_comment(CLOUD_REPO, 5, body("second"), MARKER, known_id=known)

    assert again != known
    assert cloud.calls() == [
        ("PUT", f"{CLOUD_COMMENTS}/{known}"),
        ("GET", CLOUD_COMMENTS),
        ("POST", CLOUD_COMMENTS),
    ]
    live = [c.raw for c in cloud.comments(CLOUD_REPO, 5) if not c.deleted]
    assert live == [body("second")]


def test_cloud_429_on_a_write_delays_the_next_call(cloud: FakeBitbucketCloud) -> None:
    cloud.add_fault(429, retry_after=1, method="POST", path="/comments$")

    cloud_host(cloud).upsert_comment(CLOUD_REPO, 5, body("x"), MARKER)

    assert cloud.calls() == [
        ("GET", CLOUD_COMMENTS),
        ("POST", CLOUD_COMMENTS),
        ("GET", CLOUD_COMMENTS),
        ("POST", CLOUD_COMMENTS),
    ]
    assert gap_before(cloud, 2) >= 0.95
    assert len(cloud.comments(CLOUD_REPO, 5)) == 1


def test_cloud_long_retry_after_surfaces_and_holds_back_later_calls(cloud: FakeBitbucketCloud) -> None:
    cloud.add_fault(429, times=-1, retry_after=300, method="POST")
    host = cloud_host(cloud)

    with pytest.raises(HostUnavailable) as raised:
        host.upsert_comment(CLOUD_REPO, 5, body("x"), MARKER)
    assert (raised.value.status, raised.value.retry_after) == (429, 300)
    cloud.reset_requests()

    with pytest.raises(HostUnavailable, match="pause"):
        host.change(CLOUD_REPO, 5)
    assert cloud.requests == []


def test_cloud_5xx_on_a_get_is_retried(cloud: FakeBitbucketCloud) -> None:
    cloud.add_fault(500, times=2, method="GET", path="/comments$")

    cloud_host(cloud).upsert_comment(CLOUD_REPO, 5, body("x"), MARKER)

    assert cloud.calls() == [("GET", CLOUD_COMMENTS)] * 3 + [("POST", CLOUD_COMMENTS)]


def test_cloud_timeout_on_create_is_not_retried(cloud: FakeBitbucketCloud) -> None:
    cloud.add_fault(None, method="POST", path="/comments$", delay=2)
    host = cloud_host(cloud, host_timeout=0.5, host_retries=2)

    with pytest.raises(HostUnavailable, match="not repeated now") as raised:
        host.upsert_comment(CLOUD_REPO, 5, body("x"), MARKER)

    assert raised.value.retry_after == 30
    assert cloud.writes() == [("POST", CLOUD_COMMENTS)]
    wait_for(lambda: cloud.comments(CLOUD_REPO, 5))
    host.upsert_comment(CLOUD_REPO, 5, body("y"), MARKER)
    assert [c.raw for c in cloud.comments(CLOUD_REPO, 5)] == [body("y")]


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("queued", "INPROGRESS"),
        ("deploying", "INPROGRESS"),
        ("deployed", "SUCCESSFUL"),
        ("preserved", "SUCCESSFUL"),
        ("hibernated", "SUCCESSFUL"),
        ("failed", "FAILED"),
        ("destroyed", "STOPPED"),
        ("skipped", "STOPPED"),
    ],
)
def test_cloud_build_status_per_state(cloud: FakeBitbucketCloud, state: str, expected: str) -> None:
    sha = cloud.repositories[CLOUD_REPO].pull_requests[5].source_commit
    logs = "https://ci.example.com/log/7"

    cloud_host(cloud).report_status(
        CLOUD_REPO, 5, report(state, sha[:12], ref="feature/login", preview_url=PREVIEW, target_url=logs)
    )

    [status] = cloud.build_statuses(CLOUD_REPO)
    assert (status.commit, status.key, status.state, status.name) == (sha, BUILD_KEY, expected, BUILD_NAME)
    assert status.url == (PREVIEW if state in ("deployed", "preserved") else logs)
    assert status.refname == "feature/login"
    assert cloud.calls() == [("POST", f"/2.0/repositories/acme/web-app/commit/{sha[:12]}/statuses/build")]


def test_cloud_build_status_follows_the_states_of_one_commit(cloud: FakeBitbucketCloud) -> None:
    sha = cloud.repositories[CLOUD_REPO].pull_requests[5].source_commit
    host = cloud_host(cloud)
    for state in ("deploying", "deployed", "destroyed"):
        host.report_status(CLOUD_REPO, 5, report(state, sha, preview_url=PREVIEW))

    [status] = cloud.build_statuses(CLOUD_REPO)
    assert status.history == ["INPROGRESS", "SUCCESSFUL", "STOPPED"]
    # Without a branch or a link, both come from the pull request.
    assert status.refname == "feature/login"
    assert status.url == f"{cloud.origin}/acme/web-app/pull-requests/5"
    assert cloud.calls()[:2] == [
        ("GET", "/2.0/repositories/acme/web-app/pullrequests/5"),
        ("POST", f"/2.0/repositories/acme/web-app/commit/{sha}/statuses/build"),
    ]


def test_cloud_rate_limits_follow_the_remaining_header_when_present(cloud: FakeBitbucketCloud) -> None:
    cloud.add_bearer("access-token-1")
    cloud.rate_limit, cloud.rate_remaining = 1000, 990
    host = cloud_host(cloud, bitbucket_cloud_username=None, bitbucket_cloud_token="access-token-1")

    host.upsert_comment(CLOUD_REPO, 5, body("x"), MARKER)
    assert host.rate_limits() == {}  # Bitbucket Cloud sends no remaining count
    assert cloud.requests[0].auth == "bearer"

    cloud.add_fault(None, method="PUT", headers={"X-RateLimit-Remaining": "42"})
    host.upsert_comment(CLOUD_REPO, 5, body("y"), MARKER)
    assert host.rate_limits() == {"bitbucket-cloud:token": Budget(42.0, 1000.0)}


# == Bitbucket Data Center ======================================================================


def test_server_without_a_search_the_comment_is_created_in_one_call(server: FakeBitbucketServer) -> None:
    comment_id = server_host(server).upsert_comment(SERVER_REPO, 5, body("new"), MARKER, search=False)

    assert server.calls() == [("POST", f"{SERVER_PULL}/comments")]
    assert [str(c.id) for c in server.comments(SERVER_REPO, 5)] == [comment_id]


def test_server_a_known_id_that_is_not_ours_is_never_edited(server: FakeBitbucketServer) -> None:
    # An id whose comment lacks the marker (someone else's) is left alone, with or without a search.
    other = server.add_comment(SERVER_REPO, 5, "Nice work")
    host = server_host(server)

    created = host.upsert_comment(SERVER_REPO, 5, body("new"), MARKER, known_id=str(other.id), search=False)

    assert created != str(other.id)
    assert [c.text for c in server.comments(SERVER_REPO, 5)] == ["Nice work", body("new")]


def test_server_comment_is_edited_not_duplicated_across_three_upserts(server: FakeBitbucketServer) -> None:
    server.add_comment(SERVER_REPO, 5, "Nice work")
    host = server_host(server)

    ids = [host.upsert_comment(SERVER_REPO, 5, body(f"state {n}"), MARKER) for n in range(3)]

    assert len(set(ids)) == 1
    comments = server.comments(SERVER_REPO, 5)
    assert [(c.text, c.version) for c in comments] == [("Nice work", 0), (body("state 2"), 2)]
    assert server.calls() == [
        ("GET", f"{SERVER_PULL}/activities"),
        ("POST", f"{SERVER_PULL}/comments"),
        ("GET", f"{SERVER_PULL}/activities"),
        ("PUT", f"{SERVER_PULL}/comments/{ids[0]}"),
        ("GET", f"{SERVER_PULL}/activities"),
        ("PUT", f"{SERVER_PULL}/comments/{ids[0]}"),
    ]
    assert server.requests[3].json() == {"version": 0, "text": body("state 1")}
    assert server.requests[5].json() == {"version": 1, "text": body("state 2")}


def test_server_marker_on_page_three_is_found_reading_every_page(server: FakeBitbucketServer) -> None:
    marked = server.add_comment(SERVER_REPO, 5, body("old"), author="k8s-ee-bot")
    server.add_comment(SERVER_REPO, 5, body("inline"), anchor={"path": "app.py", "line": 3})
    for _ in range(4):
        server.add_activity(SERVER_REPO, 5)
    host = BitbucketServerHost(server.origin, SecretStr(TOKEN), HttpPolicy(backoff=0), per_page=2)

    assert host.upsert_comment(SERVER_REPO, 5, body("new"), MARKER) == str(marked.id)

    assert [(r.method, r.path, r.query.get("start")) for r in server.requests] == [
        ("GET", f"{SERVER_PULL}/activities", None),
        ("GET", f"{SERVER_PULL}/activities", "2"),
        ("GET", f"{SERVER_PULL}/activities", "4"),
        ("GET", f"{SERVER_PULL}/activities", "6"),
        ("PUT", f"{SERVER_PULL}/comments/{marked.id}", None),
    ]
    assert [c.text for c in server.comments(SERVER_REPO, 5)] == [body("new"), body("inline")]


def test_server_known_id_reads_the_version_and_makes_one_put(server: FakeBitbucketServer) -> None:
    host = server_host(server)
    known = host.upsert_comment(SERVER_REPO, 5, body("first"), MARKER)
    server.reset_requests()

    assert host.upsert_comment(SERVER_REPO, 5, body("second"), MARKER, known_id=known) == known

    assert server.calls() == [
        ("GET", f"{SERVER_PULL}/comments/{known}"),
        ("PUT", f"{SERVER_PULL}/comments/{known}"),
    ]
    assert server.requests[1].json() == {"version": 0, "text": body("second")}


def test_server_deleted_known_comment_falls_back_to_the_search(server: FakeBitbucketServer) -> None:
    gone = server.add_comment(SERVER_REPO, 5, body("deleted"), author="k8s-ee-bot")
    repository = server.repositories["PROJ", "web-app"]
    repository.comments.pop(gone.id)
    repository.activities = [a for a in repository.activities if a.comment_id != gone.id]
    other = server.add_comment(SERVER_REPO, 5, body("still here"), author="k8s-ee-bot")

    found = server_host(server).upsert_comment(SERVER_REPO, 5, body("new"), MARKER, known_id=str(gone.id))

    assert found == str(other.id)
    assert server.calls() == [
        ("GET", f"{SERVER_PULL}/comments/{gone.id}"),
        ("GET", f"{SERVER_PULL}/activities"),
        ("PUT", f"{SERVER_PULL}/comments/{other.id}"),
    ]


def test_server_edit_conflict_reads_the_version_again(server: FakeBitbucketServer) -> None:
    marked = server.add_comment(SERVER_REPO, 5, body("old"), author="k8s-ee-bot")
    server.add_fault(
        409, method="PUT", message="You are attempting to modify a comment based on out-of-date information."
    )

    server_host(server).upsert_comment(SERVER_REPO, 5, body("new"), MARKER, known_id=str(marked.id))

    assert server.calls() == [
        ("GET", f"{SERVER_PULL}/comments/{marked.id}"),
        ("PUT", f"{SERVER_PULL}/comments/{marked.id}"),
        ("GET", f"{SERVER_PULL}/comments/{marked.id}"),
        ("PUT", f"{SERVER_PULL}/comments/{marked.id}"),
    ]
    assert server.comments(SERVER_REPO, 5)[0].text == body("new")


def test_server_429_on_a_write_delays_the_next_call(server: FakeBitbucketServer) -> None:
    sha = server.repositories["PROJ", "web-app"].pull_requests[5].latest_commit
    builds = f"/rest/api/1.0/projects/PROJ/repos/web-app/commits/{sha}/builds"
    server.add_fault(429, retry_after=1, method="POST", path="/builds$")

    server_host(server).report_status(SERVER_REPO, 5, report("deploying", sha))

    assert server.calls() == [("POST", builds), ("POST", builds)]
    assert gap_before(server, 1) >= 0.95
    assert [s.history for s in server.build_statuses(SERVER_REPO)] == [["INPROGRESS"]]


def test_server_timeout_on_create_is_not_retried(server: FakeBitbucketServer) -> None:
    server.add_fault(None, method="POST", path="/comments$", delay=2)
    host = server_host(server, host_timeout=0.5, host_retries=2)

    with pytest.raises(HostUnavailable, match="not repeated now") as raised:
        host.upsert_comment(SERVER_REPO, 5, body("x"), MARKER)

    assert raised.value.retry_after == 30
    assert server.writes() == [("POST", f"{SERVER_PULL}/comments")]
    wait_for(lambda: server.comments(SERVER_REPO, 5))
    host.upsert_comment(SERVER_REPO, 5, body("y"), MARKER)
    assert [c.text for c in server.comments(SERVER_REPO, 5)] == [body("y")]


def test_server_5xx_on_a_get_is_retried(server: FakeBitbucketServer) -> None:
    server.add_fault(502, times=1, method="GET", path="/activities$")

    server_host(server).upsert_comment(SERVER_REPO, 5, body("x"), MARKER)

    assert server.calls() == [("GET", f"{SERVER_PULL}/activities")] * 2 + [
        ("POST", f"{SERVER_PULL}/comments")
    ]


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("queued", "INPROGRESS"),
        ("deploying", "INPROGRESS"),
        ("deployed", "SUCCESSFUL"),
        ("preserved", "SUCCESSFUL"),
        ("hibernated", "SUCCESSFUL"),
        ("failed", "FAILED"),
        ("destroyed", "CANCELLED"),
        ("skipped", "CANCELLED"),
    ],
)
def test_server_build_status_per_state(server: FakeBitbucketServer, state: str, expected: str) -> None:
    sha = server.repositories["PROJ", "web-app"].pull_requests[5].latest_commit

    server_host(server).report_status(
        SERVER_REPO,
        5,
        report(state, sha, ref="feature/login", preview_url=PREVIEW, description="Custom words"),
    )

    [status] = server.build_statuses(SERVER_REPO)
    assert (status.key, status.state, status.name, status.description) == (
        BUILD_KEY,
        expected,
        BUILD_NAME,
        "Custom words",
    )
    assert status.ref == "refs/heads/feature/login"
    # With nothing better to link to, the pull request itself.
    pull_request = f"{server.origin}/projects/PROJ/repos/web-app/pull-requests/5"
    assert status.url == (PREVIEW if state in ("deployed", "preserved") else pull_request)
    assert server.calls() == [("POST", f"/rest/api/1.0/projects/PROJ/repos/web-app/commits/{sha}/builds")]


def test_server_rate_limits_follow_the_remaining_header(server: FakeBitbucketServer) -> None:
    host = server_host(server)
    host.change(SERVER_REPO, 5)
    assert host.rate_limits() == {}

    server.add_fault(None, headers={"X-RateLimit-Remaining": "57"})
    host.upsert_comment(SERVER_REPO, 5, body("x"), MARKER)
    assert host.rate_limits() == {"bitbucket-server:token": Budget(57.0, None)}
