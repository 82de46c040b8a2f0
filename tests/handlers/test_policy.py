"""The policy: what each event means for an environment's desired state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from handlers.desired import Desired
from handlers.policy import Rules, decide
from providers.events import BuildStatus, EventType, LifecycleEvent, Provider

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
RULES = Rules()


def event(kind: EventType, minute: int = 0, **fields: Any) -> LifecycleEvent:
    values: dict[str, Any] = {
        "provider": Provider.GITHUB,
        "delivery_id": f"d-{kind.value}-{minute}",
        "type": kind,
        "repository": "acme/web",
        "number": 7,
        "head_sha": "a" * 40,
        "head_ref": "feature",
        "occurred_at": T0 + timedelta(minutes=minute),
        "received_at": T0 + timedelta(minutes=minute, seconds=1),
    }
    values.update(fields)
    return LifecycleEvent(**values)


def run(*events: LifecycleEvent, rules: Rules = RULES) -> tuple[Desired | None, list[str]]:
    desired: Desired | None = None
    reasons = []
    for e in events:
        decision = decide(desired, e, rules)
        reasons.append(decision.reason)
        if decision.desired is not None:
            desired = decision.desired
    return desired, reasons


def test_open_deploys_the_head() -> None:
    desired, _ = run(event(EventType.CHANGE_OPENED))
    assert desired is not None and desired.action == "deploy" and desired.head_sha == "a" * 40
    assert [d.id for d in desired.deliveries] == ["d-change.opened-0"]


def test_drafts_wait_for_ready_unless_configured() -> None:
    desired, reasons = run(event(EventType.CHANGE_OPENED, draft=True))
    assert desired is not None and desired.action == "none" and "draft" in reasons[0]
    desired, _ = run(event(EventType.CHANGE_OPENED, draft=True), event(EventType.CHANGE_READY, 1))
    assert desired is not None and desired.action == "deploy"
    desired, _ = run(event(EventType.CHANGE_OPENED, draft=True), rules=Rules(deploy_drafts=True))
    assert desired is not None and desired.action == "deploy"


def test_forks_are_never_deployed_without_an_approval() -> None:
    desired, reasons = run(event(EventType.CHANGE_OPENED, fork=True))
    assert desired is not None and desired.action == "none" and "fork" in reasons[0]
    # Marking it ready, or a push, is no approval either.
    desired, _ = run(
        event(EventType.CHANGE_OPENED, fork=True, draft=True),
        event(EventType.CHANGE_READY, 1, fork=True),
        event(EventType.CHANGE_UPDATED, 2, fork=True, head_sha="b" * 40),
        rules=Rules(deploy_drafts=True),
    )
    assert desired is not None and desired.action == "none"


def test_last_head_wins_and_older_updates_do_not_overwrite() -> None:
    desired, reasons = run(
        event(EventType.CHANGE_OPENED, 0),
        event(EventType.CHANGE_UPDATED, 5, head_sha="c" * 40),
        # Delivered late: happened before the update above.
        event(EventType.CHANGE_UPDATED, 3, head_sha="b" * 40),
    )
    assert desired is not None and desired.head_sha == "c" * 40
    assert "older" in reasons[2]


def test_close_destroys_and_late_updates_do_not_resurrect() -> None:
    desired, reasons = run(
        event(EventType.CHANGE_OPENED, 0),
        event(EventType.CHANGE_CLOSED, 10, merged=True),
        event(EventType.CHANGE_UPDATED, 5, head_sha="b" * 40),
        event(EventType.CHANGE_OPENED, 0),
    )
    assert desired is not None and desired.action == "destroy" and desired.closed
    assert "closed" in reasons[2] and "closed" in reasons[3]


def test_a_real_reopen_brings_it_back_but_an_old_one_does_not() -> None:
    desired, _ = run(
        event(EventType.CHANGE_OPENED, 0),
        event(EventType.CHANGE_CLOSED, 10),
        event(EventType.CHANGE_REOPENED, 20),
    )
    assert desired is not None and desired.action == "deploy" and not desired.closed
    desired, reasons = run(
        event(EventType.CHANGE_OPENED, 0),
        event(EventType.CHANGE_CLOSED, 10),
        event(EventType.CHANGE_REOPENED, 5),
    )
    assert desired is not None and desired.action == "destroy"
    assert "older than the close" in reasons[2]


def test_close_of_an_unknown_change_leaves_a_tombstone_without_a_reconcile() -> None:
    decision = decide(None, event(EventType.CHANGE_CLOSED), RULES)
    assert decision.desired is not None and decision.desired.action == "destroy"
    assert decision.desired.closed and not decision.reconcile
    # The open that arrives after it (it happened before) deploys nothing.
    late = decide(decision.desired, event(EventType.CHANGE_OPENED, -5), RULES)
    assert late.desired is None or late.desired.action == "destroy"
    assert not late.reconcile and "closed" in late.reason


def test_successful_build_of_the_head_rolls_out_once() -> None:
    build = event(EventType.BUILD_COMPLETED, 2, build_status=BuildStatus.SUCCESS, head_sha="a" * 12)
    desired, reasons = run(event(EventType.CHANGE_OPENED), build, build)
    assert desired is not None and desired.built_sha == "a" * 12
    assert "already" in reasons[2]
    old = event(EventType.BUILD_COMPLETED, 3, build_status=BuildStatus.SUCCESS, head_sha="f" * 40)
    failed = event(EventType.BUILD_COMPLETED, 3, build_status=BuildStatus.FAILURE)
    desired, reasons = run(event(EventType.CHANGE_OPENED), old, failed)
    assert desired is not None and desired.built_sha is None
    assert "head" in reasons[1] and "failure" in reasons[2]


def test_generic_deploy_is_explicit_and_carries_image_and_config() -> None:
    config = {"projectId": "web"}
    desired, _ = run(
        event(
            EventType.ENV_DEPLOY, provider=Provider.GENERIC, image="registry/web:1", config=config, fork=True
        )
    )
    assert desired is not None and desired.action == "deploy" and desired.requested
    assert desired.image == "registry/web:1" and desired.config == config


def test_destroy_request_then_deploy_request() -> None:
    desired, _ = run(event(EventType.ENV_DEPLOY, 0), event(EventType.ENV_DESTROY, 1))
    assert desired is not None and desired.action == "destroy" and not desired.closed
    desired, _ = run(
        event(EventType.ENV_DEPLOY, 0), event(EventType.ENV_DESTROY, 1), event(EventType.ENV_DEPLOY, 2)
    )
    assert desired is not None and desired.action == "deploy"


def test_hibernate_wake_and_push_wakes() -> None:
    desired, _ = run(event(EventType.CHANGE_OPENED), event(EventType.ENV_HIBERNATE, 1))
    assert desired is not None and desired.hibernated
    woken = decide(desired, event(EventType.PUSH, 2, number=None), RULES)
    assert woken.reconcile and woken.desired is not None and not woken.desired.hibernated
    desired, reasons = run(event(EventType.CHANGE_OPENED), event(EventType.ENV_WAKE, 1))
    assert "already awake" in reasons[1]


def test_activity_is_recorded_without_a_reconcile() -> None:
    desired, _ = run(event(EventType.CHANGE_OPENED))
    decision = decide(desired, event(EventType.COMMENT_CREATED, 4), RULES)
    assert not decision.reconcile and decision.desired is not None
    assert decision.desired.updated_at == T0 + timedelta(minutes=4, seconds=1)
