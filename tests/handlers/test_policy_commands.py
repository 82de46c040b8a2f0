"""What each command means for an environment, and the rule for forks: only approved commits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from handlers.commands import Command, Name
from handlers.desired import Desired
from handlers.policy import (
    Head,
    Request,
    Rules,
    decide,
    decide_command,
    deploy_commit,
    fork_note,
    gate,
)
from providers.events import Comment, EventType, LifecycleEvent, Provider

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
A, B = "a" * 40, "b" * 40


def event(kind: EventType = EventType.COMMENT_CREATED, minute: int = 0, **fields: Any) -> LifecycleEvent:
    values: dict[str, Any] = {
        "provider": Provider.GITHUB,
        "delivery_id": f"d-{kind.value}-{minute}",
        "type": kind,
        "repository": "acme/web",
        "number": 7,
        "occurred_at": T0 + timedelta(minutes=minute),
        "received_at": T0 + timedelta(minutes=minute, seconds=1),
    }
    if kind == EventType.COMMENT_CREATED:
        values["comment"] = Comment(id="1", body="/x", author="maintainer")
    else:
        values |= {"head_sha": A, "head_ref": "feature"}
    values.update(fields)
    return LifecycleEvent(**values)


def head(sha: str = A, **fields: Any) -> Head:
    values: dict[str, Any] = {
        "sha": sha,
        "ref": "feature",
        "base_ref": "main",
        "fork": False,
        "draft": False,
        "open": True,
    }
    values.update(fields)
    return Head(**values)


def command(current: Desired | None, cmd: Command, h: Head | None = None, minutes: int = 0) -> Any:
    request = Request(command=cmd, actor="maintainer", head=h, now=T0 + timedelta(minutes=minutes))
    return decide_command(current, request, event(minute=minutes), Rules())


def opened(**fields: Any) -> Desired:
    decision = decide(None, event(EventType.CHANGE_OPENED, **fields), Rules())
    assert decision.desired is not None
    return decision.desired


def test_deploy_preview_approves_a_forks_head_as_read_and_only_that() -> None:
    fork = opened(fork=True)
    assert fork.action == "none" and "fork" in (fork.reason or "")
    decision = command(fork, Command(Name.DEPLOY), head(A, fork=True))
    assert decision.desired is not None and decision.desired.action == "deploy"
    approved = decision.desired
    assert approved.approved_sha == A and approved.approved_by == "maintainer"
    assert deploy_commit(approved) == A
    # A later push: still deployed, but at the approved commit, and the note says why.
    pushed = decide(approved, event(EventType.CHANGE_UPDATED, 5, fork=True, head_sha=B), Rules()).desired
    assert pushed is not None and pushed.head_sha == B
    assert deploy_commit(pushed) == A
    note = fork_note(pushed) or ""
    assert A[:12] in note and B[:12] in note and "/deploy-preview" in note


def test_deploy_preview_with_a_sha_that_is_no_longer_the_head_is_refused() -> None:
    fork = opened(fork=True)
    decision = command(fork, Command(Name.DEPLOY, sha=A[:12]), head(B, fork=True))
    assert decision.desired is None and "no longer the head" in decision.reason and B[:12] in decision.reason
    decision = command(fork, Command(Name.DEPLOY, sha=B[:9]), head(B, fork=True))
    assert decision.desired is not None and decision.desired.approved_sha == B


def test_deploy_preview_deploys_a_draft_and_keeps_deploying_its_pushes() -> None:
    draft = opened(draft=True)
    assert draft.action == "none"
    deployed = command(draft, Command(Name.DEPLOY), head(A, draft=True)).desired
    assert deployed is not None and deployed.action == "deploy" and deployed.draft
    pushed = decide(deployed, event(EventType.CHANGE_UPDATED, 5, draft=True, head_sha=B), Rules()).desired
    assert pushed is not None and pushed.action == "deploy" and deploy_commit(pushed) == B


def test_deploy_preview_on_a_closed_change_is_refused() -> None:
    decision = command(opened(), Command(Name.DEPLOY), head(A, open=False))
    assert decision.desired is None and "closed" in decision.reason


def test_the_hosts_word_that_a_change_is_a_fork_stops_an_unapproved_deploy() -> None:
    # A comment-created environment first thought not to be a fork.
    want = opened().model_copy(update={"fork": True})
    assert gate(want).action == "none"
    approved = want.model_copy(update={"approved_sha": A})
    assert gate(approved).action == "deploy"


def test_destroy_preview_refuses_while_preserved() -> None:
    current = opened()
    preserved = command(current, Command(Name.PRESERVE, hours=2)).desired
    assert preserved is not None and preserved.preserved_until == T0 + timedelta(hours=2)
    refused = command(preserved, Command(Name.DESTROY))
    assert refused.desired is None and "/unpreserve" in refused.reason
    # Once the preservation has passed, it may go.
    later = command(preserved, Command(Name.DESTROY), minutes=121)
    assert later.desired is not None and later.desired.action == "destroy"


def test_preserve_default_renewal_and_unpreserve() -> None:
    current = opened()
    first = command(current, Command(Name.PRESERVE)).desired
    assert first is not None and first.preserved_until == T0 + timedelta(hours=48)
    renewed = command(first, Command(Name.PRESERVE), minutes=60).desired
    assert renewed is not None and renewed.preserved_until == T0 + timedelta(hours=49)
    cleared = command(renewed, Command(Name.UNPRESERVE)).desired
    assert cleared is not None and cleared.preserved_until is None
    assert command(cleared, Command(Name.UNPRESERVE)).desired is None
    assert command(None, Command(Name.PRESERVE)).desired is None


def test_a_closed_preserved_environment_can_be_renewed_and_unpreserved() -> None:
    preserved = command(opened(), Command(Name.PRESERVE)).desired
    closed = decide(preserved, event(EventType.CHANGE_CLOSED, 5), Rules()).desired
    assert closed is not None and closed.action == "destroy" and closed.preserved(T0)
    renewed = command(closed, Command(Name.PRESERVE, hours=1), minutes=10).desired
    assert renewed is not None and renewed.preserved_until == T0 + timedelta(minutes=70)
    gone = command(renewed, Command(Name.UNPRESERVE), minutes=11)
    assert gone.desired is not None and "closed" in gone.reason


def test_wake_preview_maps_onto_wake() -> None:
    hibernated = opened().model_copy(update={"action": "deploy", "hibernated": True})
    woken = command(hibernated, Command(Name.WAKE)).desired
    assert woken is not None and not woken.hibernated
    assert command(woken, Command(Name.WAKE)).desired is None
