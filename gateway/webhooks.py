"""The webhook endpoints: read, verify, normalise, store, answer.

Every answer is JSON that a person reading the sender's "recent deliveries" page
understands. Accepted means stored and queued; nothing is acknowledged before.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime

import orjson
from redis.exceptions import RedisError
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from gateway.bodies import Held, Overloaded, TooLarge, TooSlow, read_body
from gateway.endpoints import Receiver, body_hash_id
from gateway.headers import RequestHeaders
from gateway.state import AppState
from gateway.store import entry_json
from providers.events import LifecycleEvent, Provider
from providers.fields import MAX_DELIVERY_ID
from providers.logs import delivery_id_var
from providers.verdicts import Accepted, Ignored, Pong, Refusal, Unusable, Verdict

logger = logging.getLogger("k8s_ee.gateway")


class JSON(Response):
    media_type = "application/json"

    def render(self, content: object) -> bytes:
        return orjson.dumps(content)


class Webhook:
    """`POST /webhooks/{name}` as a plain ASGI app.

    Every delivery comes this way, so it skips what it does not use: the app sends these
    requests here before its middleware and router (`app.GatewayApp`), and no Starlette
    `Request` is built; the headers are read once into a dict (gateway/headers.py)."""

    def __init__(self, receiver: Receiver, state: AppState) -> None:
        self.receiver = receiver
        self.state = state
        self.observe = state.metrics.latency.labels(f"/webhooks/{receiver.name}").observe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        try:
            response = await _receive(RequestHeaders.of(scope), receive, self.receiver, self.state)
        except Exception:
            # Reached only by a bug, as the app's own handler of errors is (app.server_error).
            logger.exception("unhandled error")
            response = JSON({"error": "internal error"}, status_code=500)
        await response(scope, receive, send)
        self.observe(time.perf_counter() - started)


async def _receive(
    headers: RequestHeaders, receive: Receive, receiver: Receiver, state: AppState
) -> Response:
    received_at = datetime.now(UTC)
    delivery_id = receiver.guess_delivery_id(headers)
    token = delivery_id_var.set(delivery_id)
    # The body's bytes count against the process's budget until the delivery is answered.
    held = state.bodies.hold()
    try:
        return await _deliver(headers, receive, receiver, state, received_at, held, delivery_id)
    finally:
        held.release()
        delivery_id_var.reset(token)


async def _deliver(
    headers: RequestHeaders,
    receive: Receive,
    receiver: Receiver,
    state: AppState,
    received_at: datetime,
    held: Held,
    delivery_id: str | None,
) -> Response:
    web = state.settings.web
    provider = receiver.guess_provider(headers)

    # Before the body: a request that carries no credential at all costs nothing more.
    try:
        receiver.precheck(headers)
        body = await read_body(headers, receive, web.max_body_bytes, web.body_read_timeout, held)
    except Refusal as refusal:
        return await _refused(state, provider, delivery_id or "unknown", received_at, refusal)
    except TooLarge:
        return await _refused(
            state,
            provider,
            delivery_id or "unknown",
            received_at,
            Refusal(413, f"body is larger than the limit of {web.max_body_bytes} bytes"),
        )
    except TooSlow:
        return await _refused(
            state,
            provider,
            delivery_id or "unknown",
            received_at,
            Refusal(408, f"the body was not received within {web.body_read_timeout:g} s"),
        )
    except Overloaded:
        return _overloaded(state, provider)
    except ClientDisconnect:
        return JSON({"status": "rejected", "reason": "client disconnected"}, status_code=400)

    try:
        receiver.verify(headers, body, received_at.timestamp())
    except Refusal as refusal:
        return await _refused(
            state, provider, delivery_id or body_hash_id(provider, body), received_at, refusal
        )
    except Exception:
        # A bug in a check, never the sender's fault to know about: refused all the same, and logged.
        logger.exception("verifying a delivery failed unexpectedly")
        failed = Refusal(401, "the delivery could not be verified (an error in the gateway, logged there)")
        return await _refused(
            state, provider, delivery_id or body_hash_id(provider, body), received_at, failed
        )

    refused: LifecycleEvent | None = None
    try:
        adapter = receiver.adapter(headers)
        provider = adapter.provider
        delivery_id = adapter.delivery_id(headers) or adapter.fallback_id(provider, body)
        if len(delivery_id) > MAX_DELIVERY_ID or not delivery_id.isprintable():
            delivery_id = body_hash_id(provider, body)
            raise Unusable(f"delivery id header is not a printable id of at most {MAX_DELIVERY_ID} chars")
        delivery_id_var.set(delivery_id)
        outcome = adapter.parse(headers, body, delivery_id, received_at)
        if isinstance(outcome, Accepted):
            receiver.endpoint.check(outcome.event)
            reason = state.allowlist.refusal(outcome.event.repository)
            if reason is not None:
                refused = outcome.event
                raise Refusal(403, reason)
    except Unusable as problem:
        return await _unusable(
            state, receiver, provider, delivery_id or body_hash_id(provider, body), received_at, problem
        )
    except Refusal as refusal:
        # A refused repository is logged under its name, so its owners can find why.
        repository = refused.repository if refusal.status == 403 and refused else None
        return await _refused(
            state, provider, delivery_id or body_hash_id(provider, body), received_at, refusal, repository
        )
    except Exception:
        # A verified delivery the gateway failed to read (a bug): never a 500, and never a
        # failure that would make a code host disable its hook.
        logger.exception("reading a verified delivery failed unexpectedly")
        unread = Unusable("the gateway could not read this delivery (an error in the gateway, logged there)")
        return await _unusable(
            state, receiver, provider, delivery_id or body_hash_id(provider, body), received_at, unread
        )

    if isinstance(outcome, Accepted):
        return await accept_event(state, outcome, headers, body)
    if isinstance(outcome, Pong):
        await _log(state, provider, delivery_id, received_at, "pong", 200, "ping received", None, None)
        return JSON({"status": "pong", "delivery_id": delivery_id})
    assert isinstance(outcome, Ignored)
    await _log(
        state,
        provider,
        delivery_id,
        received_at,
        "ignored",
        200,
        outcome.reason,
        outcome.repository,
        outcome.type,
    )
    return JSON({"status": "ignored", "delivery_id": delivery_id, "reason": outcome.reason})


async def _unusable(
    state: AppState,
    receiver: Receiver,
    provider: Provider,
    delivery_id: str,
    received_at: datetime,
    problem: Unusable,
) -> Response:
    """A verified delivery of a shape the gateway cannot act on: 200 `unusable` for a code
    host (which would disable a failing hook), 400 for the generic trigger."""
    if receiver.endpoint.refuses_unusable:
        return await _refused(state, provider, delivery_id, received_at, problem)
    await _log(state, provider, delivery_id, received_at, "unusable", 200, problem.reason, None, None)
    logger.warning("delivery unusable: %s", problem.reason, extra={"provider": provider.value})
    return JSON({"status": "unusable", "delivery_id": delivery_id, "reason": problem.reason})


def _overloaded(state: AppState, provider: Provider) -> Response:
    # Shedding load: nothing is written anywhere, so the answer stays as cheap as it can be.
    state.metrics.count_delivery(provider.value, None, "unavailable")
    logger.warning("body bytes in flight at the limit (K8S_EE_MAX_BODY_BYTES_IN_FLIGHT): answered 503")
    return JSON(
        {
            "status": "unavailable",
            "reason": "the gateway is receiving too many request bodies at once; retry shortly",
        },
        status_code=503,
        headers={"Retry-After": "5"},
    )


async def accept_event(
    state: AppState, outcome: Accepted, headers: Mapping[str, str], body: bytes
) -> Response:
    """Store and queue an accepted event, and answer for it: the path of every event, whoever sent it."""
    event = outcome.event
    event_json = event.__pydantic_serializer__.to_json(event)
    try:
        result = await state.store.accept(event, event_json, headers, body)
    except RedisError as exc:
        return _unavailable(state, event.provider, event.type.value, exc)
    verdict: Verdict = "accepted" if result.accepted else "duplicate"
    state.metrics.count_delivery(event.provider.value, event.type.value, verdict)
    logger.info(
        "delivery %s",
        verdict,
        extra={
            "provider": event.provider.value,
            "event_type": event.type.value,
            "repository": event.repository,
        },
    )
    if not result.accepted:
        return JSON(
            {
                "status": "duplicate",
                "delivery_id": event.delivery_id,
                "reason": f"this delivery was already accepted at {result.first_seen.isoformat()}; nothing done",
            }
        )
    return JSON(
        {"status": "accepted", "delivery_id": event.delivery_id, "event": orjson.Fragment(event_json)},
        status_code=202,
    )


async def _refused(
    state: AppState,
    provider: Provider,
    delivery_id: str,
    received_at: datetime,
    refusal: Refusal,
    repository: str | None = None,
) -> Response:
    await _log(
        state,
        provider,
        delivery_id,
        received_at,
        "rejected",
        refusal.status,
        refusal.reason,
        repository,
        None,
    )
    logger.info(
        "delivery rejected: %s", refusal.reason, extra={"provider": provider.value, "status": refusal.status}
    )
    return JSON(
        {"status": "rejected", "delivery_id": delivery_id, "reason": refusal.reason},
        status_code=refusal.status,
    )


async def _log(
    state: AppState,
    provider: Provider,
    delivery_id: str,
    received_at: datetime,
    verdict: Verdict,
    status: int,
    reason: str,
    repository: str | None,
    event_type: str | None,
) -> None:
    state.metrics.count_delivery(provider.value, event_type, verdict)
    entry = entry_json(
        provider=provider,
        delivery_id=delivery_id,
        verdict=verdict,
        status=status,
        received_at=received_at,
        reason=reason,
        repository=repository,
        event_type=event_type,
    )
    try:
        await state.store.log(provider, delivery_id, received_at, repository, entry)
    except RedisError as exc:
        # The answer to the sender does not depend on the log: say so in our own log and go on.
        state.metrics.redis_errors.inc()
        logger.warning("could not record the delivery in the log: %s", type(exc).__name__)


def _unavailable(state: AppState, provider: Provider, event_type: str, exc: RedisError) -> Response:
    state.metrics.redis_errors.inc()
    state.metrics.count_delivery(provider.value, event_type, "unavailable")
    logger.error("could not store the delivery: %s: %s", type(exc).__name__, exc)
    return JSON(
        {
            "status": "unavailable",
            "reason": "the gateway could not confirm storing this delivery (queue storage unreachable or too slow); "
            "redeliver it: if it was stored after all, the redelivery is answered duplicate and nothing is done twice",
        },
        status_code=503,
        headers={"Retry-After": "10"},
    )
