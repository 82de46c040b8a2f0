"""The wake service: where a hibernated environment's preview host is sent, until its app is up again.

While an environment sleeps, its Ingress sends its host to an ExternalName Service naming this
service (handlers/hibernate.py), on its own port (K8S_EE_WAKE_PORT), so preview hosts never
reach the webhooks or the admin API. A request for `https://{namespace}.{domain}/anything`:

- finds the environment by the host's first label (and checks the whole host is its preview's);
- if it sleeps, asks for it to be woken once (an `env.wake` event from source `visit`, stored and
  queued like a webhook's; a crowd of visitors asks once) and counts as activity;
- answers a browser (`Accept: text/html`) with the waiting page (gateway/wake_page.py), anything
  else with `503` and `Retry-After`: an API client is told to come back, not held.

The page follows `/.k8s-ee-wake/events`, a server-sent event stream of the environment's
progress. Streams are the only requests held open, and they are bounded per environment
(K8S_EE_WAKE_MAX_PENDING); one poller per environment and process reads Redis every POLL_S for
all of its streams, so a hundred waiting tabs cost what one does. Readiness reaches a page
within POLL_S of the worker recording it (handlers/lifecycle/wake_watch.py). Every answer
carries `X-K8s-Ee-Wake`, which is how the page tells the wake service from the app.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import orjson
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response, StreamingResponse
from starlette.routing import Route

from gateway.state import AppState
from gateway.wake_page import EVENTS_PATH, MARK_HEADER, STATUS_PATH, render
from gateway.webhooks import JSON
from handlers.lifecycle.activity import Activity
from handlers.status import EnvironmentStatus
from providers.events import EventSource, EventType, LifecycleEvent

logger = logging.getLogger("k8s_ee.gateway")

# How often a waking environment's status is read for its streams.
POLL_S = 0.2
# A comment line this often keeps proxies from closing an idle stream.
KEEPALIVE_S = 15.0
# A stream ends after this long (the browser's EventSource opens a new one).
STREAM_S = 600.0
# A wake is asked for at most this often per environment (in case the first ask was lost).
ASK_EVERY_S = 30
# What an API client is told to wait.
RETRY_AFTER_S = 5
ACTOR = "k8s-ee wake service"

ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def phase(status: EnvironmentStatus) -> str:
    """Where a wake stands, as the page shows it: asked, starting, ready, failed, or gone."""
    if status.state == "hibernated":
        return "asked"
    if status.state in ("queued", "deploying"):
        return "starting"
    if status.state == "deployed":
        return "ready"
    if status.state == "failed":
        return "failed"
    return "gone"


def snapshot(status: EnvironmentStatus, progress: str | None) -> dict[str, Any]:
    current = phase(status)
    text = {
        "asked": "Waking it up…",
        "starting": progress or status.note or "Starting the app…",
        "ready": "Ready",
        "failed": f"The wake failed: {status.last_error or 'see the pull request'}",
        "gone": "This preview environment is not running any more.",
    }[current]
    return {"phase": current, "state": status.state, "progress": text}


@dataclass
class _Watch:
    """One environment's status, read every POLL_S while anyone waits for it."""

    value: dict[str, Any] | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    streams: int = 0
    task: asyncio.Task[None] | None = None


class WakeService:
    def __init__(self, state: AppState) -> None:
        self.state = state
        self.keys = state.settings.keys
        self.max_pending = state.settings.web.wake_max_pending
        # The web process does not know idle times; a visit only records when it happened.
        self.activity = Activity(state.redis, self.keys, 0.0)
        self._watches: dict[str, _Watch] = {}

    # -- finding the environment ----------------------------------------------------------------

    async def environment(self, request: Request) -> EnvironmentStatus | None:
        host = (request.headers.get("host") or "").rsplit(":", 1)[0].strip().lower().rstrip(".")
        namespace = host.split(".", 1)[0]
        if not namespace or len(namespace) > 63:
            return None
        status = await self.state.statuses.by_namespace(namespace)
        if status is None or status.preview_url is None:
            return None
        if (urlsplit(status.preview_url).hostname or "") != host:
            return None  # another host that happens to start with the same label
        return status

    async def progress(self, env: str) -> str | None:
        raw = await self.state.redis.get(self.keys.wake_progress(env))
        return raw.decode() if raw else None

    async def current(self, env: str) -> dict[str, Any] | None:
        raw_status, raw_progress = await self.state.redis.mget(
            [self.keys.status(env), self.keys.wake_progress(env)]
        )
        if raw_status is None:
            return None
        status = EnvironmentStatus.model_validate_json(raw_status)
        return snapshot(status, raw_progress.decode() if raw_progress else None)

    # -- asking for the wake ----------------------------------------------------------------------

    async def visited(self, status: EnvironmentStatus) -> None:
        now = datetime.now(UTC)
        env = status.key
        await self.activity.touch(env, now.timestamp())
        if status.state != "hibernated":
            return
        if not await self.state.redis.set(self.keys.wake_asked(env), "1", nx=True, ex=ASK_EVERY_S):
            return
        since = int((status.hibernated_at or status.updated_at or now).timestamp())
        event = LifecycleEvent(
            provider=status.provider,
            delivery_id=f"visit:{env}:{since}"[:200],
            type=EventType.ENV_WAKE,
            repository=status.repository,
            number=status.number,
            actor=ACTOR,
            received_at=now,
            source=EventSource.VISIT,
        )
        result = await self.state.store.accept(event, event.__pydantic_serializer__.to_json(event), {}, b"")
        self.state.metrics.count_delivery(
            event.provider.value, event.type.value, "accepted" if result.accepted else "duplicate"
        )
        if result.accepted:
            logger.info(
                "wake on visit", extra={"repository": status.repository, "provider": status.provider.value}
            )

    # -- the streams ------------------------------------------------------------------------------

    def _watch(self, env: str) -> _Watch:
        watch = self._watches.get(env)
        if watch is None:
            watch = self._watches[env] = _Watch()
        return watch

    async def _poll(self, env: str, watch: _Watch) -> None:
        try:
            while watch.streams > 0:
                try:
                    value = await self.current(env)
                except RedisError:
                    value = watch.value
                if value != watch.value:
                    watch.value = value
                    watch.changed.set()
                    watch.changed = asyncio.Event()
                await asyncio.sleep(POLL_S)
        finally:
            if self._watches.get(env) is watch and watch.streams <= 0:
                del self._watches[env]

    def open(self, env: str) -> _Watch | None:
        watch = self._watch(env)
        if watch.streams >= self.max_pending:
            return None
        watch.streams += 1
        if watch.task is None or watch.task.done():
            watch.task = asyncio.create_task(self._poll(env, watch), name=f"k8s-ee-wake-{env}")
        return watch

    def close(self, env: str, watch: _Watch) -> None:
        watch.streams -= 1

    async def stream(self, watch: _Watch, first: dict[str, Any]) -> AsyncIterator[bytes]:
        value = first
        yield _event("state", value)
        loop = asyncio.get_running_loop()
        ends = loop.time() + STREAM_S
        while value.get("phase") not in ("ready", "failed", "gone") and loop.time() < ends:
            changed = watch.changed
            try:
                await asyncio.wait_for(changed.wait(), timeout=KEEPALIVE_S)
            except TimeoutError:
                yield b": keep-alive\n\n"
                continue
            if watch.value is not None and watch.value != value:
                value = watch.value
                yield _event("state", value)


class EventStream(StreamingResponse):
    """A stream that gives its place back however it ends (finished, cut, never started)."""

    def __init__(self, service: WakeService, env: str, watch: _Watch, first: dict[str, Any]) -> None:
        super().__init__(
            service.stream(watch, first),
            media_type="text/event-stream",
            # Proxies (ingress-nginx among them) must pass each event on at once.
            headers=_marked({"X-Accel-Buffering": "no"}),
        )
        self.service, self.env, self.watch = service, env, watch

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.service.close(self.env, self.watch)


def _event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def _marked(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {MARK_HEADER: "1", "Cache-Control": "no-store", **(extra or {})}


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "").lower()


def _unknown(request: Request) -> Response:
    message = "There is no preview environment at this address."
    if _wants_html(request):
        return HTMLResponse(
            f"<!doctype html><title>Not found</title><p>{message}</p>", status_code=404, headers=_marked()
        )
    return JSON({"status": "not_found", "reason": message}, status_code=404, headers=_marked())


def create_wake_app(state: AppState) -> Starlette:
    service = WakeService(state)

    async def page(request: Request) -> Response:
        try:
            status = await service.environment(request)
            if status is None:
                return _unknown(request)
            await service.visited(status)
            progress = await service.progress(status.key)
        except RedisError:
            return JSON(
                {"status": "unavailable", "reason": "the wake service cannot reach Redis; retry shortly"},
                status_code=503,
                headers=_marked({"Retry-After": str(RETRY_AFTER_S)}),
            )
        current = snapshot(status, progress)
        retry = "1" if current["phase"] == "ready" else str(RETRY_AFTER_S)
        headers = _marked({"Retry-After": retry})
        if current["phase"] == "gone":
            return _unknown(request)
        if not _wants_html(request):
            return JSON(
                {
                    "status": "waking" if current["phase"] != "failed" else "failed",
                    "environment": status.namespace,
                    "phase": current["phase"],
                    "progress": current["progress"],
                    "retry_after": int(retry),
                },
                status_code=503,
                headers=headers,
            )
        title = "Waking up the preview" if current["phase"] != "failed" else "The preview did not wake"
        what = f"{status.repository} #{status.number}" + (f" · {status.head_ref}" if status.head_ref else "")
        body, policy = render(current, title=title, what=f"{status.namespace} ({what})")
        return HTMLResponse(body, status_code=503, headers={**headers, "Content-Security-Policy": policy})

    async def status_json(request: Request) -> Response:
        try:
            status = await service.environment(request)
            current = await service.current(status.key) if status is not None else None
        except RedisError:
            current = None
        if current is None:
            return JSON({"phase": "gone", "progress": ""}, status_code=404, headers=_marked())
        return JSON(current, headers=_marked())

    async def events(request: Request) -> Response:
        try:
            status = await service.environment(request)
            current = await service.current(status.key) if status is not None else None
        except RedisError:
            status, current = None, None
        if status is None or current is None:
            return JSON({"status": "not_found"}, status_code=404, headers=_marked())
        watch = service.open(status.key)
        if watch is None:
            return JSON(
                {"status": "busy", "reason": "too many visitors wait for this environment; retry shortly"},
                status_code=503,
                headers=_marked({"Retry-After": "2"}),
            )
        return EventStream(service, status.key, watch, current)

    app = Starlette(
        routes=[
            Route(EVENTS_PATH, events),
            Route(STATUS_PATH, status_json),
            Route("/{path:path}", page, methods=ALL_METHODS),
        ]
    )
    app.state.wake = service
    return app
