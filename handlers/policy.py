"""What an event means for an environment. The one place that decides it.

Pure: `decide(current, event, rules)` returns the next desired state and whether
the cluster needs a reconcile, or says why nothing changes. Ordering comes from
the payloads' own timestamps; the reconcile later checks the provider itself
where it can (the webhook is a doorbell, the provider is the truth).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from handlers.desired import Desired
from providers.events import BuildStatus, EventSource, EventType, LifecycleEvent

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
# These wake a hibernated environment as they deploy it (so does any new head commit).
WAKING = {EventType.CHANGE_UPDATED, EventType.CHANGE_REOPENED, EventType.ENV_DEPLOY}
# Events from these sources are the platform's own doing, not someone using the environment.
NOT_ACTIVITY = {EventSource.IDLE, EventSource.SWEEP}


@dataclass(frozen=True, slots=True)
class Rules:
    deploy_drafts: bool = False
    deploy_forks: bool = False
    # How long `env.preserve` keeps an environment (renewed by asking again).
    preserve_hours: int = 48


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
        moved = event.head_sha is not None and not same_commit(event.head_sha, desired.head_sha)
        if desired.hibernated and (kind in WAKING or moved):
            # New commits (or a request) wake it; the wake service keeps the host until it is up.
            update["hibernated"] = False
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
        # A destroyed environment comes back (a reopen) awake, on its own host.
        update = {"action": "destroy", "reason": None, "hibernated": False, "wake_route": False}
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
        if kind == EventType.ENV_WAKE:
            if not desired.hibernated:
                return Decision(None, False, "waking already" if desired.wake_route else "already awake")
            woken = desired.model_copy(update={"hibernated": False, "wake_route": True})
            return Decision(_touch(woken, event), True, "wake")
        if desired.hibernated:
            return Decision(None, False, "already hibernated")
        if (
            event.source == EventSource.IDLE
            and _older(event.occurred_at, desired.updated_at)
            and desired.updated_at is not None
        ):
            return Decision(None, False, "used since it fell idle: not hibernated")
        asleep = desired.model_copy(
            update={
                "hibernated": True,
                "wake_route": True,
                "hibernated_at": event.received_at,
                "hibernated_by": event.source.value,
            }
        )
        return Decision(_touch(asleep, event), True, "hibernate")

    if kind in (EventType.ENV_PRESERVE, EventType.ENV_UNPRESERVE):
        moment = event.received_at
        if kind == EventType.ENV_PRESERVE:
            if current is None or not (current.action == "deploy" or current.preserved(moment)):
                return Decision(None, False, "no environment to preserve")
            until = moment + timedelta(hours=rules.preserve_hours)
            return Decision(
                _touch(desired.model_copy(update={"preserved_until": until}), event), True, "preserve"
            )
        if current is None or not current.preserved(moment):
            return Decision(None, False, "not preserved")
        # Ended now rather than forgotten: the label it set no longer protects a closed change.
        ended = desired.model_copy(update={"preserved_until": moment})
        return Decision(_touch(ended, event), True, "unpreserve")

    if kind in (EventType.PUSH, EventType.COMMENT_CREATED):
        if current is None:
            return Decision(None, False, "no environment is known for this change")
        # Activity keeps an environment from hibernating; a push to its branch also wakes it.
        wake = kind == EventType.PUSH and desired.hibernated
        touched = _touch(desired.model_copy(update={"hibernated": False} if wake else {}), event)
        return Decision(touched, wake, "wake on push" if wake else "activity recorded")

    return Decision(None, False, f"{kind.value} does not change environments")


def app_ready(desired: Desired) -> Desired | None:
    """A woken environment's app is ready: its host goes back to it (None: nothing to change)."""
    if desired.hibernated or not desired.wake_route or desired.action != "deploy":
        return None
    return desired.model_copy(update={"wake_route": False})


def is_activity(event: LifecycleEvent) -> bool:
    """Whether the event is someone using the environment (pushes, comments, deploys, wakes, API
    calls, visits): what keeps it from falling idle. The platform's own events are not."""
    return event.source not in NOT_ACTIVITY and event.type not in (
        EventType.CHANGE_CLOSED,
        EventType.ENV_DESTROY,
    )
