"""Bitbucket Data Center (formerly Server) webhooks, normalised into `LifecycleEvent`s.

Event keys arrive in `X-Event-Key` (and again as `eventKey` in the body); payloads
follow Atlassian's "Event payload" page for Data Center: `actor` (a user, `name` is
the username), `date` (ISO-8601 with an offset such as `+1000`) and, per event,
`pullRequest` (`fromRef` is the source, `toRef` the target, times in epoch ms),
`comment`, or `repository` and `changes` for a push.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from providers.bitbucket import (
    SERVER_DELIVERY_HEADER,
    event_key,
    field_in,
    header_value,
    hint,
    object_at,
    optional_in,
    timestamp,
)
from providers.bitbucket import verify as verify
from providers.events import Comment, EventType, LifecycleEvent, Provider
from providers.payload import Fields, adapter, branch_from_ref, field, optional, require_json
from providers.verdicts import Accepted, Ignored, Outcome, Pong, bad_request

PROVIDER = Provider.BITBUCKET_SERVER
DELIVERY_HEADER = SERVER_DELIVERY_HEADER
PING = "diagnostics:ping"


def delivery_id(headers: Mapping[str, str]) -> str | None:
    """`X-Request-Id`: a UUID per delivery (Data Center does not retry)."""
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
            actor=optional(self.data, "actor.name", str) or optional(self.data, "actor.slug", str),
            **fields,
        )

    def ignored(self, reason: str) -> Ignored:
        return Ignored(reason=reason, repository=_repository_hint(self.data), type=self.key)


Handler = Callable[[_Delivery], Outcome]


@adapter
def parse(headers: Mapping[str, str], body: bytes, delivery_id: str, received_at: datetime) -> Outcome:
    key = event_key(headers)
    require_json(headers)
    if key == PING:
        # "Test connection" in the webhook settings: the body (`{"test": true}`) says nothing more.
        return Pong()
    return read(key, fields_for(key).load(body), delivery_id, received_at)


def fields_for(key: str) -> Fields:
    """What the handler of event `key` reads of a body."""
    return _FIELDS.get(key, _OTHER)


def read(key: str, data: dict[str, Any], delivery_id: str, received_at: datetime) -> Outcome:
    """The outcome of a delivery of event `key` (not a ping) whose body reads as `data`."""
    # The signature covers the body, not the headers: a body replayed under another event
    # key (an opened pull request posted as `pr:merged`) is caught by the body's own key.
    body_key = optional(data, "eventKey", str)
    if body_key is not None and body_key != key:
        raise bad_request(f"X-Event-Key {key[:64]!r} does not match the payload's eventKey {body_key[:64]!r}")
    delivery = _Delivery(key, data, delivery_id, received_at)
    handler = _HANDLERS.get(key)
    if handler is None:
        return delivery.ignored(f"Bitbucket Data Center event {key[:64]!r} does not affect environments")
    return handler(delivery)


def _repository(data: Mapping[str, Any], path: str) -> str:
    """`PROJECTKEY/repo-slug` of the repository object at `path`."""
    return f"{field(data, f'{path}.project.key', str)}/{field(data, f'{path}.slug', str)}"


def _repository_hint(data: Mapping[str, Any]) -> str | None:
    for path in ("pullRequest.toRef.repository", "repository"):
        key, slug = hint(data, f"{path}.project.key"), hint(data, f"{path}.slug")
        if key and slug:
            return f"{key}/{slug}"
    return None


def _is_fork(data: Mapping[str, Any]) -> bool:
    source_id = optional(data, "pullRequest.fromRef.repository.id", int)
    target_id = optional(data, "pullRequest.toRef.repository.id", int)
    if source_id is not None and target_id is not None:
        return source_id != target_id
    # Without ids, compare project key and slug; an unnamed source counts as foreign.
    source_key = optional(data, "pullRequest.fromRef.repository.project.key", str)
    source_slug = optional(data, "pullRequest.fromRef.repository.slug", str)
    if source_key is None or source_slug is None:
        return True
    return (
        f"{source_key}/{source_slug}".casefold()
        != _repository(data, "pullRequest.toRef.repository").casefold()
    )


def _self_link(data: Mapping[str, Any]) -> str | None:
    links = optional(data, "pullRequest.links.self", list)
    if not links:
        return None
    return optional_in(object_at(links, 0, "pullRequest.links.self"), "pullRequest.links.self.0", "href", str)


def _occurred_at(data: Mapping[str, Any]) -> datetime | None:
    # `date` is when the event happened; `updatedDate` (epoch ms) is the pull request's last change.
    return timestamp(data.get("date"), "date") or timestamp(
        optional(data, "pullRequest.updatedDate", int), "pullRequest.updatedDate"
    )


def _change(d: _Delivery, *, head_required: bool) -> dict[str, Any]:
    """The fields every pull request event carries."""
    data = d.data
    head_sha: str | None
    if head_required:
        head_sha = field(data, "pullRequest.fromRef.latestCommit", str)
        head_ref: str | None = field(data, "pullRequest.fromRef.displayId", str)
    else:
        head_sha = optional(data, "pullRequest.fromRef.latestCommit", str)
        head_ref = optional(data, "pullRequest.fromRef.displayId", str)
    return {
        "number": field(data, "pullRequest.id", int),
        "head_sha": head_sha,
        "head_ref": head_ref,
        "base_ref": optional(data, "pullRequest.toRef.displayId", str),
        "fork": _is_fork(data),
        # Data Center versions without draft pull requests send no field.
        "draft": optional(data, "pullRequest.draft", bool) or False,
        "title": optional(data, "pullRequest.title", str),
        "url": _self_link(data),
        "occurred_at": _occurred_at(data),
    }


def _pull_request_event(kind: EventType, *, head_required: bool, merged: bool = False) -> Handler:
    def handle(d: _Delivery) -> Outcome:
        change = _change(d, head_required=head_required)
        repository = _repository(d.data, "pullRequest.toRef.repository")
        if kind is EventType.CHANGE_CLOSED:
            change["merged"] = merged
        return Accepted(d.event(kind, repository, **change))

    return handle


def _modified(d: _Delivery) -> Outcome:
    # Title, description, target branch or draft state edited. Only leaving draft matters.
    was_draft = optional(d.data, "previousDraft", bool)
    is_draft = optional(d.data, "pullRequest.draft", bool)
    if was_draft and is_draft is False:
        change = _change(d, head_required=True)
        repository = _repository(d.data, "pullRequest.toRef.repository")
        return Accepted(d.event(EventType.CHANGE_READY, repository, **change))
    return d.ignored("pull request edited (title, description or target) without new commits")


def _comment_added(d: _Delivery) -> Outcome:
    data = d.data
    change = _change(d, head_required=False)
    author = optional(data, "comment.author.name", str) or optional(data, "actor.name", str)
    if not author:
        raise bad_request("missing field comment.author.name")
    comment = Comment(
        id=str(field(data, "comment.id", int)),
        body=field(data, "comment.text", str),
        author=author,
    )
    repository = _repository(data, "pullRequest.toRef.repository")
    return Accepted(d.event(EventType.COMMENT_CREATED, repository, comment=comment, **change))


def _refs_changed(d: _Delivery) -> Outcome:
    data = d.data
    changes = field(data, "changes", list)
    # Several refs may change in one push; the last branch update or creation wins.
    chosen: tuple[str, dict[str, Any], str] | None = None
    for index in range(len(changes)):
        change = object_at(changes, index, "changes")
        prefix = f"changes.{index}"
        ref = optional_in(change, prefix, "refId", str) or optional_in(change, prefix, "ref.id", str)
        branch = branch_from_ref(ref) if ref else None
        if branch and field_in(change, prefix, "type", str) in ("ADD", "UPDATE"):
            chosen = (prefix, change, branch)
    if chosen is None:
        return d.ignored("push changed only tags or deleted branches")
    prefix, change, branch = chosen
    event = d.event(
        EventType.PUSH,
        _repository(data, "repository"),
        head_sha=field_in(change, prefix, "toHash", str),
        head_ref=branch,
        occurred_at=timestamp(data.get("date"), "date"),
    )
    return Accepted(event)


_HANDLERS: dict[str, Handler] = {
    "pr:opened": _pull_request_event(EventType.CHANGE_OPENED, head_required=True),
    "pr:from_ref_updated": _pull_request_event(EventType.CHANGE_UPDATED, head_required=True),
    "pr:merged": _pull_request_event(EventType.CHANGE_CLOSED, head_required=False, merged=True),
    "pr:declined": _pull_request_event(EventType.CHANGE_CLOSED, head_required=False),
    "pr:deleted": _pull_request_event(EventType.CHANGE_CLOSED, head_required=False),
    "pr:modified": _modified,
    "pr:comment:added": _comment_added,
    "repo:refs_changed": _refs_changed,
}


# What each handler reads (payload.Fields): tests/providers/test_fields.py checks that each
# comes to the same outcome as with the whole body. `changes` and the links are read whole.
_REPOSITORY = ("project.key", "slug", "id")
_COMMON = (
    *("eventKey", "date", "actor.name", "actor.slug"),
    *(f"repository.{name}" for name in _REPOSITORY),
    *(f"pullRequest.toRef.repository.{name}" for name in _REPOSITORY),
)
_PULL_REQUEST = Fields(
    *_COMMON,
    *(f"pullRequest.fromRef.repository.{name}" for name in _REPOSITORY),
    *(f"pullRequest.{name}" for name in ("id", "draft", "title", "updatedDate", "links.self")),
    *(f"pullRequest.{name}" for name in ("fromRef.latestCommit", "fromRef.displayId", "toRef.displayId")),
    *("previousDraft", "comment.author.name", "comment.id", "comment.text"),
)
_FIELDS: dict[str, Fields] = {
    **{key: _PULL_REQUEST for key in _HANDLERS if key.startswith("pr:")},
    "repo:refs_changed": Fields(*_COMMON, "changes"),
}
# Any other event is ignored, named in the log by its repository.
_OTHER = Fields(*_COMMON)
