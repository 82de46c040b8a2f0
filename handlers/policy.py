"""What an event means for an environment. The one place that decides it.

Pure: `decide(current, event, rules)` returns the next desired state and whether
the cluster needs a reconcile, or says why nothing changes. Ordering comes from
the payloads' own timestamps; the reconcile later checks the provider itself
where it can (the webhook is a doorbell, the provider is the truth).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from handlers.desired import Desired
from providers.events import BuildStatus, EventType, LifecycleEvent

# Deliveries remembered per environment between two reconciles (for the delivery log's links).
MAX_PENDING_DELIVERIES = 50

DEPLOYING = {
    EventType.CHANGE_OPENED,
    EventType.CHANGE_REOPENED,
    EventType.CHANGE_UPDATED,
    EventType.CHANGE_READY,
    EventType.ENV_DEPLOY,
}
# Only these may bring back an environment whose change was closed.
REOPENING = {EventType.CHANGE_REOPENED, EventType.ENV_DEPLOY}


@dataclass(frozen=True, slots=True)
class Rules:
    deploy_drafts: bool = False
    deploy_forks: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    desired: Desired | None
    # The cluster must be brought to `desired`.
    reconcile: bool
    reason: str


def same_commit(a: str | None, b: str | None) -> bool:
    """Bitbucket Cloud abbreviates hashes: a prefix of a full SHA is that SHA."""
    return bool(a and b and (a.startswith(b) or b.startswith(a)))


def _older(moment: datetime | None, than: datetime | None) -> bool:
    return moment is not None and than is not None and moment < than


def _new(event: LifecycleEvent) -> Desired:
    assert event.number is not None
    return Desired(provider=event.provider, repository=event.repository, number=event.number)


def _touch(desired: Desired, event: LifecycleEvent) -> Desired:
    deliveries = [*desired.deliveries, event.delivery_id][-MAX_PENDING_DELIVERIES:]
    return desired.model_copy(update={"deliveries": deliveries, "updated_at": event.received_at})


def _deploy_action(desired: Desired, rules: Rules, explicit: bool) -> tuple[str, str | None]:
    if explicit:
        return "deploy", None
    if desired.draft and not rules.deploy_drafts:
        return "none", "the change is a draft (drafts deploy when K8S_EE_DEPLOY_DRAFTS=true)"
    if desired.fork and not rules.deploy_forks:
        return "none", "the change comes from a fork (forks deploy when K8S_EE_DEPLOY_FORKS=true)"
    return "deploy", None


def decide(current: Desired | None, event: LifecycleEvent, rules: Rules) -> Decision:
    """The next desired state of the environment `event` concerns (event.number must be set)."""
    desired = current or _new(event)
    kind = event.type

    if kind in DEPLOYING:
        if desired.closed and kind not in REOPENING:
            return Decision(None, False, f"the change was closed; a late {kind.value} does not reopen it")
        if kind == EventType.CHANGE_REOPENED and _older(event.occurred_at, desired.closed_at):
            return Decision(None, False, "this reopen is older than the close already applied")
        if _older(event.occurred_at, desired.head_at) and kind not in REOPENING:
            return Decision(None, False, f"{kind.value} is older than the state already known")
        update: dict[str, object] = {
            "closed": False,
            "closed_at": None if kind in REOPENING else desired.closed_at,
            "head_sha": event.head_sha or desired.head_sha,
            "head_ref": event.head_ref or desired.head_ref,
            "base_ref": event.base_ref or desired.base_ref,
            "head_at": event.occurred_at or desired.head_at,
            "title": event.title or desired.title,
            "url": event.url or desired.url,
        }
        if kind != EventType.ENV_DEPLOY:
            update |= {"draft": event.draft, "fork": event.fork}
        else:
            update |= {
                "image": event.image or desired.image,
                "config": event.config or desired.config,
                "requested": True,
            }
        desired = desired.model_copy(update=update)
        action, reason = _deploy_action(desired, rules, explicit=kind == EventType.ENV_DEPLOY)
        desired = _touch(desired.model_copy(update={"action": action, "reason": reason}), event)
        if desired.head_sha is None:
            return Decision(None, False, "no commit is known for this change yet")
        return Decision(desired, True, reason or f"deploy {desired.head_sha[:12]}")

    if kind in (EventType.CHANGE_CLOSED, EventType.ENV_DESTROY):
        if current is None:
            return Decision(None, False, "no environment is known for this change")
        if _older(event.occurred_at, desired.head_at):
            return Decision(None, False, "this close is older than the state already known")
        update = {"action": "destroy", "reason": None}
        if kind == EventType.CHANGE_CLOSED:
            update |= {"closed": True, "closed_at": event.occurred_at or event.received_at}
        return Decision(_touch(desired.model_copy(update=update), event), True, "destroy")

    if kind == EventType.BUILD_COMPLETED:
        if current is None or current.action != "deploy":
            return Decision(None, False, "no deployed environment for this build")
        if event.build_status != BuildStatus.SUCCESS:
            return Decision(None, False, f"build {event.build_status}: nothing to roll out")
        sha = event.head_sha or ""
        if not same_commit(sha, desired.head_sha):
            return Decision(None, False, "the build is not for the change's current head commit")
        if desired.built_sha == sha:
            return Decision(None, False, "this build was already rolled out")
        return Decision(
            _touch(desired.model_copy(update={"built_sha": sha}), event), True, f"roll out build {sha[:12]}"
        )

    if kind in (EventType.ENV_HIBERNATE, EventType.ENV_WAKE):
        if current is None or current.action != "deploy":
            return Decision(None, False, "no deployed environment to hibernate or wake")
        hibernated = kind == EventType.ENV_HIBERNATE
        if desired.hibernated == hibernated:
            return Decision(None, False, "already " + ("hibernated" if hibernated else "awake"))
        return Decision(
            _touch(desired.model_copy(update={"hibernated": hibernated}), event), True, kind.value
        )

    if kind in (EventType.PUSH, EventType.COMMENT_CREATED):
        if current is None:
            return Decision(None, False, "no environment is known for this change")
        # Activity keeps an environment from hibernating; a push to its branch also wakes it.
        wake = kind == EventType.PUSH and desired.hibernated
        touched = _touch(desired.model_copy(update={"hibernated": False} if wake else {}), event)
        return Decision(touched, wake, "wake on push" if wake else "activity recorded")

    return Decision(None, False, f"{kind.value} does not change environments")
