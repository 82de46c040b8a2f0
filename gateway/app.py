"""The Starlette application of the web process."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway import api, api_actions, api_resync, openapi
from gateway.endpoints import ENDPOINTS, Endpoint, warn_insecure
from gateway.figures import refresh
from gateway.settings import GatewaySettings, load_gateway_settings
from gateway.state import AppState
from gateway.webhooks import JSON, Webhook
from handlers.heartbeat import last_beat, silence

logger = logging.getLogger("k8s_ee.gateway")


async def healthz(request: Request) -> Response:
    return JSON({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Ready when Redis answers and a worker was seen within K8S_EE_WORKER_HEARTBEAT_TIMEOUT:
    a gateway whose deliveries nobody would act on is not ready to take them."""
    state: AppState = request.app.state.k8s_ee
    connection = state.settings.connection
    try:
        async with asyncio.timeout(connection.redis_timeout):
            last = await last_beat(state.redis, state.settings.keys)
    except (RedisError, TimeoutError) as exc:
        return JSON(
            {"status": "unavailable", "reason": f"Redis unreachable: {type(exc).__name__}"}, status_code=503
        )
    quiet = silence(last, time.time())
    if quiet > connection.worker_heartbeat_timeout:
        seen = (
            "no worker has ever been seen" if last is None else f"no worker has been seen for {quiet:.0f} s"
        )
        return JSON(
            {
                "status": "unavailable",
                "reason": f"{seen} (K8S_EE_WORKER_HEARTBEAT_TIMEOUT={connection.worker_heartbeat_timeout:g} s): "
                "start `k8s-ee worker`",
            },
            status_code=503,
        )
    return JSON({"status": "ready"})


async def metrics(request: Request) -> Response:
    state: AppState = request.app.state.k8s_ee
    state.metrics.body_bytes_in_flight.set(state.bodies.in_flight)
    connection = state.settings.connection
    try:
        await refresh(
            state.metrics.figures,
            state.redis,
            state.settings.keys,
            connection.queue_name,
            state.statuses,
            datetime.now(UTC),
            connection.redis_timeout,
        )
        async with asyncio.timeout(connection.redis_timeout):
            last = await last_beat(state.redis, state.settings.keys)
        state.metrics.worker_heartbeat_age.set(silence(last, time.time()))
        async with asyncio.timeout(connection.redis_timeout):
            await state.metrics.lifecycle.refresh(state.redis, state.settings.keys)
    except (RedisError, TimeoutError):
        state.metrics.redis_errors.inc()
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSON({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def server_error(request: Request, exc: Exception) -> Response:
    # Reached only by a bug; the sender still gets JSON, and the trace goes to our log.
    logger.exception("unhandled error")
    return JSON({"error": "internal error"}, status_code=500)


class GatewayApp(Starlette):
    """The app, with a shortcut for webhooks: a `POST` to a webhook's exact path goes straight
    to its endpoint, past the middleware and the router, which cost a delivery more than
    anything it does but verify and parse (bench/ingest.py). Nothing is lost on the way: the
    app adds no middleware, and a `Webhook` answers its own errors as `server_error` does.
    Every other request (a webhook path with another method, under a root path) is routed as usual."""

    def __init__(self, *, webhooks: dict[str, ASGIApp], **options: Any) -> None:
        super().__init__(**options)
        self.webhooks = webhooks

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            webhook = self.webhooks.get(scope["path"])
            if webhook is not None:
                scope["app"] = self
                await webhook(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def create_app(
    settings: GatewaySettings | None = None, endpoints: tuple[Endpoint, ...] = ENDPOINTS
) -> GatewayApp:
    """The web app; `endpoints` is the table it serves (gateway/endpoints.py), whose secrets
    the settings hold."""
    settings = settings or load_gateway_settings()
    state = AppState.build(settings, endpoints)
    warn_insecure(state.receivers)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await state.redis.aclose()

    webhooks: dict[str, ASGIApp] = {
        f"/webhooks/{name}": Webhook(receiver, state) for name, receiver in state.receivers.items()
    }
    routes = [Route(path, webhook, methods=["POST"]) for path, webhook in webhooks.items()]
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
            "/api/v1/environments/{provider}/{repository:path}/{number}/{action}",
            api_actions.act_on_environment,
            methods=["POST"],
        ),
        # The repository URL-encoded (acme%2Fweb) or not: it is the path between provider and number.
        Route("/api/v1/environments/{provider}/{repository:path}/{number}", api.get_environment_by_key),
        Route("/api/v1/status-deliveries", api.list_status_deliveries),
        Route("/api/v1/status-deliveries/{delivery_id}", api.get_status_delivery),
        Route("/api/v1/resync-repositories", api_resync.list_hooked),
        Route(
            "/api/v1/resync-repositories/{provider}/{repository:path}",
            api_resync.register_hooked,
            methods=["PUT"],
        ),
        Route(
            "/api/v1/resync-repositories/{provider}/{repository:path}",
            api_resync.unregister_hooked,
            methods=["DELETE"],
        ),
    ]
    app = GatewayApp(
        webhooks=webhooks,
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: http_error, Exception: server_error},
    )
    app.state.k8s_ee = state
    return app
