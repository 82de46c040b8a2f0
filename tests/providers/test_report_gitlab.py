"""Reporting back on GitLab merge requests through python-gitlab, against the fake GitLab API on
loopback: the marker note, the environment, commit statuses, rate limits and failed writes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from providers.hosts.base import Budget, Host, HostUnavailable
from providers.hosts.gitlab import GitLabHost
from providers.hosts.http import HttpPolicy
from providers.hosts.reporting import MARKER, STATUS_CONTEXT
from tests.fakes.fakehosts import FakeGitLab
from tests.support.hosts import body, gap_before, gitlab_host, report

TOKEN = "glpat-writer0123456789"
PROJECT = "group/sub/app"
API = "/api/v4/projects/group%2Fsub%2Fapp"
NOTES = f"{API}/merge_requests/5/notes"
ENVIRONMENTS = f"{API}/environments"
PREVIEW = "https://app-pr-5.preview.example.com"


@pytest.fixture
def fake() -> Iterator[FakeGitLab]:
    with FakeGitLab() as server:
        server.add_token(TOKEN)
        server.add_project(PROJECT)
        server.add_merge_request(PROJECT, 5)
        yield server


def host_for(fake: FakeGitLab, **overrides: Any) -> Host:
    return gitlab_host(fake, TOKEN, **overrides)


def head(fake: FakeGitLab) -> str:
    return fake.projects[PROJECT].merge_requests[5].sha


# -- the note ----------------------------------------------------------------------------------


def test_without_a_search_the_note_is_created_in_one_call(fake: FakeGitLab) -> None:
    note_id = host_for(fake).upsert_comment(PROJECT, 5, body("new"), MARKER, search=False)

    assert fake.calls() == [("POST", NOTES)]
    assert [str(n.id) for n in fake.projects[PROJECT].notes.values()] == [note_id]


def test_the_note_is_edited_not_duplicated_across_three_upserts(fake: FakeGitLab) -> None:
    fake.add_note(PROJECT, 5, "Looks good")
    host = host_for(fake)

    ids = [host.upsert_comment(PROJECT, 5, body(f"state {n}"), MARKER) for n in range(3)]

    assert len(set(ids)) == 1
    assert [n.body for n in fake.notes(PROJECT, 5)] == ["Looks good", body("state 2")]
    assert fake.calls() == [
        ("GET", NOTES),
        ("POST", NOTES),
        ("GET", NOTES),
        ("PUT", f"{NOTES}/{ids[0]}"),
        ("GET", NOTES),
        ("PUT", f"{NOTES}/{ids[0]}"),
    ]
    listing = fake.requests[0].query
    assert (listing["sort"], listing["order_by"], listing["per_page"]) == ("asc", "created_at", "100")
    assert all(r.auth == "private-token" and r.credential == TOKEN for r in fake.requests)


def test_the_marker_is_found_on_page_three_and_system_notes_are_left_alone(fake: FakeGitLab) -> None:
    fake.add_note(PROJECT, 5, f"mentioned in a commit {MARKER}", system=True)
    for n in range(3):
        fake.add_note(PROJECT, 5, f"note {n}")
    marked = fake.add_note(PROJECT, 5, body("old"), author="k8s-ee-bot")
    fake.add_note(PROJECT, 5, "a later note")
    host = GitLabHost(fake.origin, SecretStr(TOKEN), HttpPolicy(backoff=0), per_page=2)

    assert host.upsert_comment(PROJECT, 5, body("new"), MARKER) == str(marked.id)

    assert [(r.method, r.path, r.query.get("page")) for r in fake.requests] == [
        ("GET", NOTES, None),
        ("GET", NOTES, "2"),
        ("GET", NOTES, "3"),
        ("PUT", f"{NOTES}/{marked.id}", None),
    ]
    notes = fake.notes(PROJECT, 5)
    assert notes[0].body == f"mentioned in a commit {MARKER}"
    assert [n.body for n in notes[4:]] == [body("new"), "a later note"]


def test_the_known_id_fast_path_makes_exactly_one_put(fake: FakeGitLab) -> None:
    host = host_for(fake)
    known = host.upsert_comment(PROJECT, 5, body("first"), MARKER)
    fake.reset_requests()

    assert host.upsert_comment(PROJECT, 5, body("second"), MARKER, known_id=known) == known

    assert fake.calls() == [("PUT", f"{NOTES}/{known}")]
    assert fake.requests[0].json() == {"body": body("second")}


def test_a_deleted_known_note_falls_back_to_the_search(fake: FakeGitLab) -> None:
    gone = fake.add_note(PROJECT, 5, body("deleted"), author="k8s-ee-bot")
    fake.projects[PROJECT].notes.pop(gone.id)
    other = fake.add_note(PROJECT, 5, body("still here"), author="k8s-ee-bot")

    assert host_for(fake).upsert_comment(PROJECT, 5, body("new"), MARKER, known_id=str(gone.id)) == str(
        other.id
    )
    assert fake.calls() == [("PUT", f"{NOTES}/{gone.id}"), ("GET", NOTES), ("PUT", f"{NOTES}/{other.id}")]


# -- rate limits and failures ------------------------------------------------------------------


def test_a_429_on_a_write_delays_the_next_call(fake: FakeGitLab) -> None:
    fake.add_fault(429, retry_after=1, method="POST", path="/notes$")

    host_for(fake).upsert_comment(PROJECT, 5, body("x"), MARKER)

    assert fake.calls() == [("GET", NOTES), ("POST", NOTES), ("GET", NOTES), ("POST", NOTES)]
    assert gap_before(fake, 2) >= 0.95
    assert len(fake.notes(PROJECT, 5)) == 1


def test_a_long_retry_after_surfaces_and_holds_back_later_calls(fake: FakeGitLab) -> None:
    fake.add_fault(429, times=-1, retry_after=90, method="POST")
    host = host_for(fake)

    with pytest.raises(HostUnavailable) as raised:
        host.upsert_comment(PROJECT, 5, body("x"), MARKER)
    assert (raised.value.status, raised.value.retry_after, raised.value.rate_limited) == (429, 90, True)
    assert fake.writes() == [("POST", NOTES)]

    fake.reset_requests()
    with pytest.raises(HostUnavailable, match="pause") as held:
        host.change(PROJECT, 5)
    assert held.value.retry_after is not None and 80 < held.value.retry_after <= 90
    assert fake.requests == []


def test_a_5xx_on_a_get_is_retried(fake: FakeGitLab) -> None:
    fake.add_fault(503, times=2, method="GET", path="/notes$")

    host_for(fake).upsert_comment(PROJECT, 5, body("x"), MARKER)

    assert fake.calls() == [("GET", NOTES)] * 3 + [("POST", NOTES)]


def test_a_timeout_on_create_is_not_retried(fake: FakeGitLab) -> None:
    fake.add_fault(None, method="POST", path="/notes$", delay=1.5)
    host = host_for(fake, host_timeout=0.5, host_retries=2)

    with pytest.raises(HostUnavailable, match="not repeated now") as raised:
        host.upsert_comment(PROJECT, 5, body("x"), MARKER)

    assert raised.value.retry_after == 30
    assert fake.writes() == [("POST", NOTES)]
    deadline = time.monotonic() + 5
    while not fake.notes(PROJECT, 5) and time.monotonic() < deadline:
        time.sleep(0.05)
    host.upsert_comment(PROJECT, 5, body("y"), MARKER)
    assert [n.body for n in fake.notes(PROJECT, 5)] == [body("y")]


def test_rate_limits_follow_the_headers(fake: FakeGitLab) -> None:
    host = host_for(fake)
    host.upsert_comment(PROJECT, 5, body("x"), MARKER)
    assert host.rate_limits() == {}  # no rate limit, no headers

    fake.set_rate_limit(600, remaining=100)
    host.upsert_comment(PROJECT, 5, body("y"), MARKER)
    assert host.rate_limits() == {"gitlab:token": Budget(98.0, 600.0)}


def test_a_spent_budget_holds_back_calls_until_its_reset(fake: FakeGitLab) -> None:
    fake.set_rate_limit(600, remaining=1, reset_in=45)
    host = host_for(fake)

    host.change(PROJECT, 5)  # spends the last request
    assert host.rate_limits() == {"gitlab:token": Budget(0.0, 600.0)}
    fake.reset_requests()

    with pytest.raises(HostUnavailable, match="pause") as raised:
        host.upsert_comment(PROJECT, 5, body("x"), MARKER)
    assert raised.value.retry_after is not None and 30 < raised.value.retry_after <= 45
    assert fake.requests == []


def test_a_spent_budget_answers_429_with_its_wait(fake: FakeGitLab) -> None:
    fake.set_rate_limit(600, remaining=0, reset_in=45)

    with pytest.raises(HostUnavailable) as raised:
        host_for(fake).upsert_comment(PROJECT, 5, body("x"), MARKER)

    assert (raised.value.status, raised.value.rate_limited) == (429, True)
    assert raised.value.retry_after is not None and 40 <= raised.value.retry_after <= 45
    assert fake.calls() == [("GET", NOTES)]


# -- the environment and commit statuses -------------------------------------------------------


def test_the_environment_is_created_then_updated_then_stopped(fake: FakeGitLab) -> None:
    sha = head(fake)
    host = host_for(fake)

    host.report_status(PROJECT, 5, report("queued", sha, ref="feature-5"))
    host.report_status(PROJECT, 5, report("deploying", sha, ref="feature-5"))
    host.report_status(PROJECT, 5, report("deployed", sha, ref="feature-5", preview_url=PREVIEW))
    host.report_status(PROJECT, 5, report("destroyed", sha, ref="feature-5"))

    [environment] = fake.environments(PROJECT)
    assert (environment.name, environment.external_url, environment.tier, environment.state) == (
        "pr-5",
        PREVIEW,
        "development",
        "stopped",
    )
    statuses = f"{API}/statuses/{sha}"
    assert fake.calls() == [
        ("GET", ENVIRONMENTS),
        ("POST", ENVIRONMENTS),
        ("POST", statuses),
        ("GET", ENVIRONMENTS),
        ("POST", statuses),
        ("GET", ENVIRONMENTS),
        ("PUT", f"{ENVIRONMENTS}/{environment.id}"),
        ("POST", statuses),
        ("GET", ENVIRONMENTS),
        ("POST", f"{ENVIRONMENTS}/{environment.id}/stop"),
        ("POST", statuses),
    ]
    assert fake.requests[0].query["name"] == "pr-5"
    assert fake.requests[6].json() == {"external_url": PREVIEW}
    # One status while it runs, then a new one once it has finished.
    assert [(s.name, s.status, s.ref, s.target_url) for s in fake.commit_statuses(PROJECT, sha)] == [
        (STATUS_CONTEXT, "success", "feature-5", PREVIEW),
        (STATUS_CONTEXT, "canceled", "feature-5", None),
    ]


def test_an_environment_comes_back_when_its_change_does(fake: FakeGitLab) -> None:
    sha = head(fake)
    host = host_for(fake)
    host.report_status(PROJECT, 5, report("deployed", sha, preview_url=PREVIEW))
    host.report_status(PROJECT, 5, report("destroyed", sha))
    [stopped] = fake.environments(PROJECT)
    fake.reset_requests()

    host.report_status(PROJECT, 5, report("deployed", sha, preview_url=PREVIEW))

    [environment] = fake.environments(PROJECT)
    assert environment.state == "available" and environment.external_url == PREVIEW
    assert fake.writes()[:2] == [("DELETE", f"{ENVIRONMENTS}/{stopped.id}"), ("POST", ENVIRONMENTS)]


def test_reporting_the_same_running_state_twice_is_accepted(fake: FakeGitLab) -> None:
    sha = head(fake)
    host = host_for(fake)
    host.report_status(PROJECT, 5, report("deploying", sha))
    host.report_status(PROJECT, 5, report("deploying", sha))  # GitLab answers 400 "Cannot transition"

    assert [s.status for s in fake.commit_statuses(PROJECT, sha)] == ["running"]
    assert fake.writes().count(("POST", f"{API}/statuses/{sha}")) == 2


def test_a_skipped_change_gets_a_skipped_status_and_no_environment(fake: FakeGitLab) -> None:
    sha = head(fake)
    host_for(fake).report_status(PROJECT, 5, report("skipped", sha))

    assert fake.environments(PROJECT) == []
    assert [s.status for s in fake.commit_statuses(PROJECT, sha)] == ["skipped"]
    assert fake.calls() == [("POST", f"{API}/statuses/{sha}")]


def test_a_hibernated_environment_stays_available(fake: FakeGitLab) -> None:
    sha = head(fake)
    host = host_for(fake)
    host.report_status(PROJECT, 5, report("deployed", sha, preview_url=PREVIEW))
    host.report_status(PROJECT, 5, report("hibernated", sha, preview_url=PREVIEW))

    [environment] = fake.environments(PROJECT)
    assert environment.state == "available"
    assert [s.status for s in fake.commit_statuses(PROJECT, sha)] == ["success", "success"]
