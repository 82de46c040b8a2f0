"""HTTP traffic to the previews as activity, read from the Prometheus that scrapes the ingress controller.

Every ACTIVITY_READ_S (when K8S_EE_ACTIVITY_PROMETHEUS_URL is set) one worker runs these instant
queries (`GET /api/v1/query`):

    sum by (namespace) (nginx_ingress_controller_requests{service!~".*-wake"})
    sum by (service) (traefik_service_requests_total{service=~".+@kubernetes"})
    sum by (service) (traefik_service_open_connections{service=~".+@kubernetes"})

ingress-nginx labels its request counter with the Ingress's own namespace (the environment's);
Traefik's Kubernetes Ingress provider names a service `<namespace>-<service>-<port>@kubernetes`,
and the app's Service is `<namespace>-app`. Requests to the wake route (`<namespace>-wake`) are
the waiting page's own, not the app's, and are left out.

- A request counter is compared with its value at the previous read (kept in Redis): any change
  is activity now. Comparing with what was read, rather than `increase()` over a window, sees
  the first request to a new host too (`increase` cannot see a series' first sample), and a
  counter reset (a controller restart) counts once at most.
- An open connection (Traefik v2's `traefik_service_open_connections`, which counts in-flight
  requests, websockets and server-sent event streams included) is activity as long as it is
  open. ingress-nginx has no per-host connection gauge: a websocket is counted when it closes
  (its log phase), so an app on ingress-nginx with hours-long websockets should set
  `hibernation.after` longer than those last; Traefik v3 dropped the per-service gauge too.
- The platform's own health checks never reach these counters: the kubelet probes the pod
  directly, and the gateway's wake page polls its own backend (left out above). A monitor that
  checks the public URL from outside is a visitor like any other.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import httpx
from redis.asyncio import Redis

from handlers import naming
from handlers.keys import Keys

logger = logging.getLogger("k8s_ee.worker")

ACTIVITY_READ_S = 60.0
TIMEOUT_S = 10.0
SUFFIX = "@kubernetes"

NGINX_REQUESTS = 'sum by (namespace) (nginx_ingress_controller_requests{service!~".*-wake"})'
TRAEFIK_REQUESTS = f'sum by (service) (traefik_service_requests_total{{service=~".+{SUFFIX}"}})'
TRAEFIK_OPEN = f'sum by (service) (traefik_service_open_connections{{service=~".+{SUFFIX}"}})'


@dataclass(frozen=True, slots=True)
class Query:
    name: str
    promql: str
    label: str
    # A counter: activity when it changed since the last read; else a gauge: activity while > 0.
    counter: bool


QUERIES = (
    Query("nginx", NGINX_REQUESTS, "namespace", counter=True),
    Query("traefik", TRAEFIK_REQUESTS, "service", counter=True),
    Query("traefik-open", TRAEFIK_OPEN, "service", counter=False),
)


class PrometheusError(Exception):
    """Prometheus did not answer a query (the message is safe to log)."""


def namespace_of(query: Query, value: str, namespaces: set[str]) -> str | None:
    """The environment namespace a series belongs to, if any."""
    if query.label == "namespace":
        return value if value in namespaces else None
    if not value.endswith(SUFFIX):
        return None
    name = value.removesuffix(SUFFIX)
    # `<ns>-<ns>-app-<port>`: the namespace is a prefix, and the app's Service name follows it.
    for namespace in namespaces:
        if name.startswith(f"{namespace}-{naming.app_name(namespace)}-"):
            return namespace
    return None


async def query(client: httpx.AsyncClient, url: str, promql: str) -> list[tuple[dict[str, str], float]]:
    try:
        answer = await client.get(f"{url}/api/v1/query", params={"query": promql}, timeout=TIMEOUT_S)
    except httpx.HTTPError as exc:
        raise PrometheusError(f"Prometheus at {url} did not answer: {type(exc).__name__}") from exc
    if answer.status_code != 200:
        raise PrometheusError(f"Prometheus at {url} answered {answer.status_code}")
    try:
        body = answer.json()
        result = body["data"]["result"]
        series = [({str(k): str(v) for k, v in r["metric"].items()}, float(r["value"][1])) for r in result]
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise PrometheusError(f"Prometheus at {url} gave an answer that is not a vector") from exc
    return [(labels, value) for labels, value in series if math.isfinite(value)]


class TrafficReader:
    """Which environments had traffic since the last read."""

    def __init__(self, redis: Redis, keys: Keys, url: str, client: httpx.AsyncClient | None = None) -> None:
        self.redis = redis
        self.keys = keys
        self.url = url
        self.client = client or httpx.AsyncClient()

    async def active(self, namespaces: Iterable[str]) -> set[str]:
        """The namespaces (of `namespaces`) that had traffic, or hold connections open, now."""
        wanted = set(namespaces)
        active: set[str] = set()
        counters: dict[str, float] = {}
        for q in QUERIES:
            try:
                series = await query(self.client, self.url, q.promql)
            except PrometheusError as exc:
                logger.warning("activity: %s", exc)
                continue
            for labels, value in series:
                namespace = namespace_of(q, labels.get(q.label, ""), wanted)
                if namespace is None:
                    continue
                if q.counter:
                    field = f"{q.name}|{namespace}"
                    counters[field] = counters.get(field, 0.0) + value
                elif value > 0:
                    active.add(namespace)
        previous = await self._previous()
        if previous:
            for field, value in counters.items():
                if previous.get(field) != value:
                    active.add(field.split("|", 1)[1])
        await self._remember(counters)
        return active

    async def _previous(self) -> dict[str, float]:
        raw: dict[bytes, bytes] = await self.redis.hgetall(self.keys.ingress_counters())  # type: ignore[misc]
        return {k.decode(): float(v) for k, v in raw.items()}

    async def _remember(self, counters: Mapping[str, float]) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.keys.ingress_counters())
            # A marker, so the next read knows this one happened even when nothing was counted.
            pipe.hset(
                self.keys.ingress_counters(),
                mapping={"read|": "0", **{k: repr(v) for k, v in counters.items()}},
            )
            pipe.expire(self.keys.ingress_counters(), 7 * 86400)
            await pipe.execute()

    async def close(self) -> None:
        await self.client.aclose()
