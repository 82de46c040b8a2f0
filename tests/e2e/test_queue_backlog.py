"""End to end: a worker that waits for work still takes every job waiting behind a full worker.

More jobs are due than the worker has slots: each poll claims what fits, and the wake-up tokens
of the rest are spent by then. A slot that frees must take the next waiting job at once, not
after `K8S_EE_POLL_DELAY` (set here to a minute, so a worker that waits for that timer cannot
finish twelve deploys within the test's bound; one that takes the next job as a slot frees
finishes them in a few seconds).
"""

from __future__ import annotations

import json
from typing import Any

from handlers.settings import WorkerConfig, load_worker_config
from tests.fakes.kubeapi import KubeAPIServer
from tests.support.pull_requests import REPO, send, sha
from tests.support.redis_server import RedisServer
from tests.support.worker import BackgroundWorker, kube_cluster, wait_for

PULL_REQUESTS = range(1, 13)


def test_a_freed_slot_takes_the_next_waiting_job_without_waiting_for_the_poll_timer(
    gateway: Any,
    kube: KubeAPIServer,
    worker_config: WorkerConfig,
    redis_server: RedisServer,
    redis_client: Any,
) -> None:
    config = load_worker_config(
        redis_url=redis_server.url,
        default_config=worker_config.worker.default_config,
        preview_domain="preview.example.com",
        lock_ttl=3,
        reconcile_max_tries=3,
        max_jobs=2,
        poll_delay=60,
    )
    client = gateway()

    def deployed() -> bool:
        for number in PULL_REQUESTS:
            raw = redis_client.get(config.keys.status(f"github:{REPO}:{number}"))
            if raw is None or json.loads(raw)["state"] != "deployed":
                return False
        return True

    with BackgroundWorker(config, kube_cluster(kube.url)):
        wait_for(lambda: redis_client.get(config.keys.worker_heartbeat()))
        for number in PULL_REQUESTS:
            send(client, "opened", number, sha(number), 0)
        # Far above what twelve deploys take two at a time; far below a minute's timer per stall.
        wait_for(deployed, timeout=45)
