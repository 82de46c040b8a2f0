"""GitHub reads through PyGithub, against the fake GitHub API on loopback."""

from __future__ import annotations

import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from github import Auth, Github

from providers.events import Provider
from providers.hosts.base import ChangeState, Host, HostError, HostUnavailable, NotFound
from providers.hosts.build import build_hosts
from providers.hosts.settings import HostSettings, load_host_settings
from providers.settings import SettingsError
from tests.fakes.fakehosts import FakeGitHub, fake_sha
from tests.fakes.fakehosts.github import app_key_pair
from tests.support.hosts import github_host

TOKEN = "ghp_reader0123456789"
REPO = "octo/app"


@pytest.fixture
def fake() -> Iterator[FakeGitHub]:
    with FakeGitHub() as server:
        server.add_token(TOKEN)
        server.add_repo(REPO)
        yield server


@pytest.fixture(scope="module")
def app_key() -> tuple[str, str]:
    return app_key_pair()


def host_for(fake: FakeGitHub, **overrides: Any) -> Host:
    return github_host(fake, TOKEN, **overrides)


def app_host(fake: FakeGitHub, private_key: str, **overrides: Any) -> Host:
    return host_for(
        fake, github_token=None, github_app_id="4242", github_app_private_key=private_key, **overrides
    )


# -- change() -----------------------------------------------------------------------------------


def test_change_counts_the_pull_requests_comments(fake: FakeGitHub) -> None:
    # Its issue comments (ours among them), not another pull request's.
    fake.add_pull(REPO, 5)
    fake.add_pull(REPO, 6)
    fake.add_comment(REPO, 5, "first")
    fake.add_comment(REPO, 5, "second")
    fake.add_comment(REPO, 6, "elsewhere")
    assert host_for(fake).change(REPO, 5).comments == 2


@pytest.mark.parametrize(
    ("fields", "state", "draft"),
    [
        ({"state": "open"}, "open", False),
        ({"state": "open", "draft": True}, "open", True),
        ({"state": "closed"}, "closed", False),
        ({"state": "closed", "merged": True}, "merged", False),
    ],
)
def test_change_reports_state(fake: FakeGitHub, fields: dict[str, Any], state: str, draft: bool) -> None:
    updated = datetime(2025, 3, 1, 12, 30, tzinfo=UTC)
    pull = fake.add_pull(REPO, 5, head_ref="feat/x", title="Add *things*", updated_at=updated, **fields)

    change = host_for(fake).change(REPO, 5)

    assert change == ChangeState(
        state=state,  # type: ignore[arg-type]
        head_sha=pull.head_sha,
        head_ref="feat/x",
        base_ref="main",
        draft=draft,
        updated_at=updated,
        title="Add *things*",
        url=f"{fake.origin}/octo/app/pull/5",
        comments=0,
    )
    assert len(change.head_sha) == 40
    # One request: the repository is not fetched first.
    assert [(r.method, r.path, r.auth, r.credential) for r in fake.requests] == [
        ("GET", "/repos/octo/app/pulls/5", "token", TOKEN)
    ]


def test_change_that_does_not_exist_is_not_found(fake: FakeGitHub) -> None:
    with pytest.raises(NotFound, match=r"pull request octo/app#9 not found"):
        host_for(fake).change(REPO, 9)
    with pytest.raises(NotFound):
        host_for(fake).change("octo/missing", 1)


def test_repository_name_must_be_owner_and_repo(fake: FakeGitHub) -> None:
    with pytest.raises(HostError, match="is not owner/repo"):
        host_for(fake).change("just-a-name", 1)
    assert fake.requests == []


# -- read_file() --------------------------------------------------------------------------------


def test_read_file_at_a_ref(fake: FakeGitHub) -> None:
    old, new = fake_sha("old"), fake_sha("new")
    fake.add_file(REPO, "k8s-ee.yaml", "projectId: old\n", ref=old)
    fake.add_file(REPO, "k8s-ee.yaml", "projectId: new\n", ref=new)
    fake.add_file(REPO, "deploy/k8s-ee.yaml", "projectId: nested ✓\n", ref=new)
    host = host_for(fake)

    assert host.read_file(REPO, "k8s-ee.yaml", old) == "projectId: old\n"
    assert host.read_file(REPO, "k8s-ee.yaml", new) == "projectId: new\n"
    assert host.read_file(REPO, "deploy/k8s-ee.yaml", new) == "projectId: nested ✓\n"
    assert [(r.path, r.query) for r in fake.requests] == [
        ("/repos/octo/app/contents/k8s-ee.yaml", {"ref": old}),
        ("/repos/octo/app/contents/k8s-ee.yaml", {"ref": new}),
        ("/repos/octo/app/contents/deploy/k8s-ee.yaml", {"ref": new}),
    ]


def test_read_file_that_is_not_there_is_none(fake: FakeGitHub) -> None:
    sha = fake_sha("head")
    fake.add_file(REPO, "deploy/k8s-ee.yaml", "projectId: a\n", ref=sha)
    host = host_for(fake)

    assert host.read_file(REPO, "k8s-ee.yaml", sha) is None  # no such file
    assert host.read_file(REPO, "k8s-ee.yaml", fake_sha("unknown")) is None  # no such commit
    assert host.read_file(REPO, "deploy", sha) is None  # a directory


def test_read_file_over_a_megabyte_reads_the_blob(fake: FakeGitHub) -> None:
    fake.contents_max_bytes = 64
    text = "projectId: big\n" + "# padding\n" * 20
    fake.add_file(REPO, "k8s-ee.yaml", text, ref="main")

    assert host_for(fake).read_file(REPO, "k8s-ee.yaml", "main") == text
    paths = [r.path for r in fake.requests]
    assert paths[0] == "/repos/octo/app/contents/k8s-ee.yaml"
    assert paths[1].startswith("/repos/octo/app/git/blobs/")


def test_read_file_that_is_not_text_is_an_error(fake: FakeGitHub) -> None:
    fake.add_file(REPO, "k8s-ee.yaml", b"\xff\xfe\x00binary", ref="main")
    with pytest.raises(HostError, match="not UTF-8 text"):
        host_for(fake).read_file(REPO, "k8s-ee.yaml", "main")


# -- failures -----------------------------------------------------------------------------------


def test_a_passing_5xx_is_retried(fake: FakeGitHub) -> None:
    fake.add_pull(REPO, 5)
    fake.add_fault(502, times=2)
    assert host_for(fake).change(REPO, 5).state == "open"
    assert len(fake.requests) == 3


def test_a_lasting_5xx_is_host_unavailable_after_bounded_retries(fake: FakeGitHub) -> None:
    fake.add_pull(REPO, 5)
    fake.add_fault(500, times=-1)
    with pytest.raises(HostUnavailable, match=r"500") as raised:
        host_for(fake, host_retries=3).change(REPO, 5)
    assert raised.value.status == 500
    assert len(fake.requests) == 4  # the first try and three retries


def test_a_short_retry_after_is_waited_for(fake: FakeGitHub) -> None:
    fake.add_pull(REPO, 5)
    fake.add_fault(429, retry_after=1)
    started = time.monotonic()
    assert host_for(fake).change(REPO, 5).state == "open"
    assert time.monotonic() - started >= 0.9
    assert len(fake.requests) == 2


def test_a_long_retry_after_gives_up_at_once(fake: FakeGitHub) -> None:
    fake.add_pull(REPO, 5)
    fake.add_fault(429, times=-1, retry_after=120)
    started = time.monotonic()
    with pytest.raises(HostUnavailable) as raised:
        host_for(fake).change(REPO, 5)
    assert time.monotonic() - started < 5
    assert raised.value.status == 429
    assert raised.value.retry_after == 120
    assert len(fake.requests) == 1


def test_secondary_rate_limit_gives_up_with_the_wait(fake: FakeGitHub) -> None:
    fake.add_pull(REPO, 5)
    fake.add_secondary_rate_limit(times=-1)
    with pytest.raises(HostUnavailable, match="rate limit") as raised:
        host_for(fake).change(REPO, 5)
    assert raised.value.status == 403
    assert raised.value.retry_after == 60  # GitHub's advice: wait at least a minute
    assert len(fake.requests) == 1

    fake.clear_faults()
    fake.add_secondary_rate_limit(times=-1, retry_after=30)
    with pytest.raises(HostUnavailable, match="rate limit") as raised:
        host_for(fake).change(REPO, 5)
    assert raised.value.retry_after == 30


def test_a_spent_rate_limit_waits_for_its_reset(fake: FakeGitHub) -> None:
    fake.add_pull(REPO, 5)
    fake.rate_remaining = 0
    with pytest.raises(HostUnavailable, match="rate limit") as raised:
        host_for(fake).change(REPO, 5)
    assert raised.value.retry_after is not None
    assert 0 < raised.value.retry_after <= 3601
    assert len(fake.requests) == 1


def test_bad_token_is_host_unavailable_without_the_token(fake: FakeGitHub) -> None:
    fake.add_pull(REPO, 5)
    secret = "ghp_wrong_and_secret_value"
    with pytest.raises(HostUnavailable) as raised:
        host_for(fake, github_token=secret).change(REPO, 5)
    message = str(raised.value)
    assert "rejected the credentials" in message
    assert "K8S_EE_GITHUB_TOKEN" in message
    assert raised.value.status == 401
    assert secret not in "".join(traceback.format_exception(raised.value))
    assert len(fake.requests) == 1  # a 401 is not retried
    assert fake.requests[0].credential == secret


def test_unreachable_host_is_host_unavailable(fake: FakeGitHub) -> None:
    host = host_for(fake, host_retries=1)
    fake.stop()
    with pytest.raises(HostUnavailable, match=r"cannot reach GitHub at http://127\.0\.0\.1:\d+"):
        host.change(REPO, 5)


def test_a_slow_answer_times_out(fake: FakeGitHub) -> None:
    fake.add_pull(REPO, 5)
    fake.add_fault(None, times=-1, delay=8)
    started = time.monotonic()
    with pytest.raises(HostUnavailable, match="cannot reach GitHub"):
        host_for(fake, host_timeout=0.5, host_retries=0).change(REPO, 5)
    assert time.monotonic() - started < 6


# -- GitHub Enterprise Server -------------------------------------------------------------------


def test_enterprise_server_api_url() -> None:
    with FakeGitHub(enterprise=True) as ghe:
        ghe.add_token(TOKEN)
        ghe.add_repo(REPO)
        ghe.add_pull(REPO, 3)
        ghe.add_file(REPO, "k8s-ee.yaml", "projectId: ghe\n", ref="main")
        assert ghe.url.endswith("/api/v3")
        host = host_for(ghe)

        assert host.change(REPO, 3).url == f"{ghe.origin}/octo/app/pull/3"
        assert host.read_file(REPO, "k8s-ee.yaml", "main") == "projectId: ghe\n"
        assert ghe.calls() == [
            ("GET", "/api/v3/repos/octo/app/pulls/3"),
            ("GET", "/api/v3/repos/octo/app/contents/k8s-ee.yaml"),
        ]


# -- GitHub App ---------------------------------------------------------------------------------


def test_app_mints_one_installation_token_for_many_calls(fake: FakeGitHub, app_key: tuple[str, str]) -> None:
    private_key, public_key = app_key
    fake.enable_app("4242", public_key)
    fake.install_app("octo", 77)
    fake.add_pull(REPO, 5)
    fake.add_file(REPO, "k8s-ee.yaml", "projectId: app\n", ref="main")
    host = app_host(fake, private_key)

    assert host.change(REPO, 5).state == "open"
    assert host.change(REPO, 5).state == "open"
    assert host.read_file(REPO, "k8s-ee.yaml", "main") == "projectId: app\n"

    assert len(fake.minted) == 1
    token = fake.minted[0].token
    assert [(r.method, r.path, r.auth) for r in fake.requests] == [
        ("GET", "/repos/octo/app/installation", "bearer"),  # the app's JWT (verified by the fake)
        ("POST", "/app/installations/77/access_tokens", "bearer"),
        ("GET", "/repos/octo/app/pulls/5", "token"),
        ("GET", "/repos/octo/app/pulls/5", "token"),
        ("GET", "/repos/octo/app/contents/k8s-ee.yaml", "token"),
    ]
    assert {r.credential for r in fake.requests if r.auth == "token"} == {token}


def test_app_renews_the_token_when_it_expires(fake: FakeGitHub, app_key: tuple[str, str]) -> None:
    private_key, public_key = app_key
    fake.enable_app("4242", public_key)
    fake.install_app("octo", 77)
    fake.add_pull(REPO, 5)
    # PyGithub renews a token 20 s before it expires (GitHub writes whole seconds): this one is
    # good for two to three seconds more.
    fake.token_lifetime = timedelta(seconds=23)
    host = app_host(fake, private_key)

    host.change(REPO, 5)
    host.change(REPO, 5)
    assert len(fake.minted) == 1
    time.sleep(3.1)
    host.change(REPO, 5)

    assert len(fake.minted) == 2
    used = [r.credential for r in fake.requests if r.path == "/repos/octo/app/pulls/5"]
    assert used == [fake.minted[0].token, fake.minted[0].token, fake.minted[1].token]
    # The installation is looked up once per repository, not per token.
    assert fake.calls().count(("GET", "/repos/octo/app/installation")) == 1


def test_app_installation_is_cached_per_repository(fake: FakeGitHub, app_key: tuple[str, str]) -> None:
    private_key, public_key = app_key
    fake.enable_app("4242", public_key)
    fake.install_app("octo", 77)
    fake.add_repo("octo/other")
    fake.add_pull(REPO, 1)
    fake.add_pull("octo/other", 2)
    host = app_host(fake, private_key)

    for _ in range(2):
        host.change(REPO, 1)
        host.change("octo/other", 2)

    assert fake.calls().count(("GET", "/repos/octo/app/installation")) == 1
    assert fake.calls().count(("GET", "/repos/octo/other/installation")) == 1
    assert len(fake.minted) == 1  # one installation, one token


def test_app_not_installed(fake: FakeGitHub, app_key: tuple[str, str]) -> None:
    private_key, public_key = app_key
    fake.enable_app("4242", public_key)
    fake.add_pull(REPO, 5)
    host = app_host(fake, private_key)

    with pytest.raises(NotFound, match="not installed"):
        host.change(REPO, 5)
    assert fake.minted == []


def test_app_uninstalled_after_caching_is_looked_up_again(fake: FakeGitHub, app_key: tuple[str, str]) -> None:
    private_key, public_key = app_key
    fake.enable_app("4242", public_key)
    fake.install_app("octo", 77)
    fake.add_pull(REPO, 5)
    host = app_host(fake, private_key)
    host.change(REPO, 5)

    fake.uninstall_app("octo")  # revokes the cached token
    with pytest.raises(NotFound, match="not installed"):
        host.change(REPO, 5)

    fake.install_app("octo", 78)
    assert host.change(REPO, 5).state == "open"
    assert [minted.installation_id for minted in fake.minted] == [77, 78]


def test_app_signed_with_the_wrong_key_is_refused(fake: FakeGitHub, app_key: tuple[str, str]) -> None:
    _, public_key = app_key
    other_private_key, _ = app_key_pair()
    fake.enable_app("4242", public_key)
    fake.install_app("octo", 77)
    fake.add_pull(REPO, 5)

    with pytest.raises(HostUnavailable, match="rejected the credentials") as raised:
        app_host(fake, other_private_key).change(REPO, 5)
    assert "K8S_EE_GITHUB_APP_PRIVATE_KEY" in str(raised.value)
    assert "PRIVATE KEY" not in "".join(traceback.format_exception(raised.value))
    assert fake.minted == []


def test_app_private_key_from_a_file(fake: FakeGitHub, app_key: tuple[str, str], tmp_path: Path) -> None:
    private_key, public_key = app_key
    key_file = tmp_path / "app.pem"
    key_file.write_text(private_key)
    fake.enable_app("4242", public_key)
    fake.install_app("octo", 77)
    fake.add_pull(REPO, 5)

    assert app_host(fake, str(key_file)).change(REPO, 5).state == "open"


def test_app_private_key_with_escaped_newlines(fake: FakeGitHub, app_key: tuple[str, str]) -> None:
    private_key, public_key = app_key
    fake.enable_app("4242", public_key)
    fake.install_app("octo", 77)
    fake.add_pull(REPO, 5)

    assert app_host(fake, private_key.strip().replace("\n", "\\n")).change(REPO, 5).state == "open"


# -- settings and wiring ------------------------------------------------------------------------


def test_settings_refuse_half_an_app_and_never_echo_the_key() -> None:
    with pytest.raises(SettingsError, match="must be set together"):
        load_host_settings(github_app_id="1")
    with pytest.raises(SettingsError) as raised:
        load_host_settings(github_app_id="1", github_app_private_key="not-a-key-secret-material")
    assert "K8S_EE_GITHUB_APP_PRIVATE_KEY" in str(raised.value)
    assert "secret-material" not in str(raised.value)
    with pytest.raises(SettingsError, match="K8S_EE_GITHUB_API_URL"):
        load_host_settings(github_api_url="ftp://example.com")


def test_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("K8S_EE_GITHUB_TOKEN", TOKEN)
    monkeypatch.setenv("K8S_EE_GITHUB_API_URL", "https://ghe.example.com/api/v3/")
    settings = HostSettings()
    assert settings.github_api_url == "https://ghe.example.com/api/v3"
    assert settings.github_token is not None
    assert TOKEN not in repr(settings)


def test_build_hosts_only_for_configured_providers() -> None:
    assert build_hosts(load_host_settings()) == {}
    hosts = build_hosts(load_host_settings(github_token=TOKEN))
    assert list(hosts) == [Provider.GITHUB]
    assert hosts[Provider.GITHUB].provider is Provider.GITHUB


def test_web_process_never_imports_the_sdks() -> None:
    code = (
        "import sys, gateway.app, gateway.cli\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] in ('github', 'gitlab', 'atlassian', 'kubernetes')"
        " or m == 'providers.hosts' or m.startswith('providers.hosts.')]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


# -- the fake itself, through PyGithub ----------------------------------------------------------


def test_fake_paginates_with_link_headers(fake: FakeGitHub) -> None:
    for number in range(1, 6):
        fake.add_pull(REPO, number, state="open" if number % 2 else "closed")
    client = Github(base_url=fake.url, auth=Auth.Token(TOKEN), per_page=2, seconds_between_requests=None)

    numbers = [pull.number for pull in client.get_repo(REPO).get_pulls(state="all")]

    assert numbers == [5, 4, 3, 2, 1]
    assert [r.query.get("page", "1") for r in fake.requests[1:]] == ["1", "2", "3"]
    assert fake.requests[2].query == {"state": "all", "per_page": "2", "page": "2"}
    client.close()


def test_fake_sends_rate_limit_headers(fake: FakeGitHub) -> None:
    client = Github(base_url=fake.url, auth=Auth.Token(TOKEN), seconds_between_requests=None)
    client.get_repo(REPO)
    remaining, limit = client.rate_limiting
    assert (remaining, limit) == (4999, 5000)
    assert client.rate_limiting_resettime > time.time()
    client.close()


def test_first_commit_at_is_the_earliest_author_date(fake: FakeGitHub) -> None:
    start = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)
    # 40 commits (two pages of 30), and a rebased one on the second page whose author date is
    # the earliest.
    commits = [(fake_sha(f"c{i}"), start + timedelta(hours=i)) for i in range(40)]
    commits[35] = (commits[35][0], start - timedelta(days=2))
    fake.add_pull(REPO, 7, commits=commits)
    fake.add_pull(REPO, 8)
    host = host_for(fake)
    assert host.first_commit_at(REPO, 7) == start - timedelta(days=2)
    assert host.first_commit_at(REPO, 8) == fake.repos[REPO].pulls[8].created_at
    with pytest.raises(NotFound):
        host.first_commit_at(REPO, 9)
