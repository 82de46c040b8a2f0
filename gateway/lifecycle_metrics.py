"""The lifecycle's figures on the gateway's /metrics, read from Redis at each scrape.

The sweeps run on whichever worker holds their lock, so what they did is counted in Redis
(handlers/lifecycle/counters.py) and exported here, once for the installation:

- `k8s_ee_sweep_runs_total{kind, result}`: runs of the sweep and the resync (`ok`, `error`,
  `skipped` when another worker held the lock);
- `k8s_ee_sweep_errors_total{kind, provider}`: hosts that could not be read (the environment
  was kept), cluster calls that failed;
- `k8s_ee_sweep_changes_total{kind, action}`: what they changed;
- `k8s_ee_hibernations_total{source}`: environments put to sleep (`idle`, `api`, `webhook`).

The environments by state and the share of idle ones hibernated are the installation's figures
(gateway/figures.py), idle read from the same activity.

Labels take values from fixed sets only, whatever Redis holds.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.asyncio import Redis

from handlers.keys import Keys
from handlers.lifecycle.counters import KINDS, RESULTS, LifecycleCounters
from providers.events import EventSource, Provider

ACTIONS = frozenset(
    {
        "listed",
        "created",
        "reopened",
        "deployed",
        "destroyed",
        "suspected",
        "deferred",
        "ttl_destroyed",
        "warned",
        "preserve_expired",
        "postgres_rechecked",
        "orphan_suspected",
        "orphan_deleted",
        "orphan_reclaimed",
        "orphan_preserved",
        "orphan_unverifiable",
    }
)
ERROR_SOURCES = frozenset({*(p.value for p in Provider), "cluster"})
SOURCES = frozenset(s.value for s in EventSource)


class LifecycleCollector(Collector):
    def __init__(self) -> None:
        self.counts: dict[tuple[str, ...], int] | None = None

    async def refresh(self, redis: Redis, keys: Keys) -> None:
        """Read this scrape's values; on a failure, none are exported (an alert sees them absent)."""
        self.counts = None
        self.counts = await LifecycleCounters(redis, keys).read()

    def collect(self) -> Iterable[Metric]:
        if self.counts is None:
            return []
        return list(self._families(self.counts))

    def _families(self, counts: dict[tuple[str, ...], int]) -> Iterator[Metric]:
        runs = CounterMetricFamily(
            "k8s_ee_sweep_runs", "Runs of the sweep and the resync, by result.", labels=["kind", "result"]
        )
        errors = CounterMetricFamily(
            "k8s_ee_sweep_errors",
            "Hosts the sweep or resync could not read (the environment was kept), cluster calls that failed.",
            labels=["kind", "provider"],
        )
        changes = CounterMetricFamily(
            "k8s_ee_sweep_changes", "What the sweep and the resync changed.", labels=["kind", "action"]
        )
        hibernations = CounterMetricFamily(
            "k8s_ee_hibernations", "Environments put to sleep, by who asked.", labels=["source"]
        )
        for kind in KINDS:
            for result in RESULTS:
                runs.add_metric([kind, result], counts.get(("runs", kind, result), 0))
        for parts, n in sorted(counts.items()):
            if len(parts) == 3 and parts[1] in KINDS:
                if parts[0] == "errors" and parts[2] in ERROR_SOURCES:
                    errors.add_metric([parts[1], parts[2]], n)
                elif parts[0] == "changes" and parts[2] in ACTIONS:
                    changes.add_metric([parts[1], parts[2]], n)
            elif len(parts) == 2 and parts[0] == "hibernations" and parts[1] in SOURCES:
                hibernations.add_metric([parts[1]], n)
        yield from (runs, errors, changes, hibernations)
