"""The admin API (`/api/v1`), behind the bearer token K8S_EE_ADMIN_TOKEN."""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable
from typing import get_args

from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response

from gateway.state import AppState
from gateway.webhooks import JSON
from handlers.pages import BadParameter, cursor_param, limit_param
from handlers.status import EnvironmentStatus
from handlers.status_webhooks import listing as status_listing
from providers.events import Provider
from providers.states import State as StatusState
from providers.verdicts import Verdict

Handler = Callable[[Request], Awaitable[Response]]


def admin(handler: Handler) -> Handler:
    async def guarded(request: Request) -> Response:
        state: AppState = request.app.state.k8s_ee
        tokens = [t.get_secret_value().encode() for t in state.settings.web.admin_token]
        if not tokens:
            return JSON({"error": "the admin API is disabled: set K8S_EE_ADMIN_TOKEN"}, status_code=401)
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        matched = False
        for token in tokens:
            matched |= hmac.compare_digest(token, given.strip().encode("utf-8", "replace"))
        if scheme.lower() != "bearer" or not matched:
            return JSON(
                {"error": "missing or wrong admin token (Authorization: Bearer <K8S_EE_ADMIN_TOKEN>)"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        # The connection has no socket timeout (see state.py): each answer gets one deadline.
        try:
            async with asyncio.timeout(state.settings.connection.redis_timeout * 2):
                return await handler(request)
        except (RedisError, TimeoutError):
            return JSON(
                {"error": "Redis is unreachable; try again"}, status_code=503, headers={"Retry-After": "10"}
            )

    return guarded


def provider_of(value: str | None) -> Provider | None:
    if not value:
        return None
    try:
        return Provider(value)
    except ValueError:
        raise ValueError(f"provider must be one of {', '.join(p.value for p in Provider)}") from None


def bad_request(reason: str) -> Response:
    return JSON({"error": reason}, status_code=400)


@admin
async def list_deliveries(request: Request) -> Response:
    state: AppState = request.app.state.k8s_ee
    query = request.query_params
    try:
        provider = provider_of(query.get("provider"))
    except ValueError as exc:
        return bad_request(str(exc))
    verdict = query.get("verdict") or None
    if verdict is not None and verdict not in get_args(Verdict):
        return bad_request(f"verdict must be one of {', '.join(get_args(Verdict))}")
    try:
        limit, cursor = limit_param(query), cursor_param(query)
    except BadParameter as exc:
        return bad_request(str(exc))
    page, after = await state.store.recent(
        provider=provider,
        repository=query.get("repository") or None,
        verdict=verdict,  # type: ignore[arg-type]
        limit=limit,
        cursor=cursor,
    )
    return JSON(
        {
            "items": [e.model_dump(mode="json") for e in page],
            "next_cursor": str(after) if after is not None else None,
        }
    )


@admin
async def get_delivery(request: Request) -> Response:
    state: AppState = request.app.state.k8s_ee
    try:
        provider = provider_of(request.query_params.get("provider"))
    except ValueError as exc:
        return bad_request(str(exc))
    delivery_id = request.path_params["delivery_id"]
    attempts = await state.store.get(delivery_id, provider)
    if not attempts:
        return JSON(
            {"error": f"no delivery {delivery_id} in the log (kept for the retention period)"},
            status_code=404,
        )
    for attempt in attempts:
        if attempt["verdict"] == "accepted":
            # What the worker did with it: the reconcile that applied it, or why nothing was needed.
            attempt["applied"] = await state.statuses.applied(Provider(attempt["provider"]), delivery_id)
    return JSON({"delivery_id": delivery_id, "attempts": attempts})


@admin
async def list_environments(request: Request) -> Response:
    state: AppState = request.app.state.k8s_ee
    query = request.query_params
    try:
        provider = provider_of(query.get("provider"))
    except ValueError as exc:
        return bad_request(str(exc))
    wanted = query.get("state") or None
    if wanted is not None and wanted not in get_args(StatusState):
        return bad_request(f"state must be one of {', '.join(get_args(StatusState))}")
    found = await state.statuses.recent(
        provider=provider, repository=query.get("repository") or None, state=wanted
    )
    return JSON({"items": [s.model_dump(mode="json") for s in found]})


@admin
async def get_environment(request: Request) -> Response:
    """By namespace: the environment that owns it (one per namespace, whoever sent the news)."""
    state: AppState = request.app.state.k8s_ee
    namespace = request.path_params["namespace"]
    status = await state.statuses.by_namespace(namespace)
    if status is None:
        return JSON({"error": f"no environment with namespace {namespace}"}, status_code=404)
    return await _environment(state, status)


def environment_key(request: Request) -> str:
    """`{provider}:{repository}:{number}` of a path `…/{provider}/{repository}/{number}`; ValueError
    says what is wrong with it."""
    params = request.path_params
    provider = provider_of(params["provider"])
    number = str(params["number"])
    if not (number.isascii() and number.isdigit() and len(number) <= 18):
        raise ValueError("number must be a whole number")
    return f"{provider}:{params['repository']}:{int(number)}"


@admin
async def get_environment_by_key(request: Request) -> Response:
    """By key (provider, repository, number): also the environments that have no namespace
    (skipped, failed before one was chosen, refused one another environment owns)."""
    state: AppState = request.app.state.k8s_ee
    try:
        key = environment_key(request)
    except ValueError as exc:
        return bad_request(str(exc))
    status = await state.statuses.get(key)
    if status is None:
        return JSON(
            {"error": f"no environment {key} (a destroyed one is kept for the retention period)"},
            status_code=404,
        )
    return await _environment(state, status)


async def _environment(state: AppState, status: EnvironmentStatus) -> Response:
    # What the last report back to the code host did (the comment, the native status).
    last_report = await state.statuses.report_state(status.key)
    report = (
        last_report.model_dump(mode="json", exclude={"reported", "comment_digest", "memo"})
        if last_report
        else None
    )
    return JSON({**status.model_dump(mode="json"), "report": report})


@admin
async def list_status_deliveries(request: Request) -> Response:
    state: AppState = request.app.state.k8s_ee
    status, answer = await status_listing.list_deliveries(
        state.redis, state.settings.keys, request.query_params
    )
    return JSON(answer, status_code=status)


@admin
async def get_status_delivery(request: Request) -> Response:
    state: AppState = request.app.state.k8s_ee
    status, answer = await status_listing.get_delivery(
        state.redis, state.settings.keys, request.path_params["delivery_id"]
    )
    return JSON(answer, status_code=status)
