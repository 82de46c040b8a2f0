"""Prometheus metrics of the web process."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from gateway.figures import FiguresCollector


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

    def count_delivery(self, provider: str, event_type: str, verdict: str) -> None:
        key = (provider, event_type, verdict)
        child = self._delivery_children.get(key)
        if child is None:
            child = self._delivery_children[key] = self.deliveries.labels(*key)
        child.inc()
