"""What an event means for an environment. The one place that decides it.

Pure: `decide(current, event, rules)` (and `decide_command` for chat commands) returns the next desired state and whether
the cluster needs a reconcile, or says why nothing changes.

Order comes from the events themselves: each is placed at its payload's own time,
or at the time it was received when the payload has none (handlers.desired.Stamp).
An event sets only the fields it is newer than, so the desired state is the same
whatever order the events arrive in, and however many times each arrives. A close
or a destroy of a change nobody has seen yet leaves a tombstone; the newest head is
kept while a change is closed, so the reopen deploys it. The reconcile later asks
the provider itself where it can (the webhook is a doorbell, the provider the truth).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from handlers.commands import Command, Name
from handlers.desired import Action, DeliveryRef, Desired, Intent, Stamp
from providers.events import BuildStatus, EventSource, EventType, LifecycleEvent, Provider

# Deliveries remembered per environment between two reconciles (for the delivery log's links).
MAX_PENDING_DELIVERIES = 50

DEPLOYING = {
    EventType.CHANGE_OPENED,
    EventType.CHANGE_REOPENED,
    EventType.CHANGE_UPDATED,
    EventType.CHANGE_READY,
    EventType.ENV_DEPLOY,
}
DESTROYING = {EventType.CHANGE_CLOSED, EventType.ENV_DESTROY}
# Only these may bring back an environment whose change was closed.
REOPENING = {EventType.CHANGE_REOPENED, EventType.ENV_DEPLOY}
# These wake a hibernated environment as they deploy it (so does any new head commit).
WAKING = {EventType.CHANGE_UPDATED, EventType.CHANGE_REOPENED, EventType.ENV_DEPLOY}
# Events from these sources are the platform's own doing, not someone using the environment.
NOT_ACTIVITY = {EventSource.IDLE, EventSource.SWEEP}
# Events that describe the change as the code host sees it (its head, draft, fork).
CHANGE_EVENTS = {
    EventType.CHANGE_OPENED,
    EventType.CHANGE_REOPENED,
    EventType.CHANGE_UPDATED,
    EventType.CHANGE_READY,
    EventType.CHANGE_CLOSED,
}
# Two events stamped with the same second: the one a change's life puts later wins (a
# reopen follows its close, an update its open). Explicit requests come after all of them.
RANK = {
    EventType.CHANGE_OPENED: 0,
    EventType.CHANGE_READY: 1,
    EventType.CHANGE_UPDATED: 2,
    EventType.PUSH: 2,
    EventType.CHANGE_CLOSED: 3,
    EventType.CHANGE_REOPENED: 4,
}
EXPLICIT_RANK = 5

_HEAD_FIELDS = ("head_sha", "head_ref", "base_ref", "title", "url")

FORK_WAITS = (
    "the change comes from a fork: it is deployed once someone with write access approves "
    "its head commit with /deploy-preview"
)


@dataclass(frozen=True, slots=True)
class Rules:
    deploy_drafts: bool = False
    # `/preserve` without hours.
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


def stamp_of(event: LifecycleEvent) -> Stamp:
    """Where an event stands in its change's history: its payload's time, else its receipt."""
    return Stamp(
        at=event.occurred_at or event.received_at,
        rank=RANK.get(event.type, EXPLICIT_RANK),
        delivery=event.delivery_id,
    )


def _merge(desired: Desired, stamp: Stamp, values: dict[str, object]) -> Desired:
    """Set each field the event is at least as new as (last writer wins, per field)."""
    update: dict[str, object] = {}
    stamps = dict(desired.stamps)
    for name, value in values.items():
        held = stamps.get(name)
        if held is None or stamp.order() >= held.order():
            update[name] = value
            stamps[name] = stamp
    return desired.model_copy(update={**update, "stamps": stamps})


def _newest(desired: Desired, field: str, stamp: Stamp) -> bool:
    held = desired.stamps.get(field)
    return held is not None and held.order() == stamp.order()


def _touch(desired: Desired, event: LifecycleEvent) -> Desired:
    ref = DeliveryRef(provider=event.provider, id=event.delivery_id)
    deliveries = desired.deliveries if ref in desired.deliveries else [*desired.deliveries, ref]
    updated = max(filter(None, (desired.updated_at, event.received_at)))
    return desired.model_copy(
        update={"deliveries": deliveries[-MAX_PENDING_DELIVERIES:], "updated_at": updated}
    )


def _action(desired: Desired, rules: Rules) -> tuple[Action, str | None]:
    """What the fields add up to."""
    if desired.closed or desired.intent == "destroy":
        return "destroy", None
    if desired.intent is None:
        return "none", "nothing was asked of this environment yet"
    if desired.head_sha is None:
        return "none", "no commit is known for this change yet"
    # A fork is never deployed without an approval, whoever asks: its code is not trusted.
    if desired.fork and desired.approved_sha is None:
        return "none", FORK_WAITS
    # Asked for explicitly (a command, the generic trigger): drafts too, until a destroy request.
    if desired.intent == "request" or desired.requested:
        return "deploy", None
    if desired.draft and not rules.deploy_drafts:
        return "none", "the change is a draft (drafts deploy when K8S_EE_DEPLOY_DRAFTS=true)"
    return "deploy", None


def _derive(desired: Desired, rules: Rules) -> Desired:
    action, reason = _action(desired, rules)
    return desired.model_copy(update={"action": action, "reason": reason})


def _effect(desired: Desired | None) -> tuple[object, ...]:
    """What the cluster would be brought to: two records with one effect need no reconcile."""
    if desired is None or desired.action == "destroy":
        return ("destroy",)
    if desired.action == "none":
        return ("none", desired.reason)
    config = sorted(desired.config.items()) if desired.config else None
    return (
        "deploy",
        deploy_commit(desired),
        desired.head_ref,
        desired.image,
        repr(config),
        desired.hibernated,
        desired.wake_route,
        desired.built_sha,
        desired.requested,
        desired.preserved_until,
    )


def _same_record(a: Desired, b: Desired) -> bool:
    ignored = {"deliveries", "updated_at"}
    return a.model_dump(exclude=ignored) == b.model_dump(exclude=ignored)


def _lifecycle(desired: Desired, event: LifecycleEvent, stamp: Stamp) -> Desired:
    """Merge a deploying or destroying event into the record's fields."""
    kind = event.type
    values: dict[str, object] = {
        name: getattr(event, name) for name in _HEAD_FIELDS if getattr(event, name) is not None
    }
    if kind in CHANGE_EVENTS:
        values |= {"draft": event.draft, "fork": event.fork}
    if event.comments is not None:
        values["host_comments"] = event.comments
    if kind == EventType.CHANGE_CLOSED:
        values["closed"] = True
    elif kind in REOPENING:
        values["closed"] = False
    intent: Intent = (
        "destroy" if kind in DESTROYING else "request" if kind == EventType.ENV_DEPLOY else "deploy"
    )
    values["intent"] = intent
    if kind == EventType.ENV_DEPLOY:
        values |= {name: getattr(event, name) for name in ("image", "config") if getattr(event, name)}
        # Asked for: an on-demand repository deploys (drafts too) until a destroy request.
        values["requested"] = True
        if event.head_sha:
            # An explicit deploy, from someone trusted, approves the commit it names.
            values |= {"approved_sha": event.head_sha, "approved_by": event.actor}
    if kind == EventType.ENV_DESTROY:
        # A destroy request names no head; on-demand waits for the next request again.
        values = {"intent": intent, "requested": False}
    if kind in DESTROYING:
        # A destroyed environment comes back (a reopen) awake, on its own host.
        values |= {"hibernated": False, "wake_route": False}
    elif kind in WAKING or (event.head_sha is not None and not same_commit(event.head_sha, desired.head_sha)):
        # New commits (or a request) wake it; the wake service keeps the host until it is up.
        values["hibernated"] = False
    return _merge(desired, stamp, values)


def deploy_commit(desired: Desired) -> str | None:
    """The commit an environment runs: a fork's approved one (never a later push), else the head."""
    return desired.approved_sha if desired.fork else desired.head_sha


def gate(want: Desired) -> Desired:
    """Apply the deploy gates again after the host's own answer (which may say, for the first
    time, that the change comes from a fork)."""
    if want.action == "deploy" and want.fork and want.approved_sha is None:
        return want.model_copy(update={"action": "none", "reason": FORK_WAITS})
    return want


def fork_note(desired: Desired) -> str | None:
    """What a fork's comment says about its approval: which commit, and that a push needs another."""
    if not desired.fork or desired.approved_sha is None:
        return None
    by = f" by @{desired.approved_by}" if desired.approved_by else ""
    note = f"From a fork: commit {desired.approved_sha[:12]} was approved{by}."
    if desired.head_sha and not same_commit(desired.head_sha, desired.approved_sha):
        return (
            f"{note} Newer commits ({desired.head_sha[:12]}) are not deployed until approved: /deploy-preview"
        )
    return f"{note} A later push needs a new approval (/deploy-preview)."


def decide(current: Desired | None, event: LifecycleEvent, rules: Rules) -> Decision:
    """The next desired state of the environment `event` concerns (`current`, or for an event
    of a change, the one its number names)."""
    kind = event.type
    stamp = stamp_of(event)
    if current is not None:
        base = current
    else:
        assert event.number is not None
        base = Desired(provider=event.environment_provider, repository=event.repository, number=event.number)

    if kind in DEPLOYING or kind in DESTROYING:
        merged = _lifecycle(base, event, stamp)
        why = _stale_reason(merged, event, stamp)
    elif kind == EventType.BUILD_COMPLETED:
        return _build(current, event)
    elif kind in (EventType.ENV_HIBERNATE, EventType.ENV_WAKE):
        if current is None or current.action != "deploy":
            return Decision(None, False, "no deployed environment to hibernate or wake" + _elsewhere(event))
        idle = kind == EventType.ENV_HIBERNATE and event.source == EventSource.IDLE
        if idle and current.updated_at and event.occurred_at and current.updated_at > event.occurred_at:
            # Something happened to it after its idle deadline (an event raced the idle check).
            return Decision(None, False, "used since it fell idle: not hibernated")
        values: dict[str, object] = {"hibernated": kind == EventType.ENV_HIBERNATE}
        if kind == EventType.ENV_HIBERNATE:
            # Its host goes to the wake service, until a wake and the app ready again.
            values |= {
                "wake_route": True,
                "hibernated_at": event.received_at,
                "hibernated_by": event.source.value,
            }
        merged = _merge(current, stamp, values)
        if _newest(merged, "hibernated", stamp):
            why = "already " + ("hibernated" if merged.hibernated else "awake")
        else:
            why = f"{kind.value} is older than the state already known"
    elif kind in (EventType.PUSH, EventType.COMMENT_CREATED):
        if current is None:
            return Decision(None, False, "no environment is known for this change")
        merged = current
        if kind == EventType.PUSH and current.action == "deploy":
            # A push to the branch is activity: it wakes a hibernated environment.
            merged = _merge(current, stamp, {"hibernated": False})
        why = "activity recorded"
    else:
        return Decision(None, False, f"{kind.value} does not change environments")

    merged = _derive(merged, rules)
    action, reason = merged.action, merged.reason
    if current is not None and _same_record(current, merged) and kind != EventType.COMMENT_CREATED:
        return Decision(
            None, False, why or f"{kind.value} is older than the state already known, or a repeat"
        )
    merged = _touch(merged, event)

    changed = _effect(current) != _effect(merged)
    # A newer request of the same thing runs the reconcile again (a retry after a failure);
    # a tombstone written for a change nobody saw needs none.
    asked = kind in DEPLOYING and action != "destroy" and _newest(merged, "intent", stamp)
    asked |= kind in DESTROYING and current is not None and _newest(merged, "intent", stamp)
    reconcile = changed or asked
    if action == "destroy":
        nothing = "nothing to destroy: recorded, so later events know" + (
            _elsewhere(event) if current is None else ""
        )
        told = "destroy" if reconcile else (why or nothing)
    elif action == "deploy":
        commit = deploy_commit(merged)
        assert commit is not None
        told = f"deploy {commit[:12]}" if reconcile else (why or "recorded")
    else:
        told = reason or "recorded"
    if kind in (EventType.ENV_HIBERNATE, EventType.ENV_WAKE, EventType.PUSH) and changed:
        told = "wake on push" if kind == EventType.PUSH else kind.value
    return Decision(merged, reconcile, told)


def _elsewhere(event: LifecycleEvent) -> str:
    """For a generic request that finds nothing of its own: where the environment may be."""
    if event.provider == Provider.GENERIC and event.target_provider is None:
        return ' of the generic trigger (name "provider" to act on a code host\'s environment)'
    return ""


def _stale_reason(merged: Desired, event: LifecycleEvent, stamp: Stamp) -> str | None:
    """Why a deploying or destroying event did not get its way, if it did not."""
    kind = event.type
    if kind == EventType.CHANGE_REOPENED and not _newest(merged, "closed", stamp) and merged.closed:
        return "this reopen is older than the close already applied"
    if kind in DEPLOYING and kind not in REOPENING and merged.closed:
        return f"the change was closed; a late {kind.value} does not reopen it"
    if not _newest(merged, "intent", stamp):
        return f"{kind.value} is older than the state already known"
    return None


def _build(current: Desired | None, event: LifecycleEvent) -> Decision:
    if current is None or current.action != "deploy":
        return Decision(None, False, "no deployed environment for this build")
    if event.build_status != BuildStatus.SUCCESS:
        return Decision(None, False, f"build {event.build_status}: nothing to roll out")
    sha = event.head_sha or ""
    if not same_commit(sha, current.head_sha):
        return Decision(None, False, "the build is not for the change's current head commit")
    if current.built_sha == sha:
        return Decision(None, False, "this build was already rolled out")
    rolled = _touch(current.model_copy(update={"built_sha": sha}), event)
    return Decision(rolled, True, f"roll out build {sha[:12]}")


# -- chat commands ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Head:
    """The change as its host reported it when the command was read."""

    sha: str
    ref: str | None
    base_ref: str | None
    fork: bool
    draft: bool
    open: bool


@dataclass(frozen=True, slots=True)
class Request:
    """One command, from someone allowed to give it. `head` is None where no host can be asked
    (the generic trigger): the head already known is used."""

    command: Command
    actor: str
    head: Head | None
    now: datetime


def _time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def decide_command(
    current: Desired | None, request: Request, event: LifecycleEvent, rules: Rules
) -> Decision:
    """What a command means for the environment: a decision whose reason is the command's answer.

    Commands map onto the events above (`/deploy-preview` is an explicit deploy of the head
    commit as read now, which approves it; `/destroy-preview` a destroy; `/wake-preview` a wake);
    `/preserve` and `/unpreserve` set the preserved-until time. `event` is the comment's event
    (its delivery and reception time)."""
    command, head = request.command, request.head
    # Ordered by the comment's own time (the host's clock, as the other events are): what the
    # command takes from the host (the head) was read after it, and an event that happened
    # later still has the last word.
    base = event.model_copy(update={"actor": request.actor})
    name = command.name

    if name == Name.DEPLOY:
        if head is not None and not head.open:
            return Decision(None, False, "the change is closed: reopen it to deploy it")
        sha = head.sha if head is not None else (current.head_sha if current else None)
        if sha is None:
            return Decision(None, False, "no commit is known for this change yet")
        if command.sha is not None and not same_commit(command.sha, sha):
            return Decision(
                None,
                False,
                f"{command.sha[:12]} is no longer the head commit (the head is {sha[:12]}): nothing was "
                f"approved. Look at the new commits, then /deploy-preview {sha[:12]}",
            )
        deploy = base.model_copy(
            update={
                "type": EventType.ENV_DEPLOY,
                "head_sha": sha,
                "head_ref": head.ref if head else None,
                "base_ref": head.base_ref if head else None,
            }
        )
        decision = decide(current, deploy, rules)
        if decision.desired is None:
            return decision
        desired = decision.desired
        if head is not None:
            # The host's answer, read now, is the newest word on fork and draft.
            desired = _derive(
                _merge(desired, stamp_of(deploy), {"fork": head.fork, "draft": head.draft}), rules
            )
        approved = " (approved: it comes from a fork)" if desired.fork else ""
        return Decision(desired, True, f"deploying {sha[:12]}{approved}")

    if name == Name.DESTROY:
        if current is None or current.action != "deploy":
            return Decision(None, False, "there is no environment to destroy")
        if current.preserved(request.now):
            assert current.preserved_until is not None
            return Decision(
                None,
                False,
                f"it is preserved until {_time(current.preserved_until)}: /unpreserve it first",
            )
        decision = decide(current, base.model_copy(update={"type": EventType.ENV_DESTROY}), rules)
        return Decision(decision.desired, decision.reconcile, "destroying the environment")

    if name == Name.WAKE:
        decision = decide(current, base.model_copy(update={"type": EventType.ENV_WAKE}), rules)
        if decision.desired is None or not decision.reconcile:
            # Awake already: nothing is done (and the answer says so).
            return Decision(None, False, decision.reason)
        return Decision(decision.desired, True, "waking the environment")

    if name == Name.PRESERVE:
        if current is None or not (current.action == "deploy" or current.preserved(request.now)):
            return Decision(None, False, "there is no environment to preserve")
        until = request.now + timedelta(hours=command.hours or rules.preserve_hours)
        desired = _touch(current.model_copy(update={"preserved_until": until}), event)
        return Decision(desired, True, f"preserved until {_time(until)}")

    if name == Name.UNPRESERVE:
        if current is None or not current.preserved(request.now):
            return Decision(None, False, "the environment is not preserved")
        desired = _touch(current.model_copy(update={"preserved_until": None}), event)
        closed = "; it goes now, as its change is closed" if current.closed else ""
        return Decision(desired, True, f"no longer preserved{closed}")

    return Decision(None, False, f"/{name.value} does not change environments")


def app_ready(desired: Desired, now: datetime) -> Desired | None:
    """A woken environment's app is ready: its host goes back to it (None: nothing to change)."""
    if desired.hibernated or not desired.wake_route or desired.action != "deploy":
        return None
    return _merge(desired, Stamp(at=now, rank=EXPLICIT_RANK, delivery="wake-watch"), {"wake_route": False})


def is_activity(event: LifecycleEvent) -> bool:
    """Whether the event is someone using the environment (pushes, comments, deploys, wakes, API
    calls, visits): what keeps it from falling idle. The platform's own events are not."""
    return event.source not in NOT_ACTIVITY and event.type not in DESTROYING
