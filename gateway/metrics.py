"""Prometheus metrics of the web process.

Every label takes its values from a fixed set, so no sender can make new series: the
event-type headers are not signed (GitHub's `X-GitHub-Event`, GitLab's `X-Gitlab-Event`),
and a signed body replayed with random event names must not create thousands of them.
"""

from __future__ import annotations

from typing import Any, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from gateway.figures import FiguresCollector
from gateway.lifecycle_metrics import LifecycleCollector
from providers.events import EventType, Provider
from providers.verdicts import Verdict

# `type`: a normalised event type, `-` when the delivery was refused before one was known,
# `other` for everything else (an ignored event's own name is in the delivery log).
NO_TYPE = "-"
OTHER = "other"
TYPES = frozenset({*(t.value for t in EventType), NO_TYPE})
PROVIDERS = frozenset(p.value for p in Provider)
# `unavailable`: answered 503 (Redis, or too many bodies in flight), which the log cannot record.
VERDICTS = frozenset({*get_args(Verdict), "unavailable"})


class Metrics:
    def __init__(self) -> None:
        # prometheus_client's labels() takes a lock and builds a key on every call; the
        # label sets here are few, so their children are looked up once and kept.
        self._delivery_children: dict[tuple[str, str, str], Any] = {}
        # A registry per app, so tests can build several apps in one process.
        self.registry = CollectorRegistry(auto_describe=True)
        self.deliveries = Counter(
            "k8s_ee_deliveries",
            "Webhook deliveries by provider, normalised event type and verdict.",
            ["provider", "type", "verdict"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "k8s_ee_request_duration_seconds",
            "Time to answer an HTTP request, by route.",
            ["route"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        # The installation's figures, read from Redis at each scrape (gateway/figures.py).
        self.figures = FiguresCollector()
        self.registry.register(self.figures)
        self.redis_errors = Counter(
            "k8s_ee_redis_errors", "Redis operations that failed.", registry=self.registry
        )
        self.body_bytes_in_flight = Gauge(
            "k8s_ee_body_bytes_in_flight",
            "Request body bytes held by deliveries being read or handled (K8S_EE_MAX_BODY_BYTES_IN_FLIGHT caps it).",
            registry=self.registry,
        )
        # The sweeps' runs and the environments' figures, read from Redis at each scrape.
        self.lifecycle = LifecycleCollector()
        self.registry.register(self.lifecycle)
        self.worker_heartbeat_age = Gauge(
            "k8s_ee_worker_heartbeat_age_seconds",
            "Seconds since a worker last wrote its heartbeat (+Inf when none ever has).",
            registry=self.registry,
        )

    def count_delivery(self, provider: str, event_type: str | None, verdict: str) -> None:
        key = (
            provider if provider in PROVIDERS else OTHER,
            NO_TYPE if event_type is None else event_type if event_type in TYPES else OTHER,
            verdict if verdict in VERDICTS else OTHER,
        )
        child = self._delivery_children.get(key)
        if child is None:
            child = self._delivery_children[key] = self.deliveries.labels(*key)
        child.inc()
