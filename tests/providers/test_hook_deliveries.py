"""The hosts' delivery logs through the real SDKs: GitHub's hook deliveries (cursor pages) and redelivery, GitLab's
hook events and resend; exactly the deliveries no attempt delivered are sent again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from providers.events import Provider
from providers.hosts.base import HostError
from providers.hosts.hooks import EVENTS, HookScope, unanswered
from tests.fakes.fakehosts.github import app_key_pair
from tests.support.hook_hosts import hooked

URL = "https://gateway.example.com/webhooks/x"


def since(hours: float = 72) -> datetime:
    return datetime.now(UTC) - timedelta(hours=hours)


@pytest.mark.parametrize("kind", ["repository", "group"])
def test_github_redelivers_exactly_the_deliveries_no_attempt_delivered(kind: str) -> None:
    with hooked(Provider.GITHUB) as hosted:
        where = hosted.where(kind)
        hook = hosted.add_hook(URL, kind)
        now = datetime.now(UTC).replace(microsecond=0)
        add = hosted.fake.add_delivery
        add(where, hook.id, 502, guid="recovered", delivered_at=now - timedelta(hours=5))
        add(where, hook.id, 202, guid="recovered", delivered_at=now - timedelta(hours=4), redelivery=True)
        add(where, hook.id, 500, guid="failed-twice", delivered_at=now - timedelta(hours=3))
        last = add(
            where, hook.id, 0, guid="failed-twice", delivered_at=now - timedelta(hours=2), redelivery=True
        )
        add(where, hook.id, 401, guid="refused", delivered_at=now - timedelta(hours=1))
        add(where, hook.id, 500, guid="too-old", delivered_at=now - timedelta(hours=80))
        for n in range(150):  # more than a page: the cursor is followed
            add(where, hook.id, 200, guid=f"ok-{n}", delivered_at=now - timedelta(minutes=30, seconds=n))
        host = hosted.host()
        scope = hosted.scope(kind)
        [ours] = host.list_hooks(scope)

        attempts = host.hook_attempts(scope, ours, since())
        missed = unanswered(attempts)

        assert len(attempts) == 155  # everything since the cutoff, not the older one
        assert [a.delivery for a in missed] == ["failed-twice", "refused"]
        assert missed[0].id == str(last.id), "the latest attempt of a delivery is the one redelivered"
        assert any("cursor" in r.query for r in hosted.fake.requests), "deliveries are paged by cursor"
        for attempt in missed:
            host.redeliver(scope, ours, attempt)
        again = [
            d for d in hosted.fake.hooks_of(where)[0].deliveries if d.redelivery and d.guid != "recovered"
        ]
        assert sorted(d.guid for d in again) == ["failed-twice", "failed-twice", "refused"]
        assert unanswered(host.hook_attempts(scope, ours, since())) == []


def test_the_github_apps_deliveries_are_read_and_redelivered_with_its_jwt() -> None:
    private, public = app_key_pair()
    with hooked(Provider.GITHUB) as hosted:
        hosted.fake.enable_app("4242", public)
        hosted.fake.app_hook.hooks[0].config["url"] = URL
        hosted.fake.add_delivery("app", 0, 503, guid="app-missed")
        hosted.fake.add_delivery("app", 0, 200, guid="app-ok")
        host = hosted.host(github_token=None, github_app_id="4242", github_app_private_key=private)
        scope = HookScope(kind="app")
        [ours] = host.list_hooks(scope)

        [missed] = unanswered(host.hook_attempts(scope, ours, since()))
        host.redeliver(scope, ours, missed)

        assert missed.delivery == "app-missed"
        assert hosted.fake.app_hook.hooks[0].deliveries[-1].guid == "app-missed"
        assert hosted.fake.app_hook.hooks[0].deliveries[-1].redelivery is True


def test_gitlab_resends_exactly_the_events_no_attempt_delivered() -> None:
    with hooked(Provider.GITLAB) as hosted:
        hook = hosted.add_hook(URL, flags=EVENTS[Provider.GITLAB])
        statuses = iter([500, 200, None, 200, 500])
        hosted.fake.receiver = lambda url, headers, body: next(statuses)
        failed_then_fine = hosted.fake.deliver(hosted.repository, hook.id)  # 500
        host = hosted.host()
        scope = hosted.scope()
        [ours] = host.list_hooks(scope)
        # The first one's resend succeeds (200); then one is never answered (None); one is fine.
        host.redeliver(scope, ours, unanswered(host.hook_attempts(scope, ours, since()))[0])
        lost = hosted.fake.deliver(hosted.repository, hook.id)  # None
        hosted.fake.deliver(hosted.repository, hook.id)  # 200
        hosted.fake.deliver(hosted.repository, hook.id, when=datetime.now(UTC) - timedelta(days=4))  # too old

        attempts = host.hook_attempts(scope, ours, since())
        [missed] = unanswered(attempts)

        assert len(attempts) == 4
        assert missed.id == str(lost.id) and missed.status is None
        resent = [
            log
            for log in hook.logs
            if log.request_headers["Idempotency-Key"] == failed_then_fine.request_headers["Idempotency-Key"]
        ]
        assert [log.response_status for log in resent] == ["500", "200"], "a resend keeps the Idempotency-Key"


def test_gitlab_resends_wait_out_the_per_hook_rate_limit() -> None:
    with hooked(Provider.GITLAB) as hosted:
        hosted.fake.resend_limit, hosted.fake.resend_window = 2, 1.0
        hook = hosted.add_hook(URL, flags=EVENTS[Provider.GITLAB])
        hosted.fake.receiver = lambda url, headers, body: 500
        for _ in range(3):
            hosted.fake.deliver(hosted.repository, hook.id)
        hosted.fake.receiver = lambda url, headers, body: 200
        host = hosted.host(host_max_retry_wait=5)
        scope = hosted.scope()
        [ours] = host.list_hooks(scope)

        for attempt in unanswered(host.hook_attempts(scope, ours, since())):
            host.redeliver(scope, ours, attempt)

        resends = [r for r in hosted.fake.requests if r.path.endswith("/resend")]
        assert len(resends) == 4, "the third was refused with 429, waited out, and sent again"
        assert resends[3].at - resends[2].at >= 0.9
        assert unanswered(host.hook_attempts(scope, ours, since())) == []


def test_gitlab_refuses_to_resend_to_a_disabled_hook() -> None:
    with hooked(Provider.GITLAB) as hosted:
        hook = hosted.add_hook(URL, flags=EVENTS[Provider.GITLAB])
        hosted.fake.receiver = lambda url, headers, body: 500
        for _ in range(4):
            hosted.fake.deliver(hosted.repository, hook.id)
        host = hosted.host()
        scope = hosted.scope()
        [ours] = host.list_hooks(scope)
        assert ours.disabled is not None and ours.disabled.startswith("temporarily disabled until")

        with pytest.raises(HostError, match="Hook disabled"):
            host.redeliver(scope, ours, unanswered(host.hook_attempts(scope, ours, since()))[0])
