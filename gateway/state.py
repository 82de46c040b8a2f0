"""What the web process holds while it runs: settings, Redis, the store, the metrics."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from gateway.allowlist import Allowlist
from gateway.metrics import Metrics
from gateway.settings import Settings
from gateway.sources import Source, build_sources
from gateway.store import DeliveryStore
from handlers.status import StatusStore


@dataclass
class State:
    settings: Settings
    redis: Redis
    store: DeliveryStore
    allowlist: Allowlist
    metrics: Metrics
    sources: dict[str, Source]
    statuses: StatusStore

    @classmethod
    def build(cls, settings: Settings) -> State:
        # No per-socket timeout: redis-py wraps every send in asyncio.wait_for (a task per
        # command) when one is set. Each store call has one deadline instead (store.py).
        redis = Redis.from_url(
            settings.redis_url,
            socket_connect_timeout=settings.redis_timeout,
            health_check_interval=30,
        )
        return cls(
            settings=settings,
            redis=redis,
            store=DeliveryStore(redis, settings),
            allowlist=Allowlist.build(
                settings.allowlist_mode, settings.allowlist_organizations, settings.allowlist_repositories
            ),
            metrics=Metrics(),
            sources=build_sources(settings),
            statuses=StatusStore(redis, settings.key_prefix, settings.retention_ms),
        )
