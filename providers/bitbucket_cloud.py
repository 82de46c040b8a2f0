"""Bitbucket Cloud (bitbucket.org) webhooks, normalised into `LifecycleEvent`s.

Event keys arrive in `X-Event-Key`; payloads follow Atlassian's "Event payloads" page:
`actor` (an account), `repository` (`full_name` is `workspace/repo_slug`) and, per
event, `pullrequest`, `comment`, `commit_status` or `push`. Cloud abbreviates commit
hashes in pull request payloads to 12 characters: they are kept as sent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from providers.bitbucket import (
    event_key,
    field_in,
    header_value,
    hint,
    object_at,
    optional_in,
    timestamp,
)
from providers.bitbucket import verify as verify
from providers.events import BuildStatus, Comment, EventType, LifecycleEvent, Provider
from providers.payload import Fields, adapter, field, optional, require_json
from providers.verdicts import Accepted, Ignored, Outcome, bad_request

PROVIDER = Provider.BITBUCKET_CLOUD
DELIVERY_HEADER = "X-Request-UUID"

# Final build states only; INPROGRESS says nothing the worker can act on yet.
BUILD_STATES = {
    "SUCCESSFUL": BuildStatus.SUCCESS,
    "FAILED": BuildStatus.FAILURE,
    "STOPPED": BuildStatus.CANCELLED,
}


def delivery_id(headers: Mapping[str, str]) -> str | None:
    """`X-Request-UUID`: the same on Cloud's retries of one delivery."""
    return header_value(headers, DELIVERY_HEADER)


@dataclass(frozen=True, slots=True)
class _Delivery:
    key: str
    data: dict[str, Any]
    delivery_id: str
    received_at: datetime

    def event(self, kind: EventType, repository: str, **fields: Any) -> LifecycleEvent:
        return LifecycleEvent(
            provider=PROVIDER,
            delivery_id=self.delivery_id,
            received_at=self.received_at,
            type=kind,
            repository=repository,
            actor=_actor(self.data),
            **fields,
        )

    def ignored(self, reason: str) -> Ignored:
        return Ignored(reason=reason, repository=hint(self.data, "repository.full_name"), type=self.key)


@adapter
def parse(headers: Mapping[str, str], body: bytes, delivery_id: str, received_at: datetime) -> Outcome:
    key = event_key(headers)
    require_json(headers)
    return read(key, fields_for(key).load(body), delivery_id, received_at)


def fields_for(key: str) -> Fields:
    """What the handler of event `key` reads of a body."""
    return _FIELDS.get(key, _OTHER)


def read(key: str, data: dict[str, Any], delivery_id: str, received_at: datetime) -> Outcome:
    """The outcome of a delivery of event `key` whose body reads as `data`."""
    delivery = _Delivery(key, data, delivery_id, received_at)
    handler = _HANDLERS.get(key)
    if handler is None:
        return delivery.ignored(f"Bitbucket Cloud event {key[:64]!r} does not affect environments")
    return handler(delivery)


def _actor(data: Mapping[str, Any]) -> str | None:
    # `username` is gone from Cloud payloads (GDPR); `nickname` is what people see.
    return optional(data, "actor.nickname", str) or optional(data, "actor.display_name", str)


def _change(d: _Delivery, *, head_required: bool) -> dict[str, Any]:
    """The fields every pull request event carries."""
    data = d.data
    head_sha: str | None
    if head_required:
        head_sha = field(data, "pullrequest.source.commit.hash", str)
        head_ref: str | None = field(data, "pullrequest.source.branch.name", str)
    else:
        head_sha = optional(data, "pullrequest.source.commit.hash", str)
        head_ref = optional(data, "pullrequest.source.branch.name", str)
    target = field(data, "pullrequest.destination.repository.full_name", str)
    # A deleted fork leaves `source.repository` null: still not the target repository.
    source = optional(data, "pullrequest.source.repository.full_name", str)
    return {
        "number": field(data, "pullrequest.id", int),
        "head_sha": head_sha,
        "head_ref": head_ref,
        "base_ref": optional(data, "pullrequest.destination.branch.name", str),
        "fork": source is None or source.casefold() != target.casefold(),
        "draft": optional(data, "pullrequest.draft", bool) or False,
        "title": optional(data, "pullrequest.title", str),
        "url": optional(data, "pullrequest.links.html.href", str),
        "occurred_at": timestamp(optional(data, "pullrequest.updated_on", str), "pullrequest.updated_on"),
    }


def _repository(d: _Delivery) -> str:
    return field(d.data, "repository.full_name", str)


def _opened(d: _Delivery) -> Outcome:
    return Accepted(d.event(EventType.CHANGE_OPENED, _repository(d), **_change(d, head_required=True)))


def _updated(d: _Delivery) -> Outcome:
    # Cloud fires `pullrequest:updated` for title, description, reviewer and draft edits
    # as well as for new commits, and the payload carries no previous commit to tell
    # them apart. It is passed on as change.updated: the worker is level-triggered and
    # does nothing when the head SHA is the one already deployed. `pullrequest:push`
    # (new commits only) takes the same path.
    return Accepted(d.event(EventType.CHANGE_UPDATED, _repository(d), **_change(d, head_required=True)))


# The event key alone says what happened: `pullrequest:fulfilled` is a merge and
# `pullrequest:rejected` a decline, whatever `pullrequest.state` says (Cloud has sent
# bodies whose state lagged the event). Where credentials are configured, the worker
# reads the pull request from Bitbucket before acting, and that answer wins.


def _fulfilled(d: _Delivery) -> Outcome:
    change = _change(d, head_required=False)
    return Accepted(d.event(EventType.CHANGE_CLOSED, _repository(d), merged=True, **change))


def _rejected(d: _Delivery) -> Outcome:
    change = _change(d, head_required=False)
    return Accepted(d.event(EventType.CHANGE_CLOSED, _repository(d), merged=False, **change))


def _comment_created(d: _Delivery) -> Outcome:
    data = d.data
    change = _change(d, head_required=False)
    # The comment's own time, not the pull request's last update.
    created = timestamp(optional(data, "comment.created_on", str), "comment.created_on")
    if created is not None:
        change["occurred_at"] = created
    comment = Comment(
        id=str(field(data, "comment.id", int)),
        body=field(data, "comment.content.raw", str),
        author=_comment_author(data),
        # The permissions API is asked by uuid; answers name the author as people see them.
        author_id=optional(data, "comment.user.uuid", str) or optional(data, "actor.uuid", str),
        author_name=optional(data, "comment.user.nickname", str)
        or optional(data, "comment.user.display_name", str),
    )
    return Accepted(d.event(EventType.COMMENT_CREATED, _repository(d), comment=comment, **change))


def _comment_author(data: Mapping[str, Any]) -> str:
    # Chat commands are only obeyed from users with write access, and that is asked of
    # the API by account: `nickname` is neither unique nor fixed, `account_id` is both.
    for path in ("comment.user.account_id", "comment.user.uuid", "actor.account_id", "actor.uuid"):
        value = optional(data, path, str)
        if value:
            return value
    raise bad_request("missing field comment.user.account_id")


def _commit_status(d: _Delivery) -> Outcome:
    data = d.data
    state = field(data, "commit_status.state", str)
    status = BUILD_STATES.get(state)
    if status is None:
        return d.ignored(f"commit status {state[:32]!r} is not a final build result")
    event = d.event(
        EventType.BUILD_COMPLETED,
        _repository(d),
        head_sha=_status_commit(data),
        head_ref=optional(data, "commit_status.refname", str),
        build_status=status,
        occurred_at=timestamp(optional(data, "commit_status.updated_on", str), "commit_status.updated_on"),
    )
    return Accepted(event)


def _status_commit(data: Mapping[str, Any]) -> str:
    sha = optional(data, "commit_status.commit.hash", str)
    if sha:
        return sha
    # Older deliveries name the commit only in the API link `.../commit/<hash>`.
    link = optional(data, "commit_status.links.commit.href", str) or ""
    _, found, tail = link.rpartition("/commit/")
    if found and tail and "/" not in tail:
        return tail
    raise bad_request("missing field commit_status.commit.hash")


def _push(d: _Delivery) -> Outcome:
    data = d.data
    changes = field(data, "push.changes", list)
    # One delivery may carry several ref changes; the last branch update is the newest state.
    chosen: tuple[str, dict[str, Any]] | None = None
    for index in range(len(changes)):
        change = object_at(changes, index, "push.changes")
        prefix = f"push.changes.{index}"
        new = optional_in(change, prefix, "new", dict)
        if new is not None and optional_in(change, prefix, "new.type", str) == "branch":
            chosen = (f"{prefix}.new", new)
    if chosen is None:
        return d.ignored("push changed only tags or deleted branches")
    prefix, new = chosen
    event = d.event(
        EventType.PUSH,
        _repository(d),
        head_sha=field_in(new, prefix, "target.hash", str),
        head_ref=field_in(new, prefix, "name", str),
        # A push payload has no time of its own (`target.date` is the commit's date).
        occurred_at=None,
    )
    return Accepted(event)


_HANDLERS: dict[str, Callable[[_Delivery], Outcome]] = {
    "pullrequest:created": _opened,
    "pullrequest:updated": _updated,
    "pullrequest:push": _updated,
    "pullrequest:fulfilled": _fulfilled,
    "pullrequest:rejected": _rejected,
    "pullrequest:comment_created": _comment_created,
    # A status can be created already final (a CI posting only its result).
    "repo:commit_status_created": _commit_status,
    "repo:commit_status_updated": _commit_status,
    "repo:push": _push,
}


# What each handler reads (payload.Fields): tests/providers/test_fields.py checks that each
# comes to the same outcome as with the whole body. A push's `changes` are read whole.
_COMMON = (
    "repository.full_name",
    *(f"actor.{name}" for name in ("nickname", "display_name", "account_id", "uuid")),
)
_PULL_REQUEST = Fields(
    *_COMMON,
    *(f"pullrequest.{name}" for name in ("id", "draft", "title", "links.html.href", "updated_on")),
    *(f"pullrequest.source.{name}" for name in ("commit.hash", "branch.name", "repository.full_name")),
    *("pullrequest.destination.repository.full_name", "pullrequest.destination.branch.name"),
    *(f"comment.{name}" for name in ("id", "created_on", "content.raw")),
    *(f"comment.user.{name}" for name in ("uuid", "nickname", "display_name", "account_id")),
)
_COMMIT_STATUS = Fields(
    *_COMMON,
    *(f"commit_status.{name}" for name in ("state", "refname", "updated_on", "commit.hash")),
    "commit_status.links.commit.href",
)
_FIELDS: dict[str, Fields] = {
    **{key: _PULL_REQUEST for key in _HANDLERS if key.startswith("pullrequest:")},
    "repo:commit_status_created": _COMMIT_STATUS,
    "repo:commit_status_updated": _COMMIT_STATUS,
    "repo:push": Fields(*_COMMON, "push.changes"),
}
# Any other event is ignored, named in the log by its repository.
_OTHER = Fields(*_COMMON)
