"""What the whole installation looks like, read from Redis at each scrape of the gateway's /metrics.

These figures describe the installation, not a process: the queue, the environments by
state, how many idle ones are hibernated, each host credential's rate-limit budget and the
DORA counts (handlers/dora.py). Workers never export them, so adding worker replicas does
not multiply them. Every gateway replica answers the same figures (they are read, not
counted); the recording rules take `max` over the replicas (charts/k8s-ee-gateway).

They are exported as they are in Redis at the moment of the scrape: counters that live in
Redis (the DORA counts) survive any restart, and a scrape when Redis does not answer
exports none of these figures (so an alert sees them absent) rather than stale ones.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import get_args

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.asyncio import Redis

from handlers.desired import Desired
from handlers.dora import DoraFigures, Histogram, Series
from handlers.dora import read_figures as read_dora
from handlers.keys import Keys
from handlers.status import StatusStore
from providers.states import State

# "Idle" as the hibernation success metric reads it (60% of idle environments hibernated):
# awake environments with no activity for at least this long, and every hibernated one.
IDLE_AFTER: dict[str, float] = {"1h": 3600.0, "4h": 14400.0, "1d": 86400.0, "7d": 604800.0}
STATES: tuple[str, ...] = get_args(State)
# `key` of the rate-limit gauges: one per host credential the worker used (written by the worker,
# never by a sender); capped all the same.
MAX_RATE_LIMIT_SERIES = 100


@dataclass
class Figures:
    queue_depth: int = 0
    # key -> (remaining, window size when the host says it)
    budgets: dict[str, tuple[float, float | None]] = field(default_factory=dict)
    environments: dict[str, int] = field(default_factory=dict)
    # threshold label -> awake (deployed) environments idle at least that long
    idle_awake: dict[str, int] = field(default_factory=dict)
    dora: DoraFigures = field(default_factory=DoraFigures)


def parse_budget(raw: bytes) -> tuple[float, float | None]:
    """A budget as the worker writes it (handlers/report.py): JSON, or a bare number before it."""
    try:
        value = json.loads(raw)
    except ValueError:
        return float(raw), None
    if isinstance(value, dict):
        limit = value.get("limit")
        return float(value.get("remaining", 0.0)), float(limit) if limit else None
    return float(value), None


async def read_figures(
    redis: Redis, keys: Keys, queue_name: str, statuses: StatusStore, now: datetime
) -> Figures:
    figures = Figures()
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zcard(queue_name)
        pipe.hgetall(keys.rate_limits())
        depth, budgets = await pipe.execute()
    figures.queue_depth = int(depth)
    figures.budgets = dict(
        sorted((k.decode(), parse_budget(v)) for k, v in budgets.items())[:MAX_RATE_LIMIT_SERIES]
    )
    # Environments number in the hundreds: every record, each scrape, is cheap enough.
    records = await statuses.recent(limit=1_000_000_000)
    figures.environments = dict.fromkeys(STATES, 0)
    for status in records:
        figures.environments[status.state] = figures.environments.get(status.state, 0) + 1
    awake = [status.key for status in records if status.state == "deployed"]
    activity: list[float] = []
    if awake:
        # The last activity as the lifecycle records it (events, visits, ingress traffic:
        # handlers/lifecycle/activity.py); the desired state's last event where it has none.
        async with redis.pipeline(transaction=False) as pipe:
            pipe.zmscore(keys.activity(), awake)
            pipe.mget([keys.desired(key) for key in awake])
            used, records_raw = await pipe.execute()
        for last, raw in zip(used, records_raw, strict=True):
            if last is not None:
                activity.append(now.timestamp() - float(last))
            elif raw:
                desired = Desired.model_validate_json(raw)
                if desired.updated_at is not None:
                    activity.append((now - desired.updated_at).total_seconds())
    figures.idle_awake = {
        label: sum(1 for idle in activity if idle >= seconds) for label, seconds in IDLE_AFTER.items()
    }
    figures.dora = await read_dora(redis, keys)
    return figures


async def refresh(
    collector: FiguresCollector,
    redis: Redis,
    keys: Keys,
    queue_name: str,
    statuses: StatusStore,
    now: datetime,
    timeout: float,
) -> None:
    """Read the figures for this scrape; on a Redis failure none are exported (and it raises)."""
    collector.figures = None
    async with asyncio.timeout(timeout):
        collector.figures = await read_figures(redis, keys, queue_name, statuses, now)


def _labels(series: Series) -> list[str]:
    return [series.provider, series.repository, series.environment]


_SERIES = ["provider", "repository", "environment"]


def _histogram(name: str, documentation: str, data: dict[Series, Histogram]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=_SERIES)
    for series, histogram in sorted(data.items()):
        family.add_metric(_labels(series), list(histogram.cumulative()), histogram.total)
    return family


class FiguresCollector(Collector):
    """Exports the figures of the last refresh."""

    def __init__(self) -> None:
        self.figures: Figures | None = None

    def collect(self) -> Iterable[Metric]:
        figures = self.figures
        if figures is None:
            return []
        return list(self._families(figures))

    def _families(self, figures: Figures) -> Iterator[Metric]:
        yield GaugeMetricFamily("k8s_ee_queue_depth", "Jobs waiting in the arq queue.", figures.queue_depth)
        remaining = GaugeMetricFamily(
            "k8s_ee_provider_rate_limit_remaining",
            "Requests left in a code host's rate-limit window, as the worker last saw it.",
            labels=["key"],
        )
        limit = GaugeMetricFamily(
            "k8s_ee_provider_rate_limit_limit",
            "The size of that rate-limit window, where the host says it.",
            labels=["key"],
        )
        for key, (left, size) in sorted(figures.budgets.items()):
            remaining.add_metric([key], left)
            if size is not None:
                limit.add_metric([key], size)
        yield remaining
        yield limit
        environments = GaugeMetricFamily(
            "k8s_ee_environments",
            "Environments by state (destroyed ones for 30 days after).",
            labels=["state"],
        )
        for state, count in sorted(figures.environments.items()):
            environments.add_metric([state], count)
        yield environments
        idle = GaugeMetricFamily(
            "k8s_ee_idle_awake_environments",
            "Deployed (awake) environments with no activity for at least `idle_for`.",
            labels=["idle_for"],
        )
        share = GaugeMetricFamily(
            "k8s_ee_hibernated_share_of_idle",
            "Hibernated environments / (hibernated + awake ones idle at least `idle_for`); NaN when none is idle.",
            labels=["idle_for"],
        )
        hibernated = figures.environments.get("hibernated", 0)
        for label, awake in figures.idle_awake.items():
            idle.add_metric([label], awake)
            total = hibernated + awake
            share.add_metric([label], hibernated / total if total else math.nan)
        yield idle
        yield share
        yield from self._dora(figures.dora)

    def _dora(self, dora: DoraFigures) -> Iterator[Metric]:
        deployments = CounterMetricFamily(
            "k8s_ee_dora_deployments",
            "Deployments of environments by result (DORA deployment frequency and change failure rate).",
            labels=[*_SERIES, "result"],
        )
        for (series, result), count in sorted(dora.deployments.items()):
            deployments.add_metric([*_labels(series), result], count)
        yield deployments
        failures = CounterMetricFamily(
            "k8s_ee_dora_change_failures",
            "Changes that failed: an environment going from working (or new) to failed.",
            labels=_SERIES,
        )
        for series, count in sorted(dora.change_failures.items()):
            failures.add_metric(_labels(series), count)
        yield failures
        yield _histogram(
            "k8s_ee_dora_lead_time_seconds",
            "From the first commit of a change to its first successful deployment.",
            dora.lead_time,
        )
        yield _histogram(
            "k8s_ee_dora_failed_deployment_recovery_seconds",
            "From a change failure to the next successful deployment of that environment.",
            dora.recovery,
        )
