"""A worker started before its Redis (a first install: the pods come up together) waits for it,
instead of exiting into the kubelet's restart back-off."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from handlers.keys import Keys
from tests.support.redis_server import RedisServer
from tests.support.worker import wait_for


def test_the_worker_waits_for_redis_to_come_up(tmp_path: Path) -> None:
    redis = RedisServer()  # its port is chosen; nothing listens there yet
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("K8S_EE_")},
        "K8S_EE_REDIS_URL": redis.url,
        "K8S_EE_CLUSTER": "directory",
        "K8S_EE_DIRECTORY": str(tmp_path),
        "K8S_EE_WORKER_METRICS_PORT": "0",
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        time.sleep(2)
        assert worker.poll() is None, "the worker gave up on a Redis that was only slow to start"
        redis.start()
        # Running: its heartbeat is in Redis.
        client = redis.client()
        assert wait_for(lambda: client.get(Keys("k8s-ee:").worker_heartbeat()), timeout=30)
        client.close()
    finally:
        worker.terminate()
        try:
            _, errors = worker.communicate(timeout=15)
        finally:
            if worker.poll() is None:
                worker.kill()
            redis.cleanup()
    assert b"Redis does not answer yet" in errors
    assert redis.url.encode() not in errors
