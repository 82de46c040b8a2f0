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
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from providers import signing
from providers.events import Comment, EventType, LifecycleEvent, Provider
from providers.fields import BranchName, ChangeNumber, CommitSha, EventTime, ImageReference, Repository
from providers.payload import adapter, describe, load_json_object, require_json
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

_BRANCH_PREFIX = "refs/heads/"


def _branch_tail(value: object) -> object:
    # CI variables often hold the full ref (GITHUB_REF, CI_COMMIT_REF...); the branch is its tail.
    return (
        value[len(_BRANCH_PREFIX) :] if isinstance(value, str) and value.startswith(_BRANCH_PREFIX) else value
    )


class TriggerBody(BaseModel):
    """What a CI job POSTs to the generic trigger.

    Its fields have the event's own shapes (providers/fields.py), so what is accepted
    here is what the worker can use, and a mistake is named by this body's field name.
    `sha` and `branch` are required for `deploy` only: destroying, hibernating or waking
    acts on the environment that already exists for (repository, number), whatever it
    runs. When they are sent with those actions they are validated and passed on, so the
    worker can tell which commit the caller had in mind. `image` and `config` are accepted
    with any action too, so that one CI template can serve all four; only `deploy` uses them.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: Action
    repository: Repository
    # Strict: `true` or `"7"` is a mistake in the sender's script, not a number to guess at.
    number: Annotated[ChangeNumber, Field(strict=True)]
    sha: CommitSha | None = None
    branch: Annotated[BranchName | None, BeforeValidator(_branch_tail)] = None
    image: ImageReference | None = None
    # The repository's k8s-ee.yaml as a JSON object; the gateway checks it as the worker will
    # (gateway/endpoints.py), before the trigger is accepted.
    config: dict[str, Any] | None = None
    # With `action: comment`: text whose chat commands (lines starting `/deploy-preview`,
    # `/preserve 24`, ...) are run as if a user with write access had commented them.
    comment: str | None = Field(default=None, min_length=1, max_length=65536)
    occurred_at: EventTime | None = None
    # Act on this provider's environment of the same repository and number (a CI step that
    # destroys or hibernates a GitHub pull request's environment, say); default: the
    # generic trigger's own.
    provider: Provider | None = None


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
    # Standard Webhooks senders keep `webhook-id` across retries. A bearer-token caller
    # usually sends none: then each request is a delivery of its own (gateway/endpoints.py),
    # since deploy, destroy, deploy of one body are three commands, not one.
    return headers.get(DELIVERY_HEADER) or None


@adapter
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
            target_provider=None if trigger.provider in (None, Provider.GENERIC) else trigger.provider,
        )
    )
