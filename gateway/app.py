"""The Starlette application of the web process."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway import api, api_actions, openapi
from gateway.endpoints import warn_insecure
from gateway.settings import GatewaySettings, load_gateway_settings
from gateway.state import AppState
from gateway.webhooks import JSON, endpoint

logger = logging.getLogger("k8s_ee.gateway")


async def healthz(request: Request) -> Response:
    return JSON({"status": "ok"})


async def readyz(request: Request) -> Response:
    state: AppState = request.app.state.k8s_ee
    try:
        async with asyncio.timeout(state.settings.connection.redis_timeout):
            await state.redis.ping()
    except (RedisError, TimeoutError) as exc:
        return JSON(
            {"status": "unavailable", "reason": f"Redis unreachable: {type(exc).__name__}"}, status_code=503
        )
    return JSON({"status": "ready"})


async def metrics(request: Request) -> Response:
    state: AppState = request.app.state.k8s_ee
    try:
        state.metrics.queue_depth.set(await state.store.queue_depth())
        # Written by the worker after each call to a host (handlers/report.py), per provider/installation.
        for key, remaining in (await state.store.rate_limits()).items():
            state.metrics.rate_limit_remaining.labels(key).set(remaining)
    except RedisError:
        state.metrics.redis_errors.inc()
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSON({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def server_error(request: Request, exc: Exception) -> Response:
    # Reached only by a bug; the sender still gets JSON, and the trace goes to our log.
    logger.exception("unhandled error")
    return JSON({"error": "internal error"}, status_code=500)


def create_app(settings: GatewaySettings | None = None) -> Starlette:
    settings = settings or load_gateway_settings()
    state = AppState.build(settings)
    warn_insecure(state.receivers)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await state.redis.aclose()

    routes = [
        Route(f"/webhooks/{name}", endpoint(receiver, state), methods=["POST"])
        for name, receiver in state.receivers.items()
    ]
    routes += [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
        Route("/api/v1/openapi.json", openapi.serve),
        Route("/api/v1/deliveries", api.list_deliveries),
        Route("/api/v1/deliveries/{delivery_id:path}/replay", api_actions.replay_delivery, methods=["POST"]),
        Route("/api/v1/deliveries/{delivery_id:path}", api.get_delivery),
        Route("/api/v1/environments", api.list_environments),
        Route("/api/v1/environments/{namespace}", api.get_environment),
        Route(
            "/api/v1/environments/{provider}/{repository:path}/{number:int}/{action}",
            api_actions.act_on_environment,
            methods=["POST"],
        ),
        Route("/api/v1/environments/{provider}/{repository:path}/{number:int}", api.get_environment_by_key),
        Route("/api/v1/status-deliveries", api.list_status_deliveries),
        Route("/api/v1/status-deliveries/{delivery_id}", api.get_status_delivery),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: http_error, Exception: server_error},
    )
    app.state.k8s_ee = state
    return app
