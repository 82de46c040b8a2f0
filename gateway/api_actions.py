"""The admin API's write routes: act on an environment, replay a stored delivery.

Nothing here touches the cluster. Each action is a `LifecycleEvent`, stored and queued exactly as
a webhook's (`webhooks.accept_event`: dedup, the delivery log, the stored request, the arq job in
one round trip), under the environment's own provider, so the worker's policy decides what it
means as for any event. Its delivery id is the request's `Idempotency-Key` when it sends one (a
retried request is then answered `duplicate`), else a fresh `admin-…` id.

    POST /api/v1/environments/{provider}/{repository}/{number}/hibernate   (wake, destroy)
    POST /api/v1/environments/{provider}/{repository}/{number}/preserve    {"hours": 24}; unpreserve
    POST /api/v1/environments/{provider}/{repository}/{number}/sync        the change as its host shows it
    POST /api/v1/deliveries/{delivery_id}/replay?provider=…                 queue a stored event again
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from gateway.api import admin, bad_request, environment_key, provider_of
from gateway.bodies import Held, Overloaded, TooLarge, TooSlow, read_body
from gateway.state import AppState
from gateway.webhooks import JSON, accept_event
from providers.events import Comment, EventSource, EventType, LifecycleEvent, Provider
from providers.fields import MAX_DELIVERY_ID
from providers.payload import describe
from providers.verdicts import Accepted

ACTIONS: dict[str, EventType] = {
    "hibernate": EventType.ENV_HIBERNATE,
    "wake": EventType.ENV_WAKE,
    "destroy": EventType.ENV_DESTROY,
}
# Preserving is the chat commands' (handlers/chat.py): the same limit per repository, the same
# expiry. The admin API sends the command, marked as the operator's, so the host is not asked
# whether its author may run it.
COMMANDS = {"preserve": "/preserve", "unpreserve": "/unpreserve"}
SYNC = "sync"
ACTOR = "admin API"
# An action's body is small: a sync's change, or nothing.
MAX_ACTION_BODY = 64 * 1024


class PreserveFor(BaseModel):
    """How long to preserve (the worker's default, 48 h, when left out; it caps what it allows)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hours: int | None = Field(default=None, ge=1, le=100_000, strict=True)


class ChangeSeen(BaseModel):
    """A change as its code host shows it now (what `deliveries recover` sends for Bitbucket): it
    becomes the event the missed webhook would have been, `change.updated` or `change.closed`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    state: Literal["open", "closed", "merged"]
    head_sha: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{7,64}$")
    head_ref: str | None = Field(default=None, max_length=255)
    base_ref: str | None = Field(default=None, max_length=255)
    draft: bool = False
    fork: bool = False
    title: str | None = Field(default=None, max_length=1024)
    url: str | None = Field(default=None, max_length=2048)
    updated_at: datetime | None = None


def _delivery_id(request: Request) -> str:
    given = request.headers.get("idempotency-key", "").strip()
    if given:
        if len(given) > MAX_DELIVERY_ID or not given.isprintable():
            raise ValueError(
                f"Idempotency-Key must be a printable id of at most {MAX_DELIVERY_ID} characters"
            )
        return given
    return f"admin-{uuid.uuid4().hex}"


@admin
async def act_on_environment(request: Request) -> Response:
    state: AppState = request.app.state.k8s_ee
    action = request.path_params["action"]
    if action not in (*ACTIONS, *COMMANDS, SYNC):
        return JSON(
            {"error": f"action must be one of {', '.join((*ACTIONS, *COMMANDS, SYNC))}"}, status_code=404
        )
    # The body counts against the process's budget until the request is answered, as a webhook's.
    held = state.bodies.hold()
    try:
        return await _act(request, state, action, held)
    finally:
        held.release()


async def _act(request: Request, state: AppState, action: str, held: Held) -> Response:
    try:
        key = environment_key(request)
        delivery_id = _delivery_id(request)
        body = await read_body(
            request.headers, request.receive, MAX_ACTION_BODY, state.settings.web.body_read_timeout, held
        )
    except ValueError as exc:
        return bad_request(str(exc))
    except TooLarge:
        return JSON({"error": f"the body is larger than {MAX_ACTION_BODY} bytes"}, status_code=413)
    except TooSlow:
        return JSON({"error": "the body was not received in time"}, status_code=408)
    except Overloaded:
        return JSON(
            {"error": "the gateway is busy; try again"}, status_code=503, headers={"Retry-After": "1"}
        )
    provider = Provider(request.path_params["provider"])
    repository = request.path_params["repository"]
    number = int(request.path_params["number"])
    now = datetime.now(UTC)
    common = {
        "provider": provider,
        "delivery_id": delivery_id,
        "repository": repository,
        "number": number,
        "actor": ACTOR,
        "received_at": now,
        "source": EventSource.API,
    }
    if action == SYNC:
        try:
            seen = ChangeSeen.model_validate_json(body or b"{}")
        except ValidationError as exc:
            return bad_request(describe(exc))
        event = LifecycleEvent(
            **common,
            type=EventType.CHANGE_UPDATED if seen.state == "open" else EventType.CHANGE_CLOSED,
            head_sha=seen.head_sha.lower() if seen.head_sha else None,
            head_ref=seen.head_ref,
            base_ref=seen.base_ref,
            draft=seen.draft,
            fork=seen.fork,
            merged=seen.state == "merged",
            title=seen.title,
            url=seen.url,
            occurred_at=seen.updated_at,
        )
    else:
        command = COMMANDS.get(action)
        if command == "/preserve":
            try:
                hours = PreserveFor.model_validate_json(body or b"{}").hours
            except ValidationError as exc:
                return bad_request(describe(exc))
            command += f" {hours}" if hours is not None else ""
        elif body.strip() not in (b"", b"{}"):
            return bad_request(f"{action} takes no body")
        # Acting on an environment nobody knows would be queued for nothing: say so now.
        if await state.statuses.get(key) is None:
            return JSON({"error": f"no environment is known for {key}"}, status_code=404)
        if command is None:
            event = LifecycleEvent(**common, type=ACTIONS[action])
        else:
            comment = Comment(id=delivery_id, body=command, author=ACTOR)
            event = LifecycleEvent(**common, type=EventType.COMMENT_CREATED, comment=comment, operator=True)
    return await accept_event(state, Accepted(event), request.headers, body)


@admin
async def replay_delivery(request: Request) -> Response:
    state: AppState = request.app.state.k8s_ee
    try:
        provider = provider_of(request.query_params.get("provider"))
    except ValueError as exc:
        return bad_request(str(exc))
    delivery_id = request.path_params["delivery_id"]
    attempts = await state.store.get(delivery_id, provider)
    accepted = [a for a in attempts if a["verdict"] == "accepted" and a.get("event")]
    if not accepted:
        reason = (
            f"delivery {delivery_id} was never accepted ({attempts[-1]['verdict']}): only an accepted delivery "
            "has an event to replay"
            if attempts
            else f"no delivery {delivery_id} in the log (kept for the retention period)"
        )
        return JSON({"error": reason}, status_code=404 if not attempts else 409)
    providers = {a["provider"] for a in accepted}
    if len(providers) > 1:
        return bad_request(
            f"delivery {delivery_id} was accepted from {', '.join(sorted(providers))}: pass ?provider="
        )
    event = LifecycleEvent.model_validate(accepted[0]["event"])
    # What the worker does with it now is recorded afresh.
    await state.statuses.forget_applied(event.provider, event.delivery_id)
    attempt = await state.store.replay(event, datetime.now(UTC), uuid.uuid4().hex)
    state.metrics.count_delivery(event.provider.value, event.type.value, "accepted")
    return JSON(
        {
            "status": "accepted",
            "delivery_id": delivery_id,
            "attempt": attempt,
            "event": orjson.Fragment(event.__pydantic_serializer__.to_json(event)),
        },
        status_code=202,
    )
