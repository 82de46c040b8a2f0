"""What the web process holds while it runs: settings, Redis, the store, the metrics."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from gateway.allowlist import Allowlist
from gateway.bodies import BodyBudget
from gateway.endpoints import ENDPOINTS, Endpoint, Receiver, receivers
from gateway.metrics import Metrics
from gateway.settings import GatewaySettings
from gateway.store import DeliveryStore
from handlers.redis_client import redis_client
from handlers.status import StatusStore


@dataclass
class AppState:
    settings: GatewaySettings
    redis: Redis
    store: DeliveryStore
    allowlist: Allowlist
    metrics: Metrics
    receivers: dict[str, Receiver]
    statuses: StatusStore
    # Request body bytes held across all requests (K8S_EE_MAX_BODY_BYTES_IN_FLIGHT).
    bodies: BodyBudget

    @classmethod
    def build(cls, settings: GatewaySettings, endpoints: tuple[Endpoint, ...] = ENDPOINTS) -> AppState:
        connection, web = settings.connection, settings.web
        # No per-socket timeout: redis-py wraps every send in asyncio.wait_for (a task per
        # command) when one is set. Each store call has one deadline instead (store.py).
        redis: Redis = redis_client(
            connection, socket_connect_timeout=connection.redis_timeout, health_check_interval=30
        )
        return cls(
            settings=settings,
            redis=redis,
            store=DeliveryStore(redis, settings),
            allowlist=Allowlist.build(
                web.allowlist_mode, web.allowlist_organizations, web.allowlist_repositories
            ),
            metrics=Metrics(),
            receivers=receivers(web.secret_values, web.insecure, endpoints),
            statuses=StatusStore(
                redis, settings.keys, connection.retention_ms, connection.environment_retention_ms
            ),
            bodies=BodyBudget(web.max_body_bytes_in_flight),
        )
