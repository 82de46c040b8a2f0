"""The admin API's lifecycle actions: hibernate, wake, preserve or unpreserve one environment.

    POST /api/v1/environments/{provider}/{repository}/{number}/hibernate   (wake, preserve, unpreserve)

Nothing here touches the cluster: each action is a `LifecycleEvent` from source `api`, stored and
queued exactly as a webhook's (`webhooks.accept_event`: dedup, the delivery log, the arq job in
one round trip), so the worker's policy decides what it means, in order with everything else. It
counts as activity. The delivery id is the request's `Idempotency-Key` when it sends one (a retry
is then answered `duplicate`), else a fresh `admin-…` id. The command line (`k8s-ee envs
hibernate|wake|preserve …`) calls these routes.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from gateway.api import admin
from gateway.state import AppState
from gateway.webhooks import JSON, accept_event
from providers.events import EventSource, EventType, LifecycleEvent, Provider
from providers.fields import MAX_DELIVERY_ID
from providers.payload import describe
from providers.verdicts import Accepted

ACTIONS: dict[str, EventType] = {
    "hibernate": EventType.ENV_HIBERNATE,
    "wake": EventType.ENV_WAKE,
    "preserve": EventType.ENV_PRESERVE,
    "unpreserve": EventType.ENV_UNPRESERVE,
}
ACTOR = "admin API"


def _bad(reason: str) -> Response:
    return JSON({"error": reason}, status_code=400)


@admin
async def act(request: Request) -> Response:
    state: AppState = request.app.state.k8s_ee
    action = request.path_params["action"]
    if action not in ACTIONS:
        return JSON({"error": f"action must be one of {', '.join(ACTIONS)}"}, status_code=404)
    try:
        provider = Provider(request.path_params["provider"])
    except ValueError:
        return _bad(f"provider must be one of {', '.join(p.value for p in Provider)}")
    repository = request.path_params["repository"]
    number = int(request.path_params["number"])
    key = f"{provider.value}:{repository}:{number}"
    given = request.headers.get("idempotency-key", "").strip()
    if given and (len(given) > MAX_DELIVERY_ID or not given.isprintable()):
        return _bad(f"Idempotency-Key must be a printable id of at most {MAX_DELIVERY_ID} characters")
    # Acting on an environment nobody knows would be queued for nothing: say so now.
    if await state.statuses.get(key) is None:
        return JSON({"error": f"no environment is known for {key}"}, status_code=404)
    try:
        event = LifecycleEvent(
            provider=provider,
            delivery_id=given or f"admin-{uuid.uuid4().hex}",
            type=ACTIONS[action],
            repository=repository,
            number=number,
            actor=ACTOR,
            received_at=datetime.now(UTC),
            source=EventSource.API,
        )
    except ValidationError as exc:
        return _bad(describe(exc))
    return await accept_event(state, Accepted(event), request.headers, b"")
