"""The gateway's hook on the four hosts, through the real SDKs against the fake hosts: ensure finds it on any
page, updates it, removes duplicates, re-enables what GitLab disabled, and ten runs at once leave one."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr

from providers.events import Provider
from providers.hosts.hooks import (
    EVENTS,
    HookAttempt,
    HookScope,
    HookSpec,
    ensure,
    normalise_url,
    same_url,
    unanswered,
)
from tests.fakes.fakehosts.github import app_key_pair
from tests.support.hook_hosts import HOOK_PROVIDERS, HookedHost, hooked

URL = "https://gateway.example.com/webhooks/hooked"
SECRET = "hook-secret-0123456789"


@pytest.fixture(params=HOOK_PROVIDERS, ids=lambda p: p.value)
def hosted(request: pytest.FixtureRequest) -> Iterator[HookedHost]:
    with hooked(request.param) as found:
        yield found


def spec(provider: Provider, url: str = URL, secret: str = SECRET) -> HookSpec:
    return HookSpec(url=url, events=EVENTS[provider], secret=SecretStr(secret))


# -- pure ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("https://GW.example.com/webhooks/github", "https://gw.example.com/webhooks/github/", True),
        ("https://gw.example.com:443/webhooks/github", "https://gw.example.com/webhooks/github", True),
        ("http://gw.example.com:80/x", "http://gw.example.com/x", True),
        ("https://gw.example.com/web%68ooks", "https://gw.example.com/webhooks", True),
        ("https://gw.example.com/webhooks/github#frag", "https://gw.example.com/webhooks/github", True),
        ("https://gw.example.com:8443/webhooks/github", "https://gw.example.com/webhooks/github", False),
        ("http://gw.example.com/webhooks/github", "https://gw.example.com/webhooks/github", False),
        ("https://gw.example.com/webhooks/GitHub", "https://gw.example.com/webhooks/github", False),
        ("https://gw.example.com/webhooks/github?a=1", "https://gw.example.com/webhooks/github", False),
    ],
)
def test_hooks_match_on_the_normalised_url(a: str, b: str, same: bool) -> None:
    assert same_url(a, b) is same
    assert (normalise_url(a) == normalise_url(b)) is same


def test_unanswered_picks_the_latest_attempt_of_each_delivery_never_delivered() -> None:
    t = datetime(2026, 11, 1, tzinfo=UTC)

    def attempt(id: str, delivery: str, minute: int, status: int | None) -> HookAttempt:
        return HookAttempt(id=id, delivery=delivery, at=t + timedelta(minutes=minute), status=status)

    found = unanswered(
        [
            attempt("1", "a", 0, 500),
            attempt("2", "a", 5, 202),  # redelivered with success: done
            attempt("3", "b", 1, 502),
            attempt("4", "b", 9, None),  # no answer at all
            attempt("5", "c", 2, 200),
            attempt("6", "d", 3, 401),
        ]
    )
    assert [a.id for a in found] == ["6", "4"]  # oldest delivery first, its latest attempt


# -- ensure ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["repository", "group"])
def test_ensure_creates_the_hook_once_and_is_idempotent(hosted: HookedHost, kind: str) -> None:
    host = hosted.host()
    scope = hosted.scope(kind)

    first = ensure(host, scope, spec(hosted.provider))
    assert first.action == "created" and first.ok
    [hook] = hosted.hooks(kind)
    assert hosted.url_of(hook) == URL
    assert hosted.events_of(hook) == set(EVENTS[hosted.provider])
    assert hosted.secret_of(hook) == SECRET

    hosted.fake.reset_requests()
    second = ensure(host, scope, spec(hosted.provider))
    assert second.action == "unchanged" and second.hook is not None and second.hook.id == first.hook.id  # type: ignore[union-attr]
    assert len(hosted.hooks(kind)) == 1
    assert not [call for call in hosted.fake.writes() if call[0] == "POST"], "a second run creates nothing"
    # The secret is sent, never shown.
    assert SECRET not in first.model_dump_json() + second.model_dump_json()


def test_ensure_finds_the_hook_past_the_first_page_and_updates_it(hosted: HookedHost) -> None:
    for n in range(130):
        hosted.add_hook(f"https://other-{n}.example.com/hook")
    stale = hosted.add_hook(URL)  # the last one listed: page two
    host = hosted.host()

    result = ensure(host, hosted.scope(), spec(hosted.provider))

    assert (
        result.action == "updated"
        and result.hook is not None
        and result.hook.id == str(getattr(stale, "id", None) or stale.uuid)
    )
    assert any(change.startswith("events") for change in result.changes)
    assert len(hosted.hooks()) == 131
    [ours] = hosted.ours(URL)
    assert hosted.events_of(ours) == set(EVENTS[hosted.provider]) and hosted.secret_of(ours) == SECRET
    pages = [r.query for r in hosted.fake.requests if r.method == "GET" and r.path.endswith("hooks")]
    assert len(pages) >= 2, "every page of hooks is read"


def test_ensure_removes_duplicates_keeping_the_first(hosted: HookedHost) -> None:
    if hosted.provider == Provider.GITHUB:
        pytest.skip("GitHub refuses a second hook for one URL (422): there are no duplicates to remove")
    first = hosted.add_hook(URL)
    hosted.add_hook(
        URL.upper().replace("HTTPS://", "https://").replace("/WEBHOOKS/HOOKED", "/webhooks/hooked/")
    )
    hosted.add_hook(URL + "/")

    result = ensure(hosted.host(), hosted.scope(), spec(hosted.provider))

    [kept] = hosted.ours(URL)
    assert str(getattr(kept, "id", None) or kept.uuid) == str(getattr(first, "id", None) or first.uuid)
    assert len(result.removed) == 2


def test_ten_concurrent_ensure_runs_leave_exactly_one_hook(hosted: HookedHost) -> None:
    # Every create is held a moment, so that all ten runs have listed (and found nothing) before any
    # of them creates: the race the second listing must settle.
    hosted.fake.add_fault(None, times=-1, method="POST", path=r"/hooks$|/webhooks$", delay=0.3)
    hosts = [hosted.host() for _ in range(10)]
    barrier = threading.Barrier(len(hosts))
    results: list[Any] = [None] * len(hosts)

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = ensure(hosts[index], hosted.scope(), spec(hosted.provider))
        except Exception as exc:  # the assertion below names it
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(hosts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert all(not isinstance(r, Exception) for r in results), results
    [hook] = hosted.ours(URL)
    assert hosted.secret_of(hook) == SECRET and hosted.events_of(hook) == set(EVENTS[hosted.provider])
    kept = {r.hook.id for r in results}
    assert kept == {str(getattr(hook, "id", None) or hook.uuid)}, "every run reports the one hook kept"


def test_a_create_that_meets_another_runs_hook_converges_on_it(hosted: HookedHost) -> None:
    """The race made deterministic: another run's hook appears between our listing and our create."""
    hosted.fake.add_fault(None, method="POST", path=r"/hooks$|/webhooks$", delay=0.5)
    host = hosted.host()
    result: list[Any] = []
    thread = threading.Thread(
        target=lambda: result.append(ensure(host, hosted.scope(), spec(hosted.provider)))
    )
    thread.start()
    deadline = time.monotonic() + 10
    while not any(r.method == "POST" for r in hosted.fake.requests) and time.monotonic() < deadline:
        time.sleep(0.01)
    other = hosted.add_hook(URL, **({"events": ["push"]} if hosted.provider == Provider.GITHUB else {}))
    thread.join(30)

    [done] = result
    [hook] = hosted.ours(URL)
    assert str(getattr(hook, "id", None) or hook.uuid) == str(getattr(other, "id", None) or other.uuid)
    assert done.action == "updated" and done.hook.id == str(getattr(other, "id", None) or other.uuid)
    assert hosted.secret_of(hook) == SECRET and hosted.events_of(hook) == set(EVENTS[hosted.provider])
    if hosted.provider == Provider.GITHUB:
        assert any(r.method == "POST" for r in hosted.fake.requests)  # answered 422, then re-listed


def test_dry_run_changes_nothing(hosted: HookedHost) -> None:
    host = hosted.host()
    assert ensure(host, hosted.scope(), spec(hosted.provider), dry_run=True).action == "would create"
    assert hosted.hooks() == []
    hosted.add_hook(URL)
    hosted.fake.reset_requests()
    result = ensure(host, hosted.scope(), spec(hosted.provider), dry_run=True)
    assert result.action == "would update" and result.changes
    assert hosted.fake.writes() == []


def test_an_inactive_hook_is_made_active(hosted: HookedHost) -> None:
    if hosted.provider == Provider.GITLAB:
        pytest.skip("GitLab hooks have no active switch; a disabled one is re-enabled (below)")
    stale = hosted.add_hook(URL)
    stale.active = False
    result = ensure(hosted.host(), hosted.scope(), spec(hosted.provider))
    assert "active false -> true" in result.changes
    assert hosted.ours(URL)[0].active is True


# -- GitLab's disabled hooks ----------------------------------------------------------------------------


@pytest.mark.parametrize(("failures", "said"), [(4, "temporarily disabled until"), (40, "(disabled)")])
def test_a_hook_gitlab_disabled_is_re_enabled_and_said(failures: int, said: str) -> None:
    with hooked(Provider.GITLAB) as hosted:
        hook = hosted.add_hook(URL, flags=EVENTS[Provider.GITLAB], token=SECRET)
        hosted.fake.receiver = lambda url, headers, body: 500
        for _ in range(failures):
            hosted.fake.deliver(hosted.repository, hook.id)
        assert hook.alert_status != "executable"
        hosted.fake.receiver = lambda url, headers, body: 200

        result = ensure(hosted.host(), hosted.scope(), spec(Provider.GITLAB))

        assert result.ok and any(said in note and "re-enabled" in note for note in result.notes), result.notes
        assert hook.alert_status == "executable"
        assert hook.logs[-1].trigger == "push_hooks" and hook.logs[-1].response_status == "200"


def test_a_disabled_hook_that_cannot_be_re_enabled_fails_the_run() -> None:
    with hooked(Provider.GITLAB) as hosted:
        hook = hosted.add_hook(URL, flags=EVENTS[Provider.GITLAB], token=SECRET)
        hosted.fake.receiver = lambda url, headers, body: 503
        for _ in range(5):
            hosted.fake.deliver(hosted.repository, hook.id)

        result = ensure(hosted.host(), hosted.scope(), spec(Provider.GITLAB))

        assert not result.ok and any("re-enabling it failed" in note for note in result.notes)
        assert hook.alert_status != "executable"


def test_an_update_keeps_gitlab_from_clearing_the_token() -> None:
    """GitLab clears the token of a hook whose URL changes without one: the update always sends it."""
    with hooked(Provider.GITLAB) as hosted:
        hook = hosted.add_hook(URL + "/", token="old")
        ensure(hosted.host(), hosted.scope(), spec(Provider.GITLAB))
        assert hook.url == URL and hook.token == SECRET


# -- the GitHub App's own webhook -----------------------------------------------------------------------


def test_the_github_app_webhook_is_configured_and_missing_events_named() -> None:
    private, public = app_key_pair()
    with hooked(Provider.GITHUB) as hosted:
        hosted.fake.enable_app("4242", public)
        host = hosted.host(github_token=None, github_app_id="4242", github_app_private_key=private)
        scope = HookScope(kind="app")

        first = ensure(host, scope, spec(Provider.GITHUB))
        config = hosted.fake.app_hook.hooks[0].config
        assert config["url"] == URL and config["secret"] == SECRET and config["content_type"] == "json"
        # The App always has one webhook; pointing it at the gateway is what creates the gateway's.
        assert first.action == "created"
        [note] = first.notes
        assert "push" in note and "workflow_run" in note and "settings page" in note

        hosted.fake.app_events = list(EVENTS[Provider.GITHUB])
        second = ensure(host, scope, spec(Provider.GITHUB))
        assert second.action == "unchanged" and second.notes == []


# -- rate limits ------------------------------------------------------------------------------------------


def test_a_rate_limited_listing_waits_as_asked() -> None:
    with hooked(Provider.GITLAB) as hosted:
        hosted.fake.add_fault(429, method="GET", path=r"/hooks$", retry_after=1)
        ensure(hosted.host(), hosted.scope(), spec(Provider.GITLAB))
        listings = [r for r in hosted.fake.requests if r.method == "GET" and r.path.endswith("/hooks")]
        assert listings[1].at - listings[0].at >= 0.9


def test_a_secondary_rate_limit_on_create_holds_then_creates_once() -> None:
    with hooked(Provider.GITHUB) as hosted:
        hosted.fake.add_secondary_rate_limit(times=1, retry_after=1, method="POST", path=r"/hooks$")
        result = ensure(hosted.host(), hosted.scope(), spec(Provider.GITHUB))
        posts = [r for r in hosted.fake.requests if r.method == "POST"]
        assert result.action == "created" and len(hosted.hooks()) == 1
        assert len(posts) == 2 and posts[1].at - posts[0].at >= 0.9
