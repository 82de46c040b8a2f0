"""Running the real arq worker in tests: drained in burst mode, or kept running in a thread."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from kubernetes import client

from handlers.cluster import Cluster
from handlers.cluster.kubernetes import KubernetesCluster
from handlers.cluster.retry import RetryPolicy
from handlers.queue_worker import Worker
from handlers.settings import WorkerConfig, WorkerSettings
from handlers.worker import worker_settings
from providers.events import Provider
from providers.hosts.base import Host
from tests.support.environments import kubeconfig


def kube_cluster(url: str, **options: Any) -> KubernetesCluster:
    configuration = client.Configuration(host=url)
    options.setdefault("retry", RetryPolicy(attempts=3, budget=5, base_delay=0.01, max_delay=0.05))
    options.setdefault("poll_interval", 0.02)
    options.setdefault("destroy_timeout", 2.0)
    return KubernetesCluster(client.ApiClient(configuration), **options)


def make_worker(
    settings: WorkerSettings,
    cluster: Cluster,
    hosts: Mapping[Provider, Host] | None = None,
    *,
    burst: bool,
    periodic: bool = False,
    max_burst_jobs: int = -1,
) -> Worker:
    """`periodic`: the worker ticks (idle check, sweep, resync) as in production; tests that do
    not ask for it run those jobs when they want them. `max_burst_jobs`: a burst worker stops
    after that many jobs (-1: when the queue is empty)."""
    options = worker_settings(settings, cluster=cluster, hosts=hosts or {}, periodic=periodic)
    options["handle_signals"] = False
    return Worker(**options, burst=burst, max_burst_jobs=max_burst_jobs)


def run_jobs(
    settings: WorkerSettings, cluster: Cluster, hosts: Mapping[Provider, Host] | None, count: int
) -> None:
    """Run the first `count` jobs of the queue, in its order, and stop (the rest stay queued)."""

    async def run() -> None:
        worker = make_worker(settings, cluster, hosts, burst=True, max_burst_jobs=count)
        try:
            await worker.main()
        finally:
            await worker.close()

    asyncio.run(run())


def drain(
    settings: WorkerSettings, cluster: Cluster, hosts: Mapping[Provider, Host] | None = None, workers: int = 1
) -> None:
    """Run `workers` workers until the queue is empty (deferred retries included)."""

    async def run() -> None:
        running = [make_worker(settings, cluster, hosts, burst=True) for _ in range(workers)]
        try:
            await asyncio.gather(*(w.main() for w in running))
        finally:
            for w in running:
                await w.close()

    asyncio.run(run())


class BackgroundWorker:
    """A worker on its own event loop in a thread, for tests that send events while it works."""

    def __init__(
        self,
        settings: WorkerSettings,
        cluster: Cluster,
        hosts: Mapping[Provider, Host] | None = None,
        *,
        periodic: bool = False,
    ):
        self.settings, self.cluster, self.hosts, self.periodic = settings, cluster, hosts, periodic
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.started = threading.Event()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        # arq binds the worker to the event loop current when it is built: build it here.
        self.worker = make_worker(
            self.settings, self.cluster, self.hosts, burst=False, periodic=self.periodic
        )
        self.started.set()
        with contextlib.suppress(asyncio.CancelledError):
            self.loop.run_until_complete(self.worker.async_run())

    def __enter__(self) -> BackgroundWorker:
        self.thread.start()
        self.started.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        def stop() -> None:
            if self.worker.main_task is not None:
                self.worker.main_task.cancel()

        self.loop.call_soon_threadsafe(stop)
        self.thread.join(10)
        # A job cut short by the stop (a deferred readiness check, say) ends cancelled.
        with contextlib.suppress(asyncio.CancelledError):
            self.loop.run_until_complete(self.worker.close())
        # arq's close cancels the jobs without waiting for them: let them finish cancelling, as
        # asyncio.run does, rather than leave them to be destroyed pending (and reported, as
        # "Task was destroyed but it is pending", in whichever later test collects them).
        left = asyncio.all_tasks(self.loop)
        for task in left:
            task.cancel()
        if left:
            self.loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()


def worker_process(
    config: WorkerConfig, kube_url: str, folder: Path, log: Path, **settings: str
) -> subprocess.Popen[bytes]:
    """`k8s-ee worker` in a process of its own (to be killed or stopped for real), on this
    session's Redis and the test API server at `kube_url`, its stderr in `log`. `settings`
    are more K8S_EE_ variables (`lock_ttl="3"`)."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("K8S_EE_")},
        "K8S_EE_REDIS_URL": config.connection.redis_url,
        "K8S_EE_CLUSTER": "kubernetes",
        "K8S_EE_KUBECONFIG": str(kubeconfig(folder / "kubeconfig", kube_url)),
        "K8S_EE_DEFAULT_CONFIG": str(config.worker.default_config),
        "K8S_EE_PREVIEW_DOMAIN": "preview.example.com",
        "K8S_EE_LOG_LEVEL": "INFO",
        # No metrics port: several workers run at once, and 9090 may be taken on the machine.
        "K8S_EE_WORKER_METRICS_PORT": "0",
        **{f"K8S_EE_{name.upper()}": value for name, value in settings.items()},
    }
    with log.open("a") as stream:
        return subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "worker"], env=env, stdout=subprocess.DEVNULL, stderr=stream
        )


def wait_for(condition: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)
