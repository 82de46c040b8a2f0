"""The policy's part of the lifecycle: hibernation and wake, the wake route, activity."""

from __future__ import annotations

from datetime import timedelta

from handlers.policy import app_ready, decide, is_activity
from providers.events import EventSource, EventType
from tests.handlers.test_policy import RULES, T0, event, run


def test_hibernating_routes_the_host_to_the_wake_service_and_records_who_asked() -> None:
    desired, reasons = run(
        event(EventType.CHANGE_OPENED), event(EventType.ENV_HIBERNATE, 60, source=EventSource.IDLE)
    )
    assert desired is not None and desired.hibernated and desired.wake_route
    assert desired.hibernated_by == "idle" and reasons[-1] == "env.hibernate"


def test_a_wake_keeps_the_wake_route_until_the_app_is_ready() -> None:
    desired, _ = run(
        event(EventType.CHANGE_OPENED), event(EventType.ENV_HIBERNATE, 60), event(EventType.ENV_WAKE, 70)
    )
    assert desired is not None and not desired.hibernated and desired.wake_route
    ready = app_ready(desired, T0 + timedelta(minutes=71))
    assert ready is not None and not ready.wake_route and not ready.hibernated
    # Nothing to route back: an awake one, or one asleep again.
    assert app_ready(ready, T0 + timedelta(minutes=72)) is None
    asleep, _ = run(event(EventType.CHANGE_OPENED), event(EventType.ENV_HIBERNATE, 60))
    assert asleep is not None and app_ready(asleep, T0 + timedelta(minutes=61)) is None


def test_new_commits_wake_it_and_an_old_redelivery_does_not() -> None:
    asleep, _ = run(event(EventType.CHANGE_OPENED), event(EventType.ENV_HIBERNATE, 60))
    assert asleep is not None
    pushed = decide(asleep, event(EventType.CHANGE_UPDATED, 61, head_sha="b" * 40), RULES)
    assert pushed.desired is not None and not pushed.desired.hibernated and pushed.reconcile
    # The same update, redelivered from before the hibernation: it sleeps on.
    old = decide(asleep, event(EventType.CHANGE_UPDATED, 30, head_sha="b" * 40), RULES)
    assert old.desired is None or old.desired.hibernated
    push = decide(asleep, event(EventType.PUSH, 62, number=None), RULES)
    assert push.desired is not None and not push.desired.hibernated


def test_the_idle_check_does_not_hibernate_what_was_used_after_its_deadline() -> None:
    opened, _ = run(event(EventType.CHANGE_OPENED, 100))
    assert opened is not None
    # Its deadline (occurred_at) is before the last event it saw: someone used it since.
    late = event(EventType.ENV_HIBERNATE, 50, source=EventSource.IDLE)
    decision = decide(opened, late, RULES)
    assert decision.desired is None and "used since" in decision.reason
    # An explicit hibernation is not second-guessed.
    asked = event(EventType.ENV_HIBERNATE, 150, source=EventSource.API)
    assert decide(opened, asked, RULES).desired is not None


def test_a_destroyed_environment_comes_back_awake() -> None:
    desired, _ = run(
        event(EventType.CHANGE_OPENED),
        event(EventType.ENV_HIBERNATE, 60),
        event(EventType.CHANGE_CLOSED, 70),
        event(EventType.CHANGE_REOPENED, 80),
    )
    assert desired is not None and desired.action == "deploy"
    assert not desired.hibernated and not desired.wake_route


def test_what_counts_as_activity() -> None:
    assert is_activity(event(EventType.PUSH, number=None))
    assert is_activity(event(EventType.COMMENT_CREATED))
    assert is_activity(event(EventType.ENV_WAKE, source=EventSource.VISIT))
    assert is_activity(event(EventType.ENV_HIBERNATE, source=EventSource.API))
    assert is_activity(event(EventType.CHANGE_UPDATED, source=EventSource.RESYNC))
    # The platform's own doing is not, and neither is closing a change.
    assert not is_activity(event(EventType.ENV_HIBERNATE, source=EventSource.IDLE))
    assert not is_activity(event(EventType.ENV_DESTROY, source=EventSource.SWEEP))
    assert not is_activity(event(EventType.CHANGE_CLOSED))
