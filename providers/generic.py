"""The generic trigger: any CI asks for an environment to be deployed, destroyed, hibernated or woken,
or relays a comment whose chat commands the worker runs (`action: comment`; `/preserve 24`, say).

The body is small and ours, so it is validated by a pydantic model with no extra keys:
a typo in a CI script gets a 400 naming the field rather than a silently ignored option.

Authentication is either a bearer token (`Authorization: Bearer <token>`) or a Standard
Webhooks signature (`webhook-id`, `webhook-timestamp`, `webhook-signature`). A request
that carries a `webhook-signature` header is judged by that signature alone: a bad or
replayed signature is refused even if a valid token rides along.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from providers import signing
from providers.events import Comment, EventType, LifecycleEvent, Provider
from providers.payload import load_json_object, require_json
from providers.verdicts import Accepted, Outcome, bad_request, unauthorized

AUTHORIZATION_HEADER = "Authorization"
SIGNATURE_HEADER = "webhook-signature"
DELIVERY_HEADER = "webhook-id"

Action = Literal["deploy", "destroy", "hibernate", "wake", "comment"]

ACTION_TYPES: dict[str, EventType] = {
    "deploy": EventType.ENV_DEPLOY,
    "destroy": EventType.ENV_DESTROY,
    "hibernate": EventType.ENV_HIBERNATE,
    "wake": EventType.ENV_WAKE,
    "comment": EventType.COMMENT_CREATED,
}
# Whoever holds the trigger's token: commands relayed through it are trusted.
COMMENT_AUTHOR = "generic-trigger"

# `owner/repo`, or a GitLab path with subgroups: two or more segments of these characters.
_SEGMENT = re.compile(r"[A-Za-z0-9._-]+")
_SHA = re.compile(r"[0-9a-fA-F]{7,64}")
_BRANCH_PREFIX = "refs/heads/"
# Whitespace and control characters are never part of a git branch name.
_NOT_IN_BRANCH = re.compile(r"[\s\x00-\x1f\x7f]")
# A body with many mistakes gets the first few named, not a reason the size of the body.
_MAX_REPORTED_ERRORS = 5


class TriggerBody(BaseModel):
    """What a CI job POSTs to the generic trigger.

    `sha` and `branch` are required for `deploy` only: destroying, hibernating or waking
    acts on the environment that already exists for (repository, number), whatever it
    runs. When they are sent with those actions they are validated and passed on, so the
    worker can tell which commit the caller had in mind. `image` and `config` are accepted
    with any action too, so that one CI template can serve all four; only `deploy` uses them.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: Action
    repository: str = Field(max_length=512)
    # Strict: `true` or `"7"` is a mistake in the sender's script, not a number to guess at.
    number: int = Field(strict=True, ge=1)
    sha: str | None = None
    branch: str | None = Field(default=None, min_length=1, max_length=255)
    image: str | None = Field(default=None, min_length=1, max_length=512)
    # The repository's k8s-ee.yaml as a JSON object; its content is checked where it is used.
    config: dict[str, Any] | None = None
    # With `action: comment`: text whose chat commands (lines starting `/deploy-preview`,
    # `/preserve 24`, ...) are run as if a user with write access had commented them.
    comment: str | None = Field(default=None, min_length=1, max_length=65536)
    occurred_at: datetime | None = None

    @field_validator("repository")
    @classmethod
    def _repository_path(cls, value: str) -> str:
        segments = value.split("/")
        # A segment of dots only ("." or "..") is a path trick, never a namespace or project.
        if len(segments) < 2 or not all(
            _SEGMENT.fullmatch(segment) and segment.strip(".") for segment in segments
        ):
            raise PydanticCustomError(
                "repository_path",
                "must look like owner/repo (or group/subgroup/repo): two or more segments of "
                "letters, digits, '.', '_' or '-'",
            )
        return value

    @field_validator("sha")
    @classmethod
    def _commit_sha(cls, value: str | None) -> str | None:
        if value is None:
            return None
        # Abbreviated hashes are accepted: some CIs only have the short one at hand.
        if not _SHA.fullmatch(value):
            raise PydanticCustomError("commit_sha", "must be a commit hash of 7 to 64 hexadecimal characters")
        # Git prints hashes in lowercase; comparing with what the worker stored must not depend on case.
        return value.lower()

    @field_validator("branch")
    @classmethod
    def _branch_name(cls, value: str | None) -> str | None:
        if value is None:
            return None
        # CI variables often hold the full ref (GITHUB_REF, CI_COMMIT_REF...); the branch is its tail.
        if value.startswith(_BRANCH_PREFIX):
            value = value[len(_BRANCH_PREFIX) :]
        if not value:
            raise PydanticCustomError("branch_empty", "must name a branch")
        if _NOT_IN_BRANCH.search(value):
            raise PydanticCustomError("branch_chars", "must not contain whitespace or control characters")
        return value

    @field_validator("occurred_at")
    @classmethod
    def _as_utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        # A time without an offset is taken as UTC, as the other adapters do.
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def verify(
    headers: Mapping[str, str],
    body: bytes,
    tokens: Sequence[bytes],
    secrets: Sequence[bytes],
    now: float,
) -> None:
    """Refuse (401) unless the request carries a valid signature or bearer token.

    With nothing configured every request is refused: the web layer alone decides
    whether an explicit insecure mode lets unauthenticated triggers through.
    """
    if not tokens and not secrets:
        raise unauthorized("the generic trigger has no bearer token or webhook signing secret configured")
    if headers.get(SIGNATURE_HEADER) is not None:
        if not secrets:
            raise unauthorized(
                f"{SIGNATURE_HEADER} header sent, but no webhook signing secret is configured; "
                f"send {AUTHORIZATION_HEADER}: Bearer <token> instead"
            )
        signing.verify_standard_webhook(headers, body, secrets, now)
        return
    authorization = headers.get(AUTHORIZATION_HEADER)
    if authorization is None:
        raise unauthorized(f"missing {AUTHORIZATION_HEADER} bearer token or {SIGNATURE_HEADER} header")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized(f"{AUTHORIZATION_HEADER} header must be 'Bearer <token>'")
    if not tokens:
        raise unauthorized(
            f"{AUTHORIZATION_HEADER} bearer token sent, but no token is configured; "
            f"sign the request with {SIGNATURE_HEADER} instead"
        )
    signing.verify_token(token.strip(), tokens, f"{AUTHORIZATION_HEADER} bearer token")


def delivery_id(headers: Mapping[str, str]) -> str | None:
    # Standard Webhooks senders keep `webhook-id` across retries; a bearer-token caller
    # usually sends none, and the web layer then hashes the body instead.
    return headers.get(DELIVERY_HEADER) or None


def parse(headers: Mapping[str, str], body: bytes, delivery_id: str, received_at: datetime) -> Outcome:
    require_json(headers)
    data = load_json_object(body)
    try:
        trigger = TriggerBody.model_validate(data)
    except ValidationError as exc:
        raise bad_request(describe(exc)) from None
    if trigger.action == "deploy":
        for name in ("sha", "branch"):
            if getattr(trigger, name) is None:
                raise bad_request(f"field {name}: required when action is 'deploy'")
    if (trigger.action == "comment") != (trigger.comment is not None):
        raise bad_request(
            "field comment: required when action is 'comment'"
            if trigger.action == "comment"
            else "field comment: only with action 'comment'"
        )
    comment = (
        # No host numbers it: its id is its text's digest.
        Comment(
            id=hashlib.sha256(trigger.comment.encode()).hexdigest()[:16],
            body=trigger.comment,
            author=COMMENT_AUTHOR,
        )
        if trigger.comment is not None
        else None
    )
    return Accepted(
        LifecycleEvent(
            provider=Provider.GENERIC,
            delivery_id=delivery_id,
            type=ACTION_TYPES[trigger.action],
            repository=trigger.repository,
            number=trigger.number,
            head_sha=trigger.sha,
            head_ref=trigger.branch,
            image=trigger.image,
            config=trigger.config,
            comment=comment,
            occurred_at=trigger.occurred_at,
            received_at=received_at,
        )
    )


def describe(exc: ValidationError) -> str:
    """pydantic's errors as one line: `field number: Input should be a valid integer; ...`.

    Input values are left out: the reason is shown and logged, and the body is the sender's.
    """
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    parts = []
    for error in errors[:_MAX_REPORTED_ERRORS]:
        location = ".".join(str(part) for part in error["loc"])
        parts.append(f"field {location}: {error['msg']}" if location else str(error["msg"]))
    if len(errors) > _MAX_REPORTED_ERRORS:
        parts.append(f"and {len(errors) - _MAX_REPORTED_ERRORS} more")
    return "; ".join(parts)
