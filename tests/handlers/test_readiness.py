"""Readiness checks and the generation model: a check never settles what a newer event asked for.

Real Redis, the real Kubernetes back-end against the test API server, the Readiness class driven
directly (its `schedule` records instead of queueing, so the test runs each check itself).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from handlers.desired import Desired, DesiredStore, EnvKey
from handlers.keys import Keys
from handlers.readiness import Readiness
from handlers.status import EnvironmentStatus, StatusStore
from providers.events import Provider
from tests.fakes.kubeapi import KubeAPIServer
from tests.support.worker import kube_cluster

KEY = EnvKey(provider=Provider.GITHUB, repository="acme/shop", number=5)
NS = "shop-pr-5"


@pytest.fixture
def kube() -> Iterator[KubeAPIServer]:
    with KubeAPIServer(ready_delay=60) as server:
        yield server


class Harness:
    def __init__(self, redis_url: str, kube: KubeAPIServer) -> None:
        from redis.asyncio import Redis

        self.redis = Redis.from_url(redis_url)
        self.keys = Keys("k8s-ee:")
        self.desired = DesiredStore(self.redis, self.keys, 60_000)
        self.statuses = StatusStore(self.redis, self.keys, 60_000, 60_000)
        self.scheduled: list[tuple[str, float]] = []
        self.changes: list[str] = []
        self.cluster = kube_cluster(kube.url)

        async def schedule(env: str, token: str, delay: float) -> None:
            self.scheduled.append((token, delay))

        async def on_change(status: EnvironmentStatus, previous: str | None) -> None:
            self.changes.append(status.state)

        self.readiness = Readiness(
            redis=self.redis,
            keys=self.keys,
            desired=self.desired,
            statuses=self.statuses,
            cluster=self.cluster,
            schedule=schedule,
            timeout_s=30,
            progress_interval_s=0,
            lock_ttl_s=5,
            on_change=on_change,
        )

    async def new_generation(self) -> int:
        generation = await self.desired.generation(KEY)
        desired = Desired(
            provider=KEY.provider, repository=KEY.repository, number=KEY.number, action="deploy"
        )
        saved = await self.desired.save(desired, generation, None)
        assert saved is not None
        return saved

    async def applied(self, manifests: list[dict[str, Any]]) -> EnvironmentStatus:
        """What a reconcile does: apply the newest generation, then begin watching it."""
        generation = await self.desired.generation(KEY)
        await self.cluster.apply(NS, KEY.repository, manifests)
        status = EnvironmentStatus(
            provider=KEY.provider,
            repository=KEY.repository,
            number=KEY.number,
            state="deploying",
            namespace=NS,
            generation=generation,
            updated_at=datetime.now(UTC),
        )
        await self.statuses.put(status)
        return await self.readiness.begin(status, manifests)


def manifests(image: str = "app:1") -> list[dict[str, Any]]:
    labels = {"app.kubernetes.io/name": "app"}
    return [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": NS,
                "labels": {"app.kubernetes.io/managed-by": "k8s-ee-gateway"},
                "annotations": {"k8s-ee/repository": KEY.repository},
            },
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": f"{NS}-app", "labels": labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "app", "image": image}]},
                },
            },
        },
    ]


def run(redis_server: Any, kube: KubeAPIServer, scenario: Any) -> Any:
    async def main() -> Any:
        harness = Harness(redis_server.url, kube)
        try:
            return await scenario(harness)
        finally:
            harness.cluster.close()
            await harness.redis.aclose()

    return asyncio.run(main())


def ready_soon(kube: KubeAPIServer) -> None:
    """The pods become ready now (the controllers' next tick)."""
    kube.ready_delay = 0
    time.sleep(0.2)


def test_a_watch_settles_deployed_once_the_rollout_is_done(
    redis_client: Any, redis_server: Any, kube: KubeAPIServer
) -> None:
    async def scenario(h: Harness) -> None:
        await h.new_generation()
        begun = await h.applied(manifests())
        assert begun.state == "deploying" and begun.progress == "app 0/1: pulling the image, starting"
        [(token, delay)] = h.scheduled
        assert 0 < delay <= 1.0
        assert await h.readiness.check(KEY, token) == "waiting"
        assert len(h.scheduled) == 2  # looks again later
        ready_soon(kube)
        assert await h.readiness.check(KEY, token) == "deployed"
        status = await h.statuses.get(str(KEY))
        assert status is not None and status.state == "deployed" and status.deployed_at is not None
        assert status.deployed_at >= status.applied_at  # type: ignore[operator]
        assert h.changes[-1] == "deployed"
        # The watch is gone: a duplicate of the same check is stale.
        assert await h.readiness.check(KEY, token) == "stale"

    run(redis_server, kube, scenario)


def test_a_check_of_an_older_generation_never_settles_a_newer_one(
    redis_client: Any, redis_server: Any, kube: KubeAPIServer
) -> None:
    async def scenario(h: Harness) -> None:
        await h.new_generation()
        await h.applied(manifests())
        [(old_token, _)] = h.scheduled
        # A push arrives: a newer generation, whose reconcile applies a new image and watches it.
        await h.new_generation()
        await h.applied(manifests("app:2"))
        ready_soon(kube)
        assert await h.readiness.check(KEY, old_token) == "stale"
        status = await h.statuses.get(str(KEY))
        assert status is not None and status.state == "deploying"
        new_token = h.scheduled[-1][0]
        assert await h.readiness.check(KEY, new_token) == "deployed"

    run(redis_server, kube, scenario)


def test_an_event_during_a_check_hands_the_reconcile_back(
    redis_client: Any, redis_server: Any, kube: KubeAPIServer
) -> None:
    """The newer event's reconcile found the lock held by a check: the check's finish says so."""

    async def scenario(h: Harness) -> None:
        await h.new_generation()
        await h.applied(manifests())
        [(token, _)] = h.scheduled
        ready_soon(kube)
        real_observe = h.readiness._observe

        async def observe_while_an_event_arrives(namespace: str, targets: Any) -> Any:
            await h.new_generation()
            return await real_observe(namespace, targets)

        h.readiness._observe = observe_while_an_event_arrives  # type: ignore[method-assign]
        assert await h.readiness.check(KEY, token) == "again"
        status = await h.statuses.get(str(KEY))
        assert status is not None and status.state == "deploying"  # not settled for the old one
        assert await h.desired.acquire(KEY, "next", 1000)  # the lock was released for the reconcile

    run(redis_server, kube, scenario)


def test_a_check_never_waits_for_a_held_lock(
    redis_client: Any, redis_server: Any, kube: KubeAPIServer
) -> None:
    async def scenario(h: Harness) -> None:
        await h.new_generation()
        await h.applied(manifests())
        [(token, _)] = h.scheduled
        assert await h.desired.acquire(KEY, "a-reconcile", 5000)
        assert await h.readiness.check(KEY, token) == "busy"
        assert h.scheduled[-1] == (token, 1.0)

    run(redis_server, kube, scenario)


def test_an_image_that_cannot_be_pulled_fails_at_the_first_look(
    redis_client: Any, redis_server: Any, kube: KubeAPIServer
) -> None:
    kube.mark_image("app:404", "ErrImagePull")

    async def scenario(h: Harness) -> None:
        await h.new_generation()
        kube.ready_delay = 0
        status = await h.applied(manifests("app:404"))
        assert status.state == "failed"
        assert status.last_error == (
            'app: container app: image app:404 cannot be pulled (ErrImagePull: failed to pull and unpack image "app:404": not found)'
        )
        assert h.scheduled == []

    run(redis_server, kube, scenario)
