"""GitLab reads through python-gitlab, against the fake GitLab API on loopback."""

from __future__ import annotations

import time
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import gitlab
import pytest

from providers.hosts.base import ChangeState, Host, HostError, HostUnavailable, NotFound
from providers.hosts.settings import load_host_settings
from providers.settings import SettingsError
from tests.fakes.fakehosts import FakeGitLab, fake_sha
from tests.support.hosts import gitlab_host

TOKEN = "glpat-reader-0123456789"
PROJECT = "platform/team/web-app"
ENCODED = "platform%2Fteam%2Fweb-app"


@pytest.fixture
def fake() -> Iterator[FakeGitLab]:
    with FakeGitLab() as server:
        server.add_token(TOKEN)
        server.add_project(PROJECT)
        yield server


def host_for(fake: FakeGitLab, **overrides: Any) -> Host:
    return gitlab_host(fake, TOKEN, **overrides)


# -- change() -----------------------------------------------------------------------------------


def test_change_counts_the_notes_people_wrote(fake: FakeGitLab) -> None:
    # Ours is a note people write; GitLab's own ("added 1 commit") are not counted.
    fake.add_merge_request(PROJECT, 3)
    fake.add_merge_request(PROJECT, 4)
    fake.add_note(PROJECT, 3, "looks good")
    fake.add_note(PROJECT, 3, "added 1 commit", system=True)
    fake.add_note(PROJECT, 4, "elsewhere")
    assert host_for(fake).change(PROJECT, 3).comments == 1


@pytest.mark.parametrize(
    ("fields", "state", "draft"),
    [
        ({"state": "opened"}, "open", False),
        ({"state": "opened", "draft": True, "title": "Draft: Add things"}, "open", True),
        ({"state": "locked"}, "open", False),  # being merged right now
        ({"state": "closed"}, "closed", False),
        ({"state": "merged"}, "merged", False),
    ],
)
def test_change_reports_state(fake: FakeGitLab, fields: dict[str, Any], state: str, draft: bool) -> None:
    updated = datetime(2025, 3, 1, 12, 30, 15, 123000, tzinfo=UTC)
    fields.setdefault("title", "Add things")
    mr = fake.add_merge_request(PROJECT, 3, source_branch="feat/x", updated_at=updated, **fields)

    change = host_for(fake).change(PROJECT, 3)

    assert change == ChangeState(
        state=state,  # type: ignore[arg-type]
        head_sha=mr.sha,
        head_ref="feat/x",
        base_ref="main",
        draft=draft,
        updated_at=updated,
        title=fields["title"],
        url=f"{fake.origin}/{PROJECT}/-/merge_requests/3",
        comments=0,
    )
    # The project is addressed by its URL-encoded path, subgroups included, in one request.
    assert [(r.method, r.path, r.auth, r.credential) for r in fake.requests] == [
        ("GET", f"/api/v4/projects/{ENCODED}/merge_requests/3", "private-token", TOKEN)
    ]


def test_change_that_does_not_exist_is_not_found(fake: FakeGitLab) -> None:
    with pytest.raises(NotFound, match=r"merge request platform/team/web-app!9 not found \(404 Not found\)"):
        host_for(fake).change(PROJECT, 9)
    with pytest.raises(NotFound, match="Project Not Found"):
        host_for(fake).change("platform/team/gone", 1)


def test_project_path_with_special_characters_is_encoded(fake: FakeGitLab) -> None:
    fake.add_project("my.group/sub group/app.v2")
    fake.add_merge_request("my.group/sub group/app.v2", 1)
    assert host_for(fake).change("my.group/sub group/app.v2", 1).state == "open"
    assert fake.requests[-1].path == "/api/v4/projects/my.group%2Fsub%20group%2Fapp.v2/merge_requests/1"


# -- read_file() --------------------------------------------------------------------------------


def test_read_file_at_a_ref(fake: FakeGitLab) -> None:
    old, new = fake_sha("old"), fake_sha("new")
    fake.add_file(PROJECT, "k8s-ee.yaml", "projectId: old\n", ref=old)
    fake.add_file(PROJECT, "k8s-ee.yaml", "projectId: new\n", ref=new)
    fake.add_file(PROJECT, "deploy/k8s-ee.yaml", "projectId: nested\n", ref=new)
    host = host_for(fake)

    assert host.read_file(PROJECT, "k8s-ee.yaml", old) == "projectId: old\n"
    assert host.read_file(PROJECT, "k8s-ee.yaml", new) == "projectId: new\n"
    assert host.read_file(PROJECT, "deploy/k8s-ee.yaml", new) == "projectId: nested\n"
    assert [(r.path, r.query) for r in fake.requests] == [
        (f"/api/v4/projects/{ENCODED}/repository/files/k8s-ee.yaml/raw", {"ref": old}),
        (f"/api/v4/projects/{ENCODED}/repository/files/k8s-ee.yaml/raw", {"ref": new}),
        (f"/api/v4/projects/{ENCODED}/repository/files/deploy%2Fk8s-ee.yaml/raw", {"ref": new}),
    ]


def test_read_file_that_is_not_there_is_none(fake: FakeGitLab) -> None:
    sha = fake_sha("head")
    fake.add_file(PROJECT, "other.yaml", "a: 1\n", ref=sha)
    host = host_for(fake)
    assert host.read_file(PROJECT, "k8s-ee.yaml", sha) is None
    assert host.read_file(PROJECT, "k8s-ee.yaml", fake_sha("unknown")) is None


def test_read_file_that_is_not_text_is_an_error(fake: FakeGitLab) -> None:
    fake.add_file(PROJECT, "k8s-ee.yaml", b"\xff\xfe\x00", ref="main")
    with pytest.raises(HostError, match="not UTF-8 text"):
        host_for(fake).read_file(PROJECT, "k8s-ee.yaml", "main")


# -- failures -----------------------------------------------------------------------------------


def test_a_passing_5xx_is_retried(fake: FakeGitLab) -> None:
    fake.add_merge_request(PROJECT, 3)
    fake.add_fault(503, times=2)
    assert host_for(fake).change(PROJECT, 3).state == "open"
    assert len(fake.requests) == 3


def test_a_lasting_5xx_is_host_unavailable_after_bounded_retries(fake: FakeGitLab) -> None:
    fake.add_merge_request(PROJECT, 3)
    fake.add_fault(500, times=-1)
    with pytest.raises(HostUnavailable, match="500 Internal Server Error") as raised:
        host_for(fake, host_retries=2).change(PROJECT, 3)
    assert raised.value.status == 500
    assert len(fake.requests) == 3


def test_a_long_retry_after_gives_up_at_once(fake: FakeGitLab) -> None:
    fake.add_merge_request(PROJECT, 3)
    fake.add_fault(429, times=-1, retry_after=90, headers={"RateLimit-Remaining": "0"})
    started = time.monotonic()
    with pytest.raises(HostUnavailable) as raised:
        host_for(fake).change(PROJECT, 3)
    assert time.monotonic() - started < 5
    assert (raised.value.status, raised.value.retry_after) == (429, 90)
    assert len(fake.requests) == 1


def test_bad_token_is_host_unavailable_without_the_token(fake: FakeGitLab) -> None:
    secret = "glpat-wrong-and-secret"
    with pytest.raises(HostUnavailable) as raised:
        host_for(fake, gitlab_api_token=secret).change(PROJECT, 3)
    assert "rejected the credentials" in str(raised.value)
    assert "K8S_EE_GITLAB_API_TOKEN" in str(raised.value)
    assert raised.value.status == 401
    assert secret not in "".join(traceback.format_exception(raised.value))
    assert len(fake.requests) == 1


def test_unreachable_host_is_host_unavailable(fake: FakeGitLab) -> None:
    host = host_for(fake, host_retries=1)
    fake.stop()
    with pytest.raises(HostUnavailable, match="cannot reach GitLab"):
        host.change(PROJECT, 3)


def test_settings_refuse_a_bad_url() -> None:
    with pytest.raises(SettingsError, match="K8S_EE_GITLAB_URL"):
        load_host_settings(gitlab_url="gitlab.example.com")
    with pytest.raises(SettingsError, match="must not carry a user name"):
        load_host_settings(gitlab_url="https://user:pw@gitlab.example.com")


# -- the fake itself, through python-gitlab ------------------------------------------------------


def test_fake_paginates_like_gitlab(fake: FakeGitLab) -> None:
    for iid in range(1, 6):
        fake.add_merge_request(PROJECT, iid, state="opened" if iid % 2 else "merged")
    client = gitlab.Gitlab(fake.origin, private_token=TOKEN)
    project = client.projects.get(PROJECT, lazy=True)

    everything = project.mergerequests.list(get_all=True, per_page=2)
    assert [mr.iid for mr in everything] == [5, 4, 3, 2, 1]
    assert [r.query.get("page") for r in fake.requests] == [None, "2", "3"]

    page = project.mergerequests.list(iterator=True, per_page=2)
    assert (page.current_page, page.next_page, page.total_pages, page.total) == (1, 2, 3, 5)
    opened = project.mergerequests.list(get_all=True, state="opened")
    assert [mr.iid for mr in opened] == [5, 3, 1]
    client.session.close()


def test_first_commit_at_reads_every_page_of_the_newest_first_list(fake: FakeGitLab) -> None:
    start = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)
    # 150 commits: GitLab lists them newest first, so the first is on the last page.
    commits = [(fake_sha(f"c{i}"), start + timedelta(minutes=i)) for i in range(150)]
    fake.add_merge_request(PROJECT, 3, commits=commits)
    host = host_for(fake)
    assert host.first_commit_at(PROJECT, 3) == start
    with pytest.raises(NotFound):
        host.first_commit_at(PROJECT, 4)
