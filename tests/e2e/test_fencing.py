"""Fencing: a reconcile writes only while it holds its environment's lock for its generation.

The paused worker is a real one: a worker process stopped with SIGSTOP in the middle of an
apply (its heartbeat stops with it) until its lock has expired and another worker has applied
a newer generation, then let go on with SIGCONT.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from arq.connections import ArqRedis, RedisSettings, create_pool
from redis.asyncio import Redis

from handlers.desired import DesiredStore, EnvKey, LockLost
from handlers.keys import Keys
from handlers.queue import Job
from handlers.settings import WorkerConfig
from tests.fakes.kubeapi import KubeAPIServer
from tests.support.environments import app_commit, app_image, environment, send_generic
from tests.support.pull_requests import REPO, at, sha
from tests.support.worker import BackgroundWorker, drain, kube_cluster, wait_for, worker_process


def test_a_worker_paused_past_its_lock_does_not_overwrite_a_newer_apply(
    gateway: Any, kube: KubeAPIServer, worker_config: WorkerConfig, tmp_path: Path
) -> None:
    client = gateway()
    log = tmp_path / "paused-worker.log"
    # The paused worker's ConfigMap apply (the third wave) is held 12 s by the API server, then
    # written: a request in flight when its sender stopped.
    kube.add_fault("PATCH", r"/configmaps/", status=None, delay=12, times=1)
    paused = worker_process(worker_config, kube.url, tmp_path, log, lock_ttl="3", reconcile_timeout="60")
    try:
        send_generic(
            client,
            action="deploy",
            number=91,
            sha=sha(1),
            branch="main",
            image="reg.example.com/shop:one",
            occurred_at=at(1),
        )
        wait_for(lambda: kube.count_requests("PATCH", "/configmaps/") > 0, timeout=30)
        paused.send_signal(signal.SIGSTOP)
        held_from = time.monotonic()
        time.sleep(3.5)  # past the lock's TTL: nothing renewed it

        # Generation 2, applied by another worker while the first one is stopped.
        with BackgroundWorker(worker_config, kube_cluster(kube.url)):
            send_generic(
                client,
                action="deploy",
                number=91,
                sha=sha(2),
                branch="main",
                image="reg.example.com/shop:two",
                occurred_at=at(2),
            )
            wait_for(lambda: app_image(kube, "shop-pr-91") == "reg.example.com/shop:two", timeout=30)
            # Then the stopped worker's held write lands, over generation 2's.
            wait_for(lambda: app_commit(kube, "shop-pr-91") == sha(1), timeout=20)
            assert time.monotonic() - held_from >= 11

            paused.send_signal(signal.SIGCONT)

            def converged() -> bool:
                status = environment(client, "generic", 91)
                return bool(
                    status
                    and status["state"] == "deployed"
                    and status["head_sha"] == sha(2)
                    and app_commit(kube, "shop-pr-91") == sha(2)
                    and app_image(kube, "shop-pr-91") == "reg.example.com/shop:two"
                )

            try:
                # The resumed worker finds its lock gone at the next wave: it writes nothing
                # more, and makes generation 2 apply again, which repairs its late write.
                wait_for(converged, timeout=30, interval=0.2)
            except AssertionError:
                raise AssertionError(log.read_text()[-4000:]) from None
            # Let the last jobs run, and check nothing stale came after.
            time.sleep(1.5)
            assert converged()
            # Its last wave (the Deployment) was never sent: only generation 2's apply and the
            # repair wrote the Deployment.
            assert kube.count_requests("PATCH", "/deployments/shop-pr-91-app") == 2
    finally:
        paused.send_signal(signal.SIGCONT)
        paused.terminate()
        try:
            paused.wait(10)
        except subprocess.TimeoutExpired:
            paused.kill()
    assert "lost the lock" in log.read_text()


def test_a_reconcile_of_a_generation_already_applied_does_nothing(
    gateway: Any, kube: KubeAPIServer, worker_config: WorkerConfig
) -> None:
    client = gateway()
    cluster = kube_cluster(kube.url)
    send_generic(client, action="deploy", number=92, sha=sha(1), branch="main")
    drain(worker_config, cluster)
    assert app_commit(kube, "shop-pr-92") == sha(1)
    kube.reset_requests()

    async def enqueue_twice() -> None:
        # What a second worker's job for the same generation is: a reconcile with nothing new.
        pool: ArqRedis = await create_pool(RedisSettings.from_dsn(worker_config.connection.redis_url))
        for n in range(2):
            await pool.enqueue_job(
                Job.RECONCILE,
                f"generic:{REPO}:92",
                _job_id=f"again-{n}",
                _queue_name=worker_config.connection.queue_name,
            )
        await pool.aclose()

    asyncio.run(enqueue_twice())
    drain(worker_config, cluster)
    # Not a request about the environment (a starting worker asks the cluster for its facts).
    assert [r for r in kube.requests if "shop-pr-92" in r.path] == []
    status = environment(client, "generic", 92)
    assert status is not None and status["reconciles"] == 1


def test_the_fence_holds_only_for_the_lock_holder_of_a_new_generation(redis_server: Any) -> None:
    async def scenario() -> None:
        redis = Redis.from_url(redis_server.url)
        await redis.flushall()
        store = DesiredStore(redis, Keys("k8s-ee:"), 60_000)
        key = EnvKey.parse(f"generic:{REPO}:93")
        await redis.set(Keys("k8s-ee:").generation(str(key)), 1)
        assert await store.acquire(key, "first", 200)
        await store.fence(key, "first", 1, 200)  # holds, and renews
        await asyncio.sleep(0.3)  # a pause past the TTL
        assert await store.acquire(key, "second", 5_000)
        with pytest.raises(LockLost):
            await store.fence(key, "first", 1, 200)
        assert await store.finish(key, "second", 1, 5_000) == "done"
        assert await store.acquire(key, "third", 5_000)
        # Generation 1 is applied: nobody writes it again.
        with pytest.raises(LockLost):
            await store.fence(key, "third", 1, 5_000)
        assert await store.invalidate(key) == 2
        await store.fence(key, "third", 2, 5_000)
        await redis.aclose()

    asyncio.run(scenario())
