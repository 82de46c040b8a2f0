"""GitLab webhooks: verify a delivery and normalise it into a `LifecycleEvent`.

Sans-I/O: pure functions of the headers, the raw body, the configured secrets and
the time, which is passed in.

GitLab proves a delivery in one of two ways, configured per hook:

- the secret token, echoed verbatim in `X-Gitlab-Token`;
- the newer signing token, a Standard Webhooks key (`whsec_<base64 of 32 bytes>`)
  with which GitLab signs `"{webhook-id}.{webhook-timestamp}.{body}"` and sends
  `webhook-signature: v1,<base64 HMAC-SHA256>`; `webhook-id` equals the delivery's
  `Idempotency-Key`. The gateway's signing tokens are configured in that same
  `whsec_` form (`providers.signing.standard_webhook_key` decodes it).

Which events reach us is chosen per hook in GitLab; whatever we do not act on is
`Ignored` (answered 200), never refused, because GitLab disables a hook that keeps
failing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from providers.events import BuildStatus, Comment, EventType, LifecycleEvent, Provider
from providers.payload import (
    NULL_SHA,
    Fields,
    adapter,
    branch_from_ref,
    field,
    optional,
    parse_time,
    require_json,
)
from providers.signing import verify_standard_webhook, verify_token
from providers.verdicts import Accepted, Ignored, Outcome, bad_request, unauthorized

EVENT_HEADER = "X-Gitlab-Event"
TOKEN_HEADER = "X-Gitlab-Token"
SIGNATURE_HEADER = "webhook-signature"
# Signed with the body when the hook has a signing token; equal to `Idempotency-Key`.
WEBHOOK_ID_HEADER = "webhook-id"
# The same for every retry of one event (GitLab 17.4+), so it is the dedup key.
IDEMPOTENCY_HEADER = "Idempotency-Key"
# Older GitLab (16.2+) only: unique per request, so retries are not recognised.
# `X-Gitlab-Event-UUID` is deliberately not used: recursive hooks share it.
WEBHOOK_UUID_HEADER = "X-Gitlab-Webhook-UUID"


def verify(
    headers: Mapping[str, str],
    body: bytes,
    tokens: Sequence[bytes],
    signing_tokens: Sequence[bytes],
    now: float,
) -> None:
    """Refuse (401) a delivery that does not prove it comes from a configured GitLab hook.

    A delivery that carries a signature is judged by the signature alone when signing
    tokens are configured: a wrong signature is refused even if the secret token is
    right, because a signature that does not verify means the body or the key is wrong.
    Several tokens of each kind may be configured, so that either can be rotated.
    """
    if signing_tokens and headers.get(SIGNATURE_HEADER):
        verify_standard_webhook(headers, body, signing_tokens, now)
        return
    if tokens and headers.get(TOKEN_HEADER):
        verify_token(headers.get(TOKEN_HEADER), tokens, TOKEN_HEADER)
        return
    raise unauthorized(_expected_credentials(bool(tokens), bool(signing_tokens)))


def _expected_credentials(has_tokens: bool, has_signing_tokens: bool) -> str:
    if has_tokens and has_signing_tokens:
        return (
            f"missing {TOKEN_HEADER} or {SIGNATURE_HEADER} header: the hook needs its secret or signing token"
        )
    if has_signing_tokens:
        return f"missing {SIGNATURE_HEADER} header: set the hook's signing token in GitLab"
    if has_tokens:
        return f"missing {TOKEN_HEADER} header: set the hook's secret token in GitLab"
    return "no GitLab secret token or signing token is configured on the gateway"


def delivery_id(headers: Mapping[str, str]) -> str | None:
    """The dedup key. A signed delivery's `webhook-id` is covered by its signature, so a
    replay cannot pass for a new delivery by changing an unsigned header; otherwise
    `Idempotency-Key` (kept across GitLab's retries), else the webhook UUID."""
    signed = (headers.get(SIGNATURE_HEADER) or "").strip()
    names = (WEBHOOK_ID_HEADER,) if signed else ()
    for name in (*names, IDEMPOTENCY_HEADER, WEBHOOK_UUID_HEADER):
        value = (headers.get(name) or "").strip()
        if value:
            return value
    return None


class _Delivery(NamedTuple):
    """What the web layer knows about a delivery besides its body."""

    event: str
    delivery_id: str
    received_at: datetime


_Handler = Callable[[dict[str, Any], _Delivery], Outcome]
# Event names and actions come from the sender; a reason quotes at most this much of them.
_QUOTE_LIMIT = 64


@adapter
def parse(headers: Mapping[str, str], body: bytes, delivery_id: str, received_at: datetime) -> Outcome:
    require_json(headers)
    event = (headers.get(EVENT_HEADER) or "").strip()
    if not event:
        raise bad_request(f"missing {EVENT_HEADER} header")
    return read(event, fields_for(event).load(body), delivery_id, received_at)


def fields_for(event: str) -> Fields:
    """What the handler of `event` reads of a body."""
    return _FIELDS.get(event, _OTHER)


def read(event: str, data: dict[str, Any], delivery_id: str, received_at: datetime) -> Outcome:
    """The outcome of a delivery of `event` whose body reads as `data`."""
    delivery = _Delivery(event, delivery_id, received_at)
    handler = _HANDLERS.get(event)
    if handler is None:
        return Ignored(
            reason=f"GitLab event {event[:_QUOTE_LIMIT]!r} does not affect environments",
            repository=_repository_if_any(data),
            type=event[:_QUOTE_LIMIT],
        )
    return handler(data, delivery)


# -- merge requests ---------------------------------------------------------------

# The title prefixes that have marked a draft (older GitLab has no `draft` field).
_DRAFT_TITLE = re.compile(r"\s*(\[(draft|wip)\]|\((draft|wip)\)|(draft|wip):)", re.IGNORECASE)
# Bookkeeping that accompanies every edit and says nothing about what was edited.
_BOOKKEEPING_CHANGES = frozenset({"updated_at", "updated_by_id", "last_edited_at", "last_edited_by_id"})


# A system hook's merge request event may come without `action`; its state says what to do.
_STATE_EVENTS = {
    "opened": (EventType.CHANGE_UPDATED, False),
    "closed": (EventType.CHANGE_CLOSED, False),
    "merged": (EventType.CHANGE_CLOSED, True),
}


def _merge_request(data: dict[str, Any], delivery: _Delivery) -> Outcome:
    iid = field(data, "object_attributes.iid", int)
    if delivery.event == "System Hook" and optional(data, "object_attributes.action", str) is None:
        return _merge_request_state(data, delivery, iid)
    action = field(data, "object_attributes.action", str)[:_QUOTE_LIMIT]
    kind = f"{delivery.event}/{action}"
    merged = False
    match action:
        case "open":
            event_type = EventType.CHANGE_OPENED
        case "reopen":
            event_type = EventType.CHANGE_REOPENED
        case "close":
            event_type = EventType.CHANGE_CLOSED
        case "merge":
            event_type, merged = EventType.CHANGE_CLOSED, True
        case "update":
            state = optional(data, "object_attributes.state", str)
            if state in ("closed", "merged"):
                return Ignored(
                    reason=f"merge request !{iid} is {state}; an update to it does not affect environments",
                    repository=_repository_if_any(data),
                    type=kind,
                )
            if _became_ready(data):
                # Checked before `oldrev`: if commits came with the transition, the
                # event still carries the new head, and "ready" is what must not be lost.
                event_type = EventType.CHANGE_READY
            elif optional(data, "object_attributes.oldrev", str):
                # GitLab sets `oldrev` only when the source branch gained commits
                # (a push, an applied suggestion); everything else is an edit.
                event_type = EventType.CHANGE_UPDATED
            else:
                return Ignored(
                    reason=f"merge request !{iid} was edited without new commits"
                    f"{_edited_fields(data)}; environments are unaffected",
                    repository=_repository_if_any(data),
                    type=kind,
                )
        case _:
            # approved, unapproved, approval, unapproval, and whatever GitLab adds.
            return Ignored(
                reason=f"merge request action {action!r} does not affect environments",
                repository=_repository_if_any(data),
                type=kind,
            )
    return _merge_request_event(data, delivery, iid, event_type, merged)


def _merge_request_event(
    data: dict[str, Any], delivery: _Delivery, iid: int, event_type: EventType, merged: bool
) -> Outcome:
    # A closed change needs no head to tear its environment down; everything else does.
    if event_type is EventType.CHANGE_CLOSED:
        head_sha = optional(data, "object_attributes.last_commit.id", str)
    else:
        head_sha = field(data, "object_attributes.last_commit.id", str)
    return Accepted(
        LifecycleEvent(
            provider=Provider.GITLAB,
            delivery_id=delivery.delivery_id,
            type=event_type,
            repository=_repository(data),
            number=iid,
            head_sha=head_sha,
            head_ref=field(data, "object_attributes.source_branch", str),
            base_ref=optional(data, "object_attributes.target_branch", str),
            actor=optional(data, "user.username", str),
            fork=_is_fork(data, "object_attributes"),
            draft=_is_draft(data, "object_attributes"),
            merged=merged,
            occurred_at=_time(data, "object_attributes.updated_at"),
            received_at=delivery.received_at,
            title=optional(data, "object_attributes.title", str),
            url=optional(data, "object_attributes.url", str),
        )
    )


def _merge_request_state(data: dict[str, Any], delivery: _Delivery, iid: int) -> Outcome:
    """A system hook's merge request without `action`: act on the state it is in.

    The worker is level-triggered, so an open merge request is "deploy its head" (an
    update), a closed or merged one "tear down", whatever edit caused the hook.
    """
    state = field(data, "object_attributes.state", str)[:_QUOTE_LIMIT]
    found = _STATE_EVENTS.get(state)
    if found is None:
        return Ignored(
            reason=f"merge request !{iid} is {state!r}, which does not affect environments",
            repository=_repository_if_any(data),
            type=f"{delivery.event}/{state}",
        )
    event_type, merged = found
    return _merge_request_event(data, delivery, iid, event_type, merged)


def _became_ready(data: dict[str, Any]) -> bool:
    """Whether this update marks a draft ready: `changes.draft` true -> false.

    Older GitLab reports it as `changes.work_in_progress`, or only as a title that
    lost its "Draft:" / "WIP:" prefix.
    """
    if _is_draft(data, "object_attributes"):
        return False
    for name in ("draft", "work_in_progress"):
        previous = optional(data, f"changes.{name}.previous", bool)
        current = optional(data, f"changes.{name}.current", bool)
        if previous is True and current is False:
            return True
    previous_title = optional(data, "changes.title.previous", str)
    current_title = optional(data, "changes.title.current", str)
    return (
        previous_title is not None
        and current_title is not None
        and _DRAFT_TITLE.match(previous_title) is not None
        and _DRAFT_TITLE.match(current_title) is None
    )


def _edited_fields(data: dict[str, Any]) -> str:
    changes = data.get("changes")
    if not isinstance(changes, dict):
        return ""
    names = sorted(str(name) for name in changes if name not in _BOOKKEEPING_CHANGES)
    if not names:
        return ""
    shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
    return f" ({shown})"


# -- comments ---------------------------------------------------------------------


def _note(data: dict[str, Any], delivery: _Delivery) -> Outcome:
    noteable = optional(data, "object_attributes.noteable_type", str)
    action = optional(data, "object_attributes.action", str)
    kind = f"{delivery.event}/{noteable or 'unknown'}"
    if noteable != "MergeRequest":
        return Ignored(
            reason=f"a comment on {noteable or 'an unknown object'!r} does not concern a merge request",
            repository=_repository_if_any(data),
            type=kind,
        )
    # `action` exists since GitLab 16.11, when edits started to be sent too;
    # before that every note hook was a new comment.
    if action is not None and action != "create":
        return Ignored(
            reason=f"comment action {action!r}: only new comments are acted on",
            repository=_repository_if_any(data),
            type=f"{kind}/{action}",
        )
    if optional(data, "object_attributes.system", bool):
        return Ignored(
            reason="system notes are written by GitLab, not by a person",
            repository=_repository_if_any(data),
            type=kind,
        )
    return Accepted(
        LifecycleEvent(
            provider=Provider.GITLAB,
            delivery_id=delivery.delivery_id,
            type=EventType.COMMENT_CREATED,
            repository=_repository(data),
            number=field(data, "merge_request.iid", int),
            head_sha=optional(data, "merge_request.last_commit.id", str),
            head_ref=optional(data, "merge_request.source_branch", str),
            base_ref=optional(data, "merge_request.target_branch", str),
            actor=field(data, "user.username", str),
            fork=_is_fork(data, "merge_request"),
            draft=_is_draft(data, "merge_request"),
            comment=Comment(
                id=str(field(data, "object_attributes.id", int)),
                body=field(data, "object_attributes.note", str),
                author=field(data, "user.username", str),
                # Permissions are asked by user id; `user.id` only exists in newer GitLab.
                author_id=_text(
                    optional(data, "object_attributes.author_id", int) or optional(data, "user.id", int)
                ),
                thread_id=optional(data, "object_attributes.discussion_id", str),
            ),
            occurred_at=_time(data, "object_attributes.created_at"),
            received_at=delivery.received_at,
            title=optional(data, "merge_request.title", str),
            url=optional(data, "merge_request.url", str) or _note_target_url(data),
        )
    )


def _note_target_url(data: dict[str, Any]) -> str | None:
    """The merge request's page from the note's own URL (`.../merge_requests/1#note_7`)."""
    note_url = optional(data, "object_attributes.url", str)
    if note_url is None:
        return None
    return note_url.partition("#")[0] or None


# -- pipelines --------------------------------------------------------------------

# Only finished pipelines are a build result. `manual` (waiting on a manual job),
# `scheduled`, `created`, `waiting_for_resource`, `preparing`, `pending`, `running`
# and `canceling` are all on the way to one of these and are ignored.
_FINISHED = {
    "success": BuildStatus.SUCCESS,
    "failed": BuildStatus.FAILURE,
    "canceled": BuildStatus.CANCELLED,
    # Nothing ran, so nothing was built: as far as deploying goes, it was called off.
    "skipped": BuildStatus.CANCELLED,
}


def _pipeline(data: dict[str, Any], delivery: _Delivery) -> Outcome:
    status = field(data, "object_attributes.status", str)
    kind = f"{delivery.event}/{status}"
    build_status = _FINISHED.get(status)
    if build_status is None:
        return Ignored(
            reason=f"pipeline status {status!r} is not a finished build",
            repository=_repository_if_any(data),
            type=kind,
        )
    ref = field(data, "object_attributes.ref", str)
    if optional(data, "object_attributes.tag", bool):
        return Ignored(
            reason=f"pipeline for tag {ref!r} does not concern a branch",
            repository=_repository_if_any(data),
            type=kind,
        )
    merge_request = optional(data, "merge_request", dict)
    return Accepted(
        LifecycleEvent(
            provider=Provider.GITLAB,
            delivery_id=delivery.delivery_id,
            type=EventType.BUILD_COMPLETED,
            repository=_repository(data),
            number=field(data, "merge_request.iid", int) if merge_request is not None else None,
            head_sha=field(data, "object_attributes.sha", str),
            head_ref=_pipeline_branch(data, ref, merge_request is not None),
            base_ref=optional(data, "merge_request.target_branch", str),
            actor=optional(data, "user.username", str),
            fork=_is_fork(data, "merge_request"),
            build_status=build_status,
            occurred_at=_time(data, "object_attributes.finished_at"),
            received_at=delivery.received_at,
            title=optional(data, "merge_request.title", str),
            url=optional(data, "merge_request.url", str),
        )
    )


def _pipeline_branch(data: dict[str, Any], ref: str, has_merge_request: bool) -> str | None:
    """The branch the pipeline ran for.

    GitLab sends the branch name; a merge request pipeline may carry its
    `refs/merge-requests/<iid>/head` ref instead, whose branch is the source branch.
    """
    if not ref.startswith("refs/"):
        return ref
    branch = branch_from_ref(ref)
    if branch is None and has_merge_request:
        return optional(data, "merge_request.source_branch", str)
    return branch


# -- pushes -----------------------------------------------------------------------


def _push(data: dict[str, Any], delivery: _Delivery) -> Outcome:
    ref = field(data, "ref", str)
    branch = branch_from_ref(ref)
    if branch is None:
        return Ignored(
            reason=f"push to {ref!r} is not a branch push",
            repository=_repository_if_any(data),
            type=delivery.event,
        )
    after = field(data, "after", str)
    if after == NULL_SHA:
        return Ignored(
            reason=f"branch {branch!r} was deleted",
            repository=_repository_if_any(data),
            type=f"{delivery.event}/deleted",
        )
    return Accepted(
        LifecycleEvent(
            provider=Provider.GITLAB,
            delivery_id=delivery.delivery_id,
            type=EventType.PUSH,
            repository=_repository(data),
            head_sha=after,
            head_ref=branch,
            actor=optional(data, "user_username", str),
            # A push payload has commit times, but no time of the push itself.
            occurred_at=None,
            received_at=delivery.received_at,
        )
    )


def _tag_push(data: dict[str, Any], delivery: _Delivery) -> Outcome:
    return Ignored(
        reason="tag pushes do not affect environments",
        repository=_repository_if_any(data),
        type=delivery.event,
    )


def _system_hook(data: dict[str, Any], delivery: _Delivery) -> Outcome:
    """An instance-wide system hook: its push and merge request events share the project format."""
    kind = optional(data, "object_kind", str) or optional(data, "event_name", str) or "unknown"
    handler = _SYSTEM_HOOK_KINDS.get(kind)
    if handler is None:
        return Ignored(
            reason=f"system hook event {kind!r} does not affect environments",
            repository=_repository_if_any(data),
            type=f"{delivery.event}/{kind}",
        )
    return handler(data, delivery)


# -- shared fields ----------------------------------------------------------------


def _repository(data: dict[str, Any]) -> str:
    # The full path, subgroups included (`acme/platform/team/web`).
    path = field(data, "project.path_with_namespace", str)
    if not path.strip():
        raise bad_request("field project.path_with_namespace must not be empty")
    return path


def _repository_if_any(data: dict[str, Any]) -> str | None:
    """The repository for an Ignored outcome's log line; a malformed one is not worth a 400 there."""
    project = data.get("project")
    path = project.get("path_with_namespace") if isinstance(project, dict) else None
    return path if isinstance(path, str) and path.strip() else None


def _text(value: int | None) -> str | None:
    return None if value is None else str(value)


def _is_fork(data: dict[str, Any], prefix: str) -> bool:
    source = optional(data, f"{prefix}.source_project_id", int)
    target = optional(data, f"{prefix}.target_project_id", int)
    return source is not None and target is not None and source != target


def _is_draft(data: dict[str, Any], prefix: str) -> bool:
    draft = optional(data, f"{prefix}.draft", bool)
    if draft is None:
        # Renamed to `draft` in GitLab 13.x; older payloads only have this.
        draft = optional(data, f"{prefix}.work_in_progress", bool)
    return bool(draft)


def _time(data: dict[str, Any], path: str) -> datetime | None:
    # GitLab sends text ("2024-05-14 09:12:44 UTC" or ISO 8601), never a number.
    return parse_time(optional(data, path, str), path)


_HANDLERS: dict[str, _Handler] = {
    "Merge Request Hook": _merge_request,
    "Note Hook": _note,
    # Internal notes: a comment on the merge request all the same.
    "Confidential Note Hook": _note,
    "Pipeline Hook": _pipeline,
    "Push Hook": _push,
    "Tag Push Hook": _tag_push,
    "System Hook": _system_hook,
}

_SYSTEM_HOOK_KINDS: dict[str, _Handler] = {
    "merge_request": _merge_request,
    "push": _push,
    "tag_push": _tag_push,
}


# What each handler reads (payload.Fields): tests/providers/test_fields.py checks that each
# comes to the same outcome as with the whole body. `changes` is read whole (an edit's fields
# are named in the reason).
_CHANGE = (
    *("iid", "source_branch", "target_branch", "source_project_id", "target_project_id"),
    *("draft", "work_in_progress", "title", "url", "last_commit.id"),
)
_MERGE_REQUEST = (
    *("project.path_with_namespace", "user.username", "changes"),
    *(f"object_attributes.{name}" for name in (*_CHANGE, "action", "state", "oldrev", "updated_at")),
)
_PUSH = ("project.path_with_namespace", "ref", "after", "user_username")
_NOTE = Fields(
    *("project.path_with_namespace", "user.username", "user.id"),
    *(f"merge_request.{name}" for name in _CHANGE),
    *(
        f"object_attributes.{name}"
        for name in ("noteable_type", "action", "system", "id", "note", "author_id", "discussion_id")
    ),
    *("object_attributes.created_at", "object_attributes.url"),
)
_FIELDS: dict[str, Fields] = {
    "Merge Request Hook": Fields(*_MERGE_REQUEST),
    "Note Hook": _NOTE,
    # Internal notes: a comment on the merge request all the same.
    "Confidential Note Hook": _NOTE,
    "Pipeline Hook": Fields(
        *("project.path_with_namespace", "user.username"),
        *(f"merge_request.{name}" for name in _CHANGE),
        *(f"object_attributes.{name}" for name in ("status", "ref", "tag", "sha", "finished_at")),
    ),
    "Push Hook": Fields(*_PUSH),
    "System Hook": Fields("object_kind", "event_name", *_MERGE_REQUEST, *_PUSH),
}
# Any other event (and a tag push) is ignored, named in the log by its project.
_OTHER = Fields("project.path_with_namespace")
