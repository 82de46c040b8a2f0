"""GitHub webhooks: check `X-Hub-Signature-256`, then normalise the events that touch environments.

Sans-I/O, like every adapter: the web layer reads the request and the clock and passes
them in. Only `pull_request`, `issue_comment`, `workflow_run`, `check_suite`, `push` and
`ping` mean something here; every other event and action is `Ignored` with a reason, so
that a hook subscribed to "everything" still gets a 2xx for each delivery.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from providers import payload, signing
from providers.events import BuildStatus, Comment, EventType, LifecycleEvent, Provider
from providers.payload import NULL_SHA, Fields, adapter, branch_from_ref, field, optional
from providers.verdicts import (
    Accepted,
    Ignored,
    Outcome,
    Pong,
    Unusable,
    bad_request,
    unauthorized,
    unsupported_media_type,
)

EVENT_HEADER = "X-GitHub-Event"
DELIVERY_HEADER = "X-GitHub-Delivery"
SIGNATURE_HEADER = "X-Hub-Signature-256"

# pull_request actions that change what an environment should run; every other action
# (labeled, assigned, edited, review_requested, converted_to_draft...) is Ignored.
PULL_REQUEST_ACTIONS: dict[str, EventType] = {
    "opened": EventType.CHANGE_OPENED,
    "reopened": EventType.CHANGE_REOPENED,
    "synchronize": EventType.CHANGE_UPDATED,
    "ready_for_review": EventType.CHANGE_READY,
    "closed": EventType.CHANGE_CLOSED,
}

# Conclusions of a completed workflow run or check suite. GitHub's branch protection
# counts `neutral` as passing, so it is a success here too. `cancelled`, `skipped` and
# `stale` (GitHub gave up waiting on the suite) produced no verdict on the commit: they
# become CANCELLED, which neither deploys nor reports a failure. A missing conclusion on
# a completed run has not been decided yet: PENDING.
BUILD_CONCLUSIONS: dict[str | None, BuildStatus] = {
    "success": BuildStatus.SUCCESS,
    "neutral": BuildStatus.SUCCESS,
    "failure": BuildStatus.FAILURE,
    "timed_out": BuildStatus.FAILURE,
    "startup_failure": BuildStatus.FAILURE,
    "action_required": BuildStatus.FAILURE,
    "cancelled": BuildStatus.CANCELLED,
    "skipped": BuildStatus.CANCELLED,
    "stale": BuildStatus.CANCELLED,
    None: BuildStatus.PENDING,
}

# Event names and actions come from the sender; a reason quotes at most this much of them.
_QUOTE_LIMIT = 64


def verify(headers: Mapping[str, str], body: bytes, secrets: Sequence[bytes]) -> None:
    """Refuse (401) unless `X-Hub-Signature-256` is the HMAC of the raw body under one of the secrets."""
    if not secrets:
        raise unauthorized("no GitHub webhook secret is configured")
    signing.verify_hub_signature(headers.get(SIGNATURE_HEADER), body, secrets, SIGNATURE_HEADER)


def delivery_id(headers: Mapping[str, str]) -> str | None:
    # The same GUID comes back on a manual or API redelivery, which is what dedup wants.
    return headers.get(DELIVERY_HEADER) or None


@adapter
def parse(headers: Mapping[str, str], body: bytes, delivery_id: str, received_at: datetime) -> Outcome:
    event = headers.get(EVENT_HEADER, "").strip()
    if not event:
        raise bad_request(f"missing {EVENT_HEADER} header")
    data = fields_for(event).load(_json_body(headers, body))
    return read(event, data, delivery_id, received_at)


def fields_for(event: str) -> Fields:
    """What the handler of `event` reads of a body."""
    return _FIELDS.get(event, _OTHER)


def read(event: str, data: dict[str, Any], delivery_id: str, received_at: datetime) -> Outcome:
    """The outcome of a delivery of `event` whose body reads as `data`."""
    if event == "ping":
        return Pong()
    handler = _HANDLERS.get(event)
    if handler is None:
        return Ignored(
            f"GitHub event {_quote(event)} does not affect environments",
            repository=_repository_or_none(data),
            type=event[:_QUOTE_LIMIT],
        )
    return handler(data, _Delivery(delivery_id, received_at))


@dataclass(frozen=True, slots=True)
class _Delivery:
    """What the web layer knows about the delivery, carried into the event."""

    delivery_id: str
    received_at: datetime


def _json_body(headers: Mapping[str, str], body: bytes) -> bytes:
    # A hook's "Content type" setting is either application/json or the older form
    # encoding, where the same JSON travels in a `payload` field.
    media_type = payload.media_type(headers)
    if media_type == payload.FORM_TYPE:
        return payload.form_payload(body)
    if payload.is_json_media_type(media_type):
        return body
    raise unsupported_media_type(
        "Content-Type must be application/json or application/x-www-form-urlencoded, "
        f"got {media_type[:_QUOTE_LIMIT] or 'none'!r}"
    )


def _pull_request(data: dict[str, Any], delivery: _Delivery) -> Outcome:
    action = field(data, "action", str)
    repository = field(data, "repository.full_name", str)
    event_type = PULL_REQUEST_ACTIONS.get(action)
    if event_type is None:
        return Ignored(
            f"pull_request action {_quote(action)} does not affect environments",
            repository=repository,
            type=f"pull_request.{action[:_QUOTE_LIMIT]}",
        )
    closed = event_type is EventType.CHANGE_CLOSED
    merged = False
    if closed:
        # `merged` is always sent; `merged_at` is the fallback for trimmed payloads.
        merged_flag = optional(data, "pull_request.merged", bool)
        merged = (
            merged_flag
            if merged_flag is not None
            else optional(data, "pull_request.merged_at", str) is not None
        )
    return Accepted(
        LifecycleEvent(
            provider=Provider.GITHUB,
            delivery_id=delivery.delivery_id,
            type=event_type,
            repository=repository,
            number=_positive(data, "pull_request.number"),
            head_sha=field(data, "pull_request.head.sha", str),
            head_ref=field(data, "pull_request.head.ref", str),
            base_ref=field(data, "pull_request.base.ref", str),
            actor=optional(data, "sender.login", str),
            fork=_is_fork(data),
            draft=bool(optional(data, "pull_request.draft", bool)),
            merged=merged,
            occurred_at=_time(data, "pull_request.closed_at" if closed else "pull_request.updated_at"),
            received_at=delivery.received_at,
            title=optional(data, "pull_request.title", str),
            url=optional(data, "pull_request.html_url", str),
            comments=_count(data, "pull_request.comments"),
        )
    )


def _count(data: dict[str, Any], path: str) -> int | None:
    """A count the event only passes on as a hint: absent, or not a count, is None, never a refusal."""
    try:
        value = optional(data, path, int)
    except Unusable:
        return None
    return value if value is not None and value >= 0 else None


def _is_fork(data: dict[str, Any]) -> bool:
    # A null head repository means the fork it came from has been deleted, which
    # can only happen to a fork: the base repository cannot vanish under its own PR.
    if optional(data, "pull_request.head.repo", dict) is None:
        return True
    head = field(data, "pull_request.head.repo.full_name", str)
    base = field(data, "pull_request.base.repo.full_name", str)
    return head.casefold() != base.casefold()


def _issue_comment(data: dict[str, Any], delivery: _Delivery) -> Outcome:
    action = field(data, "action", str)
    repository = field(data, "repository.full_name", str)
    if action != "created":
        # Commands are read from new comments only: editing an old "/preview" comment
        # must not run it again, and a deleted comment takes nothing back.
        return Ignored(
            f"issue_comment action {_quote(action)} does not affect environments",
            repository=repository,
            type=f"issue_comment.{action[:_QUOTE_LIMIT]}",
        )
    # GitHub treats every pull request as an issue; only those carry `issue.pull_request`.
    if optional(data, "issue.pull_request", dict) is None:
        return Ignored(
            "comment on an issue, not on a pull request",
            repository=repository,
            type="issue_comment.created",
        )
    return Accepted(
        LifecycleEvent(
            provider=Provider.GITHUB,
            delivery_id=delivery.delivery_id,
            type=EventType.COMMENT_CREATED,
            repository=repository,
            number=_positive(data, "issue.number"),
            actor=optional(data, "sender.login", str) or field(data, "comment.user.login", str),
            draft=bool(optional(data, "issue.draft", bool)),
            comment=Comment(
                id=str(field(data, "comment.id", int)),
                body=field(data, "comment.body", str),
                author=field(data, "comment.user.login", str),
            ),
            occurred_at=_time(data, "comment.created_at"),
            received_at=delivery.received_at,
            title=optional(data, "issue.title", str),
            url=optional(data, "issue.html_url", str),
        )
    )


def _workflow_run(data: dict[str, Any], delivery: _Delivery) -> Outcome:
    return _build(data, delivery, "workflow_run")


def _check_suite(data: dict[str, Any], delivery: _Delivery) -> Outcome:
    return _build(data, delivery, "check_suite")


def _build(data: dict[str, Any], delivery: _Delivery, kind: str) -> Outcome:
    """`workflow_run` and `check_suite` share the fields that matter, under different roots."""
    action = field(data, "action", str)
    repository = field(data, "repository.full_name", str)
    if action != "completed":
        return Ignored(
            f"{kind} action {_quote(action)} is not a finished build",
            repository=repository,
            type=f"{kind}.{action[:_QUOTE_LIMIT]}",
        )
    conclusion = optional(data, f"{kind}.conclusion", str)
    status = BUILD_CONCLUSIONS.get(conclusion)
    if status is None:
        return Ignored(
            f"{kind} conclusion {_quote(conclusion or '')} is not one this gateway knows",
            repository=repository,
            type=f"{kind}.completed",
        )
    number, fork = _linked_pull_request(data, f"{kind}.pull_requests")
    if kind == "workflow_run":
        head_repository = optional(data, "workflow_run.head_repository.full_name", str)
        fork = fork or (head_repository is not None and head_repository.casefold() != repository.casefold())
    return Accepted(
        LifecycleEvent(
            provider=Provider.GITHUB,
            delivery_id=delivery.delivery_id,
            type=EventType.BUILD_COMPLETED,
            repository=repository,
            number=number,
            head_sha=field(data, f"{kind}.head_sha", str),
            # Null when the build ran for a fork's pull request.
            head_ref=optional(data, f"{kind}.head_branch", str),
            actor=optional(data, "sender.login", str),
            fork=fork,
            build_status=status,
            occurred_at=_time(data, f"{kind}.updated_at"),
            received_at=delivery.received_at,
        )
    )


def _linked_pull_request(data: dict[str, Any], path: str) -> tuple[int | None, bool]:
    """The number of the pull request a build belongs to, and whether it comes from a fork.

    GitHub lists every open pull request whose head is the built commit, and that can
    include pull requests of other repositories in the same fork network; only one whose
    base is this repository counts. Builds for a fork's pull request come with an empty
    list, so no number is the normal answer there.
    """
    entries = optional(data, path, list)
    repository_id = optional(data, "repository.id", int)
    for index, entry in enumerate(entries or []):
        where = f"{path}[{index}]"
        if not isinstance(entry, Mapping):
            raise bad_request(f"field {where} must be of type object")
        base_id = _repo_id(entry, "base")
        if repository_id is not None and base_id is not None and base_id != repository_id:
            continue
        number = entry.get("number")
        if isinstance(number, bool) or not isinstance(number, int) or number < 1:
            raise bad_request(f"field {where}.number must be a positive integer")
        head_id = _repo_id(entry, "head")
        return number, head_id is not None and base_id is not None and head_id != base_id
    return None, False


def _repo_id(entry: Mapping[str, Any], side: str) -> int | None:
    ref = entry.get(side)
    repo = ref.get("repo") if isinstance(ref, Mapping) else None
    repo_id = repo.get("id") if isinstance(repo, Mapping) else None
    return repo_id if isinstance(repo_id, int) and not isinstance(repo_id, bool) else None


def _push(data: dict[str, Any], delivery: _Delivery) -> Outcome:
    repository = field(data, "repository.full_name", str)
    ref = field(data, "ref", str)
    branch = branch_from_ref(ref)
    if branch is None:
        return Ignored(f"push to {_quote(ref)} is not a branch push", repository=repository, type="push")
    after = field(data, "after", str)
    if optional(data, "deleted", bool) or after == NULL_SHA:
        return Ignored(f"push deleted branch {_quote(branch)}", repository=repository, type="push")
    return Accepted(
        LifecycleEvent(
            provider=Provider.GITHUB,
            delivery_id=delivery.delivery_id,
            type=EventType.PUSH,
            repository=repository,
            head_sha=after,
            head_ref=branch,
            actor=optional(data, "sender.login", str) or optional(data, "pusher.name", str),
            occurred_at=_push_time(data),
            received_at=delivery.received_at,
        )
    )


def _push_time(data: dict[str, Any]) -> datetime | None:
    """When the push happened: `repository.pushed_at`, which push payloads send as epoch seconds.

    The head commit's timestamp is only the fallback: it is when the commit was written,
    which for a rebased or long-lived branch can be days before the push.
    """
    pushed_at = optional(data, "repository.pushed_at", object)
    if isinstance(pushed_at, int) and not isinstance(pushed_at, bool):
        try:
            return payload.within_bounds(datetime.fromtimestamp(pushed_at, tz=UTC), "repository.pushed_at")
        except (OverflowError, OSError, ValueError):
            raise bad_request("field repository.pushed_at is out of range") from None
    if isinstance(pushed_at, str):
        return payload.parse_time(pushed_at, "repository.pushed_at")
    return _time(data, "head_commit.timestamp")


def _time(data: dict[str, Any], path: str) -> datetime | None:
    # Only text is handed on: GitHub's timestamps are ISO-8601 strings everywhere but
    # `repository.pushed_at`, which `_push_time` reads itself.
    return payload.parse_time(optional(data, path, str), path)


def _positive(data: dict[str, Any], path: str) -> int:
    number = field(data, path, int)
    if number < 1:
        raise bad_request(f"field {path} must be a positive integer")
    return number


def _repository_or_none(data: dict[str, Any]) -> str | None:
    # Only for the log line of an ignored event: a payload without a usable name is no error.
    repository = data.get("repository")
    name = repository.get("full_name") if isinstance(repository, Mapping) else None
    return name if isinstance(name, str) else None


def _quote(text: str) -> str:
    return repr(text[:_QUOTE_LIMIT])


_HANDLERS: dict[str, Callable[[dict[str, Any], _Delivery], Outcome]] = {
    "pull_request": _pull_request,
    "issue_comment": _issue_comment,
    "workflow_run": _workflow_run,
    "check_suite": _check_suite,
    "push": _push,
}


def _build_fields(kind: str) -> tuple[str, ...]:
    return (
        *_COMMON,
        "repository.id",
        f"{kind}.conclusion",
        f"{kind}.pull_requests[].number",
        f"{kind}.pull_requests[].base.repo.id",
        f"{kind}.pull_requests[].head.repo.id",
        f"{kind}.head_sha",
        f"{kind}.head_branch",
        f"{kind}.updated_at",
    )


# What every handler reads first (and an ignored event's log line).
_COMMON = ("action", "repository.full_name", "sender.login")
# What each handler reads (payload.Fields): tests/providers/test_fields.py checks that each
# comes to the same outcome as with the whole body.
_FIELDS: dict[str, Fields] = {
    "ping": Fields(),
    "pull_request": Fields(
        *_COMMON,
        *(
            f"pull_request.{name}"
            for name in (
                *("number", "merged", "merged_at", "draft", "title", "html_url", "updated_at", "closed_at"),
                "comments",
                *("head.sha", "head.ref", "head.repo.full_name", "base.ref", "base.repo.full_name"),
            )
        ),
    ),
    "issue_comment": Fields(
        *_COMMON,
        *(f"issue.{name}" for name in ("pull_request", "number", "draft", "title", "html_url")),
        *(f"comment.{name}" for name in ("id", "body", "created_at", "user.login")),
    ),
    "workflow_run": Fields(*_build_fields("workflow_run"), "workflow_run.head_repository.full_name"),
    "check_suite": Fields(*_build_fields("check_suite")),
    "push": Fields(
        *_COMMON,
        *("ref", "after", "deleted", "pusher.name", "repository.pushed_at", "head_commit.timestamp"),
    ),
}
# Any other event is ignored, named in the log by its repository.
_OTHER = Fields("repository.full_name")
