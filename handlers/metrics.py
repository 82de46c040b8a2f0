"""Prometheus metrics of one worker process: what this process did.

Each worker replica serves its own `/metrics` (`K8S_EE_WORKER_METRICS_PORT`) with counters
and histograms of its own work; Prometheus scrapes every replica and sums them, so adding
replicas never multiplies a figure. What describes the whole installation (queue depth,
environments by state, rate-limit budgets, DORA) is computed from Redis and exported by the
gateway instead (gateway/figures.py), once per scrape of a gateway, never per worker.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

# Reconciles take from milliseconds (nothing to do) to minutes (a namespace held by finalizers).
RECONCILE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
# From the webhook that asked for a deploy to the environment deployed: seconds to minutes.
READY_BUCKETS = (0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800)


class WorkerMetrics:
    def __init__(self) -> None:
        # A registry per worker, so tests can run several workers in one process.
        self.registry = CollectorRegistry(auto_describe=True)
        self.reconciles = Counter(
            "k8s_ee_reconciles",
            "Reconciles run by this worker, by outcome (the environment's state, or busy, retried, gave_up).",
            ["outcome"],
            registry=self.registry,
        )
        self.reconcile_duration = Histogram(
            "k8s_ee_reconcile_duration_seconds",
            "Time one reconcile job took in this worker.",
            buckets=RECONCILE_BUCKETS,
            registry=self.registry,
        )
        self.webhook_to_ready = Histogram(
            "k8s_ee_webhook_to_ready_seconds",
            "From the gateway receiving the webhook that asked for a deploy to the environment deployed.",
            buckets=READY_BUCKETS,
            registry=self.registry,
        )
        self.report_failures = Counter(
            "k8s_ee_report_failures",
            "Reports to a code host that failed (retried later, or given up), by provider.",
            ["provider"],
            registry=self.registry,
        )
