"""Reporting back on GitHub pull requests through PyGithub, against the fake GitHub API on loopback:
the marker comment, deployments with statuses, commit statuses, rate limits and failed writes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from providers.hosts.base import Budget, Host, HostUnavailable
from providers.hosts.github import GitHubHost
from providers.hosts.http import HttpPolicy
from providers.hosts.reporting import MARKER, STATUS_CONTEXT, ReportMemo
from tests.fakes.fakehosts import FakeGitHub, fake_sha
from tests.fakes.fakehosts.github import app_key_pair
from tests.support.hosts import body, gap_before, github_host, report

TOKEN = "ghp_writer0123456789"
REPO = "octo/app"
COMMENTS = "/repos/octo/app/issues/5/comments"
PREVIEW = "https://app-pr-5.preview.example.com"


@pytest.fixture
def fake() -> Iterator[FakeGitHub]:
    with FakeGitHub() as server:
        server.add_token(TOKEN)
        server.add_repo(REPO)
        server.add_pull(REPO, 5)
        yield server


def host_for(fake: FakeGitHub, **overrides: Any) -> Host:
    return github_host(fake, TOKEN, **overrides)


def small_pages(fake: FakeGitHub, per_page: int = 2) -> GitHubHost:
    return GitHubHost(
        fake.url,
        HttpPolicy(backoff=0),
        token=SecretStr(TOKEN),
        seconds_between_requests=None,
        seconds_between_writes=None,
        per_page=per_page,
    )


def head(fake: FakeGitHub) -> str:
    return fake.repos[REPO].pulls[5].head_sha


# -- the comment -------------------------------------------------------------------------------


def test_without_a_search_the_comment_is_created_in_one_call(fake: FakeGitHub) -> None:
    # The caller knows the pull request has no comments: nothing is listed first.
    comment_id = host_for(fake).upsert_comment(REPO, 5, body("new"), MARKER, search=False)

    assert fake.calls() == [("POST", COMMENTS)]
    assert [(str(c.id), c.body) for c in fake.comments(REPO, 5)] == [(comment_id, body("new"))]


def test_the_comment_is_edited_not_duplicated_across_three_upserts(fake: FakeGitHub) -> None:
    fake.add_comment(REPO, 5, "LGTM", user="reviewer")
    host = host_for(fake)

    ids = [host.upsert_comment(REPO, 5, body(f"state {n}"), MARKER) for n in range(3)]

    assert len(set(ids)) == 1
    comments = fake.comments(REPO, 5)
    assert [c.body for c in comments] == ["LGTM", body("state 2")]
    assert comments[1].user == "k8s-ee-bot"
    assert str(comments[1].id) == ids[0]
    assert fake.calls() == [
        ("GET", COMMENTS),
        ("POST", COMMENTS),
        ("GET", COMMENTS),
        ("PATCH", f"/repos/octo/app/issues/comments/{ids[0]}"),
        ("GET", COMMENTS),
        ("PATCH", f"/repos/octo/app/issues/comments/{ids[0]}"),
    ]
    assert fake.requests[1].json() == {"body": body("state 0")}
    assert all(r.auth == "token" and r.credential == TOKEN for r in fake.requests)


def test_the_marker_is_found_on_page_three(fake: FakeGitHub) -> None:
    for n in range(4):
        fake.add_comment(REPO, 5, f"comment {n}")
    marked = fake.add_comment(REPO, 5, body("old"), user="k8s-ee-bot")
    fake.add_comment(REPO, 5, "a later comment")

    found = small_pages(fake).upsert_comment(REPO, 5, body("new"), MARKER)

    assert found == str(marked.id)
    assert [(r.method, r.path, r.query.get("page")) for r in fake.requests] == [
        ("GET", COMMENTS, None),
        ("GET", COMMENTS, "2"),
        ("GET", COMMENTS, "3"),
        ("PATCH", f"/repos/octo/app/issues/comments/{marked.id}", None),
    ]
    assert all(r.query["per_page"] == "2" for r in fake.requests[:3])
    assert [c.body for c in fake.comments(REPO, 5)][4:] == [body("new"), "a later comment"]


def test_every_page_of_many_comments_is_searched(fake: FakeGitHub) -> None:
    for n in range(230):
        fake.add_comment(REPO, 5, f"chatter {n}")
    marked = fake.add_comment(REPO, 5, body("old"), user="k8s-ee-bot")

    assert host_for(fake).upsert_comment(REPO, 5, body("new"), MARKER) == str(marked.id)
    assert [r.query.get("page") for r in fake.requests if r.method == "GET"] == [None, "2", "3"]
    assert len(fake.comments(REPO, 5)) == 231


def test_the_known_id_fast_path_makes_exactly_one_patch(fake: FakeGitHub) -> None:
    host = host_for(fake)
    known = host.upsert_comment(REPO, 5, body("first"), MARKER)
    fake.reset_requests()

    assert host.upsert_comment(REPO, 5, body("second"), MARKER, known_id=known) == known

    assert fake.calls() == [("PATCH", f"/repos/octo/app/issues/comments/{known}")]
    assert [c.body for c in fake.comments(REPO, 5)] == [body("second")]


def test_a_deleted_known_comment_falls_back_to_the_search(fake: FakeGitHub) -> None:
    gone = fake.add_comment(REPO, 5, body("deleted"), user="k8s-ee-bot")
    fake.repos[REPO].comments.pop(gone.id)
    other = fake.add_comment(REPO, 5, body("still here"), user="k8s-ee-bot")

    assert host_for(fake).upsert_comment(REPO, 5, body("new"), MARKER, known_id=str(gone.id)) == str(other.id)
    assert fake.calls() == [
        ("PATCH", f"/repos/octo/app/issues/comments/{gone.id}"),
        ("GET", COMMENTS),
        ("PATCH", f"/repos/octo/app/issues/comments/{other.id}"),
    ]


def test_a_deleted_known_comment_without_another_is_created_again(fake: FakeGitHub) -> None:
    host = host_for(fake)
    first = host.upsert_comment(REPO, 5, body("one"), MARKER)
    fake.repos[REPO].comments.clear()

    second = host.upsert_comment(REPO, 5, body("two"), MARKER, known_id=first)

    assert second != first
    assert [c.body for c in fake.comments(REPO, 5)] == [body("two")]


def test_a_body_without_its_marker_is_refused(fake: FakeGitHub) -> None:
    with pytest.raises(ValueError, match="marker"):
        host_for(fake).upsert_comment(REPO, 5, "no marker here", MARKER)
    assert fake.requests == []


# -- rate limits and failures ------------------------------------------------------------------


def test_a_secondary_rate_limit_on_a_write_delays_the_next_call(fake: FakeGitHub) -> None:
    fake.add_secondary_rate_limit(times=1, retry_after=1, method="POST")

    host_for(fake).upsert_comment(REPO, 5, body("x"), MARKER)

    assert fake.calls() == [("GET", COMMENTS), ("POST", COMMENTS), ("GET", COMMENTS), ("POST", COMMENTS)]
    assert gap_before(fake, 2) >= 0.95
    assert len(fake.comments(REPO, 5)) == 1


def test_a_429_with_a_short_retry_after_delays_the_next_read(fake: FakeGitHub) -> None:
    fake.add_fault(429, retry_after=1, method="GET", path="/comments$")

    host_for(fake).upsert_comment(REPO, 5, body("x"), MARKER)

    assert fake.calls() == [("GET", COMMENTS), ("GET", COMMENTS), ("POST", COMMENTS)]
    assert gap_before(fake, 1) >= 0.95


def test_a_long_rate_limit_surfaces_and_holds_back_every_later_call(fake: FakeGitHub) -> None:
    fake.add_secondary_rate_limit(times=-1, retry_after=120, method="POST")
    host = host_for(fake)

    started = time.monotonic()
    with pytest.raises(HostUnavailable, match="rate limit") as raised:
        host.upsert_comment(REPO, 5, body("x"), MARKER)
    assert time.monotonic() - started < 5
    assert raised.value.retry_after == 120
    assert raised.value.rate_limited
    assert fake.writes() == [("POST", COMMENTS)]

    fake.reset_requests()
    with pytest.raises(HostUnavailable, match="pause") as held:
        host.report_status(REPO, 5, report("deploying", head(fake)))
    assert held.value.retry_after is not None and 110 < held.value.retry_after <= 120
    assert fake.requests == []  # nothing was sent during the pause


def test_a_5xx_on_a_get_is_retried(fake: FakeGitHub) -> None:
    fake.add_fault(502, times=2, method="GET", path="/comments$")

    host_for(fake).upsert_comment(REPO, 5, body("x"), MARKER)

    assert fake.calls() == [("GET", COMMENTS)] * 3 + [("POST", COMMENTS)]


def test_a_timeout_on_create_is_not_retried(fake: FakeGitHub) -> None:
    fake.add_fault(None, method="POST", path="/comments$", delay=2)
    host = host_for(fake, host_timeout=0.5, host_retries=2)

    with pytest.raises(HostUnavailable, match="not repeated now") as raised:
        host.upsert_comment(REPO, 5, body("x"), MARKER)

    assert raised.value.retry_after == 30  # run the whole upsert again later
    assert fake.writes() == [("POST", COMMENTS)]
    # GitHub did create it, after the client gave up: running the upsert again finds it.
    deadline = time.monotonic() + 5
    while not fake.comments(REPO, 5) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(fake.comments(REPO, 5)) == 1
    host.upsert_comment(REPO, 5, body("y"), MARKER)
    assert [c.body for c in fake.comments(REPO, 5)] == [body("y")]


def test_a_5xx_on_create_is_not_retried(fake: FakeGitHub) -> None:
    fake.add_fault(502, method="POST", path="/comments$")

    with pytest.raises(HostUnavailable) as raised:
        host_for(fake, host_retries=3).upsert_comment(REPO, 5, body("x"), MARKER)

    assert raised.value.status == 502
    assert raised.value.retry_after == 30
    assert fake.writes() == [("POST", COMMENTS)]


def test_rate_limits_follow_the_headers(fake: FakeGitHub) -> None:
    host = host_for(fake)
    assert host.rate_limits() == {}
    fake.rate_remaining = 1234

    host.upsert_comment(REPO, 5, body("x"), MARKER)
    assert host.rate_limits() == {"github:token": Budget(1232.0, 5000.0)}  # a GET and a POST

    host.upsert_comment(REPO, 5, body("y"), MARKER, known_id=str(fake.comments(REPO, 5)[0].id))
    assert host.rate_limits() == {"github:token": Budget(1231.0, 5000.0)}


def test_a_spent_budget_holds_back_calls_until_its_reset(fake: FakeGitHub) -> None:
    fake.rate_remaining = 2
    host = host_for(fake)
    host.upsert_comment(REPO, 5, body("x"), MARKER)
    assert host.rate_limits() == {"github:token": Budget(0.0, 5000.0)}
    fake.reset_requests()

    with pytest.raises(HostUnavailable) as raised:
        host.upsert_comment(REPO, 5, body("y"), MARKER)
    assert raised.value.retry_after is not None and 0 < raised.value.retry_after <= 3601
    assert fake.requests == []


def test_an_app_reports_its_installation_budget() -> None:
    private_key, public_key = app_key_pair()
    with FakeGitHub() as fake:
        fake.add_repo(REPO)
        fake.add_pull(REPO, 5)
        fake.enable_app("4242", public_key)
        fake.install_app("octo", 77)
        host = host_for(fake, github_token=None, github_app_id="4242", github_app_private_key=private_key)

        host.upsert_comment(REPO, 5, body("x"), MARKER)

        assert set(host.rate_limits()) == {"github:77"}
        assert fake.comments(REPO, 5)[0].user == "k8s-ee[bot]"


# -- deployments and commit statuses -----------------------------------------------------------


def test_one_deployment_per_sha_with_statuses_in_progress_success_inactive(fake: FakeGitHub) -> None:
    sha = head(fake)
    host = host_for(fake)

    host.report_status(REPO, 5, report("deploying", sha, target_url="https://ci.example.com/log/1"))
    host.report_status(REPO, 5, report("deployed", sha, preview_url=PREVIEW))
    host.report_status(REPO, 5, report("destroyed", sha))

    [deployment] = fake.deployments(REPO)
    assert (deployment.sha, deployment.ref, deployment.environment) == (sha, sha, "pr-5")
    assert not deployment.transient_environment and not deployment.production_environment
    assert [(s.state, s.environment_url) for s in deployment.statuses] == [
        ("in_progress", ""),
        ("success", PREVIEW),
        ("inactive", ""),
    ]
    assert deployment.statuses[0].log_url == "https://ci.example.com/log/1"
    assert [(s.context, s.state, s.target_url, s.description) for s in fake.commit_statuses(REPO, sha)] == [
        (STATUS_CONTEXT, "pending", "https://ci.example.com/log/1", "Deploying the preview environment"),
        (STATUS_CONTEXT, "success", PREVIEW, "Preview environment deployed"),
        (STATUS_CONTEXT, "success", None, "Preview environment destroyed"),
    ]
    deployments, statuses = (
        "/repos/octo/app/deployments",
        f"/repos/octo/app/deployments/{deployment.id}/statuses",
    )
    assert fake.calls() == [
        ("GET", deployments),
        ("POST", deployments),
        ("POST", statuses),
        ("POST", f"/repos/octo/app/statuses/{sha}"),
        ("GET", deployments),
        ("POST", statuses),
        ("POST", f"/repos/octo/app/statuses/{sha}"),
        ("GET", deployments),
        ("GET", statuses),
        ("POST", statuses),
        ("POST", f"/repos/octo/app/statuses/{sha}"),
    ]
    # Without a memo, each call lists the environment's deployments (all commits at once).
    lookups = [r.query for r in fake.requests if r.call == ("GET", deployments)]
    assert lookups[0]["environment"] == "pr-5" and "sha" not in lookups[0]
    created = fake.requests[1].json()
    assert created["auto_merge"] is False and created["required_contexts"] == []


def test_the_memo_saves_every_lookup_and_every_unchanged_write(fake: FakeGitHub) -> None:
    sha = head(fake)
    host = host_for(fake)
    memo = ReportMemo(complete=True)  # a new environment: nothing to find on the host
    for state, fields in (
        ("deploying", {}),
        ("deployed", {"preview_url": PREVIEW}),
        ("deployed", {"preview_url": PREVIEW}),  # the same again: nothing is written
        ("destroyed", {}),
    ):
        memo = host.report_status(REPO, 5, report(state, sha, **fields), memo)
    [deployment] = fake.deployments(REPO)
    assert [s.state for s in deployment.statuses] == ["in_progress", "success", "inactive"]
    statuses = f"/repos/octo/app/deployments/{deployment.id}/statuses"
    commit = f"/repos/octo/app/statuses/{sha}"
    assert fake.calls() == [
        ("POST", "/repos/octo/app/deployments"),
        ("POST", statuses),
        ("POST", commit),
        ("POST", statuses),
        ("POST", commit),
        ("POST", statuses),
        ("POST", commit),
    ]


def test_a_remembered_deployment_that_was_deleted_is_found_or_made_afresh(fake: FakeGitHub) -> None:
    sha = head(fake)
    host = host_for(fake)
    memo = host.report_status(REPO, 5, report("deploying", sha), ReportMemo(complete=True))
    fake.repos[REPO.lower()].deployments.clear()
    host.report_status(REPO, 5, report("deployed", sha, preview_url=PREVIEW), memo)
    [deployment] = fake.deployments(REPO)
    assert [s.state for s in deployment.statuses] == ["success"]


def test_a_new_head_gets_its_own_deployment_and_destroy_leaves_none_active(fake: FakeGitHub) -> None:
    first, second, third = fake_sha("one"), fake_sha("two"), fake_sha("three")
    for sha in (first, second, third):
        fake.add_commit(REPO, sha)
    host = host_for(fake)

    host.report_status(REPO, 5, report("deployed", first, preview_url=PREVIEW))
    host.report_status(REPO, 5, report("deployed", second, preview_url=PREVIEW))
    host.report_status(REPO, 5, report("deploying", third))
    host.report_status(REPO, 5, report("failed", third, target_url="https://ci.example.com/log/3"))
    assert [d.state for d in fake.deployments(REPO)] == ["inactive", "success", "failure"]

    host.report_status(REPO, 5, report("destroyed", third))

    assert [d.sha for d in fake.deployments(REPO)] == [first, second, third]
    assert [d.state for d in fake.deployments(REPO)] == ["inactive", "inactive", "inactive"]


def test_a_skipped_change_gets_a_commit_status_and_no_deployment(fake: FakeGitHub) -> None:
    sha = head(fake)
    host_for(fake).report_status(
        REPO, 5, report("skipped", sha, description="No k8s-ee.yaml in this repository")
    )

    assert fake.deployments(REPO) == []
    assert [(s.state, s.description) for s in fake.commit_statuses(REPO, sha)] == [
        ("success", "No k8s-ee.yaml in this repository")
    ]


def test_an_abbreviated_sha_is_resolved_before_deployments_are_looked_up(fake: FakeGitHub) -> None:
    sha = head(fake)
    host = host_for(fake)
    host.report_status(REPO, 5, report("deploying", sha[:12]))
    host.report_status(REPO, 5, report("deployed", sha, preview_url=PREVIEW))

    [deployment] = fake.deployments(REPO)
    assert deployment.sha == sha
    assert fake.calls()[0] == ("GET", f"/repos/octo/app/commits/{sha[:12]}")


def test_a_report_for_another_change_is_refused(fake: FakeGitHub) -> None:
    with pytest.raises(ValueError, match="pr-5"):
        host_for(fake).report_status(REPO, 6, report("deployed", head(fake)))
    assert fake.requests == []


def test_reports_are_validated() -> None:
    with pytest.raises(ValidationError):
        report("deployed", "not-a-sha")
    with pytest.raises(ValidationError):
        report("deployed", fake_sha("x"), description="x" * 141)
    with pytest.raises(ValidationError):
        report("deployed", fake_sha("x"), preview_url="javascript:alert(1)")
    with pytest.raises(ValidationError):
        report("sleeping", fake_sha("x"))
    assert report("hibernated", fake_sha("x").upper()).head_sha == fake_sha("x")
