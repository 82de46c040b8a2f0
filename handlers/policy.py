"""What an event means for an environment. The one place that decides it.

Pure: `decide(current, event, rules)` returns the next desired state and whether
the cluster needs a reconcile, or says why nothing changes. Ordering comes from
the payloads' own timestamps; the reconcile later checks the provider itself
where it can (the webhook is a doorbell, the provider is the truth).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from handlers.commands import Command, Name
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


def _older(moment: datetime | None, than: datetime | None) -> bool:
    return moment is not None and than is not None and moment < than


def _new(event: LifecycleEvent) -> Desired:
    assert event.number is not None
    return Desired(provider=event.provider, repository=event.repository, number=event.number)


def _touch(desired: Desired, event: LifecycleEvent) -> Desired:
    deliveries = [*desired.deliveries, event.delivery_id][-MAX_PENDING_DELIVERIES:]
    return desired.model_copy(update={"deliveries": deliveries, "updated_at": event.received_at})


def _deploy_action(desired: Desired, rules: Rules, explicit: bool) -> tuple[str, str | None]:
    # A fork is never deployed without an approval, whoever asks: its code is not trusted.
    if desired.fork and desired.approved_sha is None:
        return "none", FORK_WAITS
    # Asked for explicitly once (a command, the generic trigger): drafts too, from then on.
    if explicit or desired.requested:
        return "deploy", None
    if desired.draft and not rules.deploy_drafts:
        return "none", "the change is a draft (drafts deploy when K8S_EE_DEPLOY_DRAFTS=true)"
    return "deploy", None


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
                # An explicit deploy, from someone trusted, approves the commit it names.
                "approved_sha": event.head_sha or desired.approved_sha,
                "approved_by": event.actor if event.head_sha else desired.approved_by,
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
        if kind == EventType.ENV_DESTROY:
            # Destroyed on request: an on-demand repository waits for the next request again.
            update["requested"] = False
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
    # The comment's own time orders nothing: the host's answer read just now is newer than
    # anything an event said.
    base = event.model_copy(update={"occurred_at": None, "actor": request.actor})
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
            desired = desired.model_copy(update={"fork": head.fork, "draft": head.draft})
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
        if decision.desired is None:
            return decision
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
