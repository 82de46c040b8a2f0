"""The gateway's webhook on the code hosts: what it must receive, and the one way it is made so.

Each host client that manages hooks answers `HookHost` (the `*_hooks` modules, through the host's
SDK, with the host's HTTP policy and rate-limit pacer). `ensure` is the one algorithm over them: it
reads every page of hooks, matches on the normalised URL, updates the match, and creates one only
when none matches. Concurrent runs converge on one hook: a create the host refuses as a duplicate
(GitHub's 422 "Hook already exists") and every create that succeeds are followed by a second
listing, and of the matching hooks the first in a fixed order (`Hook.rank`) is kept, the others
deleted. Any two runs agree on that order, so of ten runs at once exactly one hook is left:
a hook created after a run's second listing is seen, and removed, by its own creator's.

Deliveries: `HookAttempt` is one attempt to deliver an event, as the host's delivery log shows it
(GitHub's hook deliveries, GitLab's hook events); `unanswered` picks the deliveries that no attempt
delivered, the ones to redeliver.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Literal, Protocol, runtime_checkable
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, SecretStr

from providers.events import Provider
from providers.hosts.base import HostError, ListedChange, NotFound

# What the gateway acts on, per host (the adapters in providers/ read exactly these).
EVENTS: dict[Provider, tuple[str, ...]] = {
    Provider.GITHUB: ("pull_request", "issue_comment", "push", "workflow_run"),
    # GitLab names a hook's events by its boolean fields.
    Provider.GITLAB: ("merge_requests_events", "note_events", "pipeline_events", "push_events"),
    Provider.BITBUCKET_CLOUD: (
        "pullrequest:created",
        "pullrequest:updated",
        "pullrequest:fulfilled",
        "pullrequest:rejected",
        "pullrequest:comment_created",
        "repo:push",
        "repo:commit_status_updated",
    ),
    Provider.BITBUCKET_SERVER: (
        "pr:opened",
        "pr:from_ref_updated",
        "pr:modified",
        "pr:merged",
        "pr:declined",
        "pr:deleted",
        "pr:comment:added",
        "repo:refs_changed",
    ),
}
HOOK_NAME = "k8s-ee gateway"


class HookScope(BaseModel):
    """Where a hook is registered: a repository, a group of them (GitHub organisation, GitLab
    group, Bitbucket Cloud workspace, Data Center project), or a GitHub App's own webhook."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["repository", "group", "app"]
    name: str = ""

    def __str__(self) -> str:
        return "the GitHub App" if self.kind == "app" else f"{self.kind} {self.name}"


class Hook(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    url: str
    events: tuple[str, ...]
    active: bool
    # Why the host stopped sending to it, when it did (GitLab disables failing hooks).
    disabled: str | None = None
    created_at: datetime | None = None
    # Settings the gateway manages besides URL and events, as the host shows them (never a secret).
    settings: dict[str, str] = {}

    @property
    def rank(self) -> tuple[float, int, str]:
        """The order duplicates are judged in: the first is kept. Oldest first, then by id (numeric
        where the host numbers hooks); the same on every run, from what the host lists."""
        stamp = self.created_at.timestamp() if self.created_at else 0.0
        return (stamp, int(self.id) if self.id.isdigit() else 0, self.id)


class HookSpec(BaseModel):
    """The hook the gateway needs. Secrets are sent, never read back: hosts never show them."""

    model_config = ConfigDict(frozen=True)

    url: str
    events: tuple[str, ...]
    secret: SecretStr | None = None
    # GitLab's signing token (`whsec_…`), sent as well when the gateway has one.
    signing_token: SecretStr | None = None
    active: bool = True
    name: str = HOOK_NAME


class HookExists(HostError):
    """The host refused to create the hook because one with its URL exists (GitHub's 422)."""


class HookHost(Protocol):
    provider: Provider

    def list_hooks(self, scope: HookScope) -> list[Hook]:
        """Every hook of the scope, every page read."""
        ...

    def create_hook(self, scope: HookScope, spec: HookSpec) -> Hook: ...

    def update_hook(self, scope: HookScope, hook: Hook, spec: HookSpec) -> Hook: ...

    def delete_hook(self, scope: HookScope, hook: Hook) -> None:
        """Remove it; one already gone raises `NotFound`."""
        ...

    def enable_hook(self, scope: HookScope, hook: Hook) -> str:
        """Make the host send to a hook it disabled again; says what was done."""
        ...

    def test_hook(self, scope: HookScope, hook: Hook) -> str:
        """Have the host send a test delivery; says what the host answered."""
        ...

    def hook_changes(self, hook: Hook, spec: HookSpec) -> list[str]:
        """What updating `hook` to `spec` changes, of what the host shows (never the secret)."""
        ...

    def hook_notes(self, scope: HookScope, hook: Hook, spec: HookSpec) -> list[str]:
        """What the API cannot set and a person must (a GitHub App's events)."""
        ...


Action = Literal["created", "updated", "unchanged", "would create", "would update", "would leave unchanged"]


class EnsureResult(BaseModel):
    scope: str
    action: Action
    hook: Hook | None
    # What the update changed (or would), of what the host shows; secrets are always sent anew.
    changes: list[str] = []
    # Duplicates removed (or that would be).
    removed: list[str] = []
    notes: list[str] = []
    # False when the hook is left in a state the gateway cannot use (a re-enable that failed).
    ok: bool = True


def changes(hook: Hook, spec: HookSpec, *, active: bool = True) -> list[str]:
    """What updating `hook` to `spec` changes of what every host shows: events, URL, and (where the
    host has the switch) the active flag."""
    found = []
    if set(hook.events) != set(spec.events):
        found.append(
            f"events {', '.join(sorted(hook.events)) or '(none)'} -> {', '.join(sorted(spec.events))}"
        )
    if active and hook.active != spec.active:
        found.append(f"active {str(hook.active).lower()} -> {str(spec.active).lower()}")
    if hook.url != spec.url:
        found.append(f"url {hook.url or '(none)'} -> {spec.url}")
    return found


def normalise_url(url: str) -> str:
    """A URL as hooks are matched on: scheme and host in lower case, no default port, no fragment,
    no trailing slash, percent-encoding in one form."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    port = parts.port
    if port is not None and (scheme, port) not in (("https", 443), ("http", 80)):
        host = f"{host}:{port}"
    path = quote(unquote(parts.path), safe="/:@!$&'()*+,;=-._~") or "/"
    if len(path) > 1:
        path = path.rstrip("/")
    return urlunsplit((scheme, host, path, parts.query, ""))


def same_url(a: str, b: str) -> bool:
    return normalise_url(a) == normalise_url(b)


def _matching(hooks: Iterable[Hook], url: str) -> list[Hook]:
    return sorted((hook for hook in hooks if same_url(hook.url, url)), key=lambda hook: hook.rank)


def _remove(host: HookHost, scope: HookScope, hooks: Iterable[Hook]) -> list[str]:
    removed = []
    for hook in hooks:
        with contextlib.suppress(NotFound):  # another run removed it first
            host.delete_hook(scope, hook)
        removed.append(hook.id)
    return removed


def ensure(host: HookHost, scope: HookScope, spec: HookSpec, *, dry_run: bool = False) -> EnsureResult:
    """Make `scope` hold exactly one hook for `spec.url`, configured as `spec` says."""
    matching = _matching(host.list_hooks(scope), spec.url)
    if not matching:
        if dry_run:
            return EnsureResult(scope=str(scope), action="would create", hook=None)
        created: Hook | None
        try:
            created = host.create_hook(scope, spec)
        except HookExists:
            created = None
        # Other runs may be creating it at this moment: look again, keep the first, remove the rest.
        matching = _matching(host.list_hooks(scope), spec.url)
        if not matching:
            raise HostError(f"{scope}: the hook for {spec.url} was created but is not listed")
        keep, others = matching[0], matching[1:]
        removed = _remove(host, scope, others)
        if created is not None and keep.id == created.id:
            result = EnsureResult(scope=str(scope), action="created", hook=keep, removed=removed)
        else:
            # Another run's (or an older) hook is the one kept: make sure it is configured so.
            changes = host.hook_changes(keep, spec)
            keep = host.update_hook(scope, keep, spec)
            result = EnsureResult(
                scope=str(scope),
                action="updated" if changes else "unchanged",
                hook=keep,
                changes=changes,
                removed=removed,
            )
        return _finish(host, scope, keep, spec, result, dry_run)
    keep, others = matching[0], matching[1:]
    changes = host.hook_changes(keep, spec)
    if dry_run:
        action: Action = "would update" if changes else "would leave unchanged"
        result = EnsureResult(
            scope=str(scope), action=action, hook=keep, changes=changes, removed=[h.id for h in others]
        )
        return _finish(host, scope, keep, spec, result, dry_run)
    updated = host.update_hook(scope, keep, spec)
    removed = _remove(host, scope, others)
    result = EnsureResult(
        scope=str(scope),
        action="updated" if changes else "unchanged",
        hook=updated,
        changes=changes,
        removed=removed,
    )
    # The disabled flag is the one read before the update: an update does not re-enable a hook.
    return _finish(host, scope, keep, spec, result, dry_run)


def _finish(
    host: HookHost, scope: HookScope, hook: Hook, spec: HookSpec, result: EnsureResult, dry_run: bool
) -> EnsureResult:
    notes = [*result.notes, *host.hook_notes(scope, hook, spec)]
    ok = True
    if hook.disabled is not None:
        said = f"the host had disabled this hook ({hook.disabled})"
        if dry_run:
            notes.append(f"{said}; it would be re-enabled")
        else:
            try:
                notes.append(f"{said}; {host.enable_hook(scope, hook)}")
            except HostError as exc:
                notes.append(f"{said}; re-enabling it failed: {exc}")
                ok = False
    return result.model_copy(update={"notes": notes, "ok": ok})


# -- deliveries --------------------------------------------------------------------------------------


class HookAttempt(BaseModel):
    """One attempt to deliver one event, as the host's delivery log shows it."""

    model_config = ConfigDict(frozen=True)

    id: str  # what a redelivery names: GitHub's delivery id, GitLab's hook log id
    delivery: str  # the delivery it is an attempt at: GitHub's GUID, GitLab's Idempotency-Key
    at: datetime
    status: int | None  # the gateway's HTTP answer; None when there was none
    event: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def unanswered(attempts: Iterable[HookAttempt]) -> list[HookAttempt]:
    """The latest attempt of each delivery that no attempt delivered, oldest delivery first.

    Redelivering keeps the delivery's id (GitHub's GUID, GitLab's Idempotency-Key), and the gateway
    deduplicates on it: one that did arrive after all is answered `duplicate`, nothing done twice."""
    by_delivery: dict[str, list[HookAttempt]] = {}
    for attempt in attempts:
        by_delivery.setdefault(attempt.delivery, []).append(attempt)
    failed = [
        max(group, key=lambda a: (a.at, a.id))
        for group in by_delivery.values()
        if not any(a.ok for a in group)
    ]
    return sorted(failed, key=lambda a: (a.at, a.id))


@runtime_checkable
class DeliveryLog(Protocol):
    """A host with a hook delivery log and redelivery (GitHub, GitLab)."""

    def hook_attempts(self, scope: HookScope, hook: Hook, since: datetime) -> list[HookAttempt]:
        """Every attempt since `since` the host still keeps, every page read (newest pages first,
        reading stops at the first older than `since`)."""
        ...

    def redeliver(self, scope: HookScope, hook: Hook, attempt: HookAttempt) -> None: ...


@runtime_checkable
class ChangeLister(Protocol):
    """A host without a delivery log (Bitbucket): missed deliveries are found from its open changes."""

    def open_changes(self, repository: str) -> list[ListedChange]: ...


def parse_time(value: object) -> datetime | None:
    """A host's timestamp (ISO 8601, `Z` or an offset; or epoch milliseconds) as an aware datetime."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000, UTC)
    if isinstance(value, str) and value:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return None
