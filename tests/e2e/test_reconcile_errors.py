"""Any error during a reconcile marks the environment `failed` with its message, and reports it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from arq.connections import ArqRedis, RedisSettings, create_pool
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from handlers.desired import Desired, DesiredStore
from handlers.queue import Job
from handlers.settings import WorkerConfig, load_worker_config
from providers.events import Provider
from tests.fakes.kubeapi import KubeAPIServer
from tests.support.environments import environment
from tests.support.http_server import ServedApp
from tests.support.pull_requests import REPO, sha
from tests.support.worker import drain, kube_cluster


def test_an_unexpected_error_fails_the_environment_and_is_reported(
    gateway: Any, kube: KubeAPIServer, worker_config: WorkerConfig
) -> None:
    received: list[dict[str, Any]] = []

    async def hook(request: Request) -> Response:
        received.append(await request.json())
        return Response(status_code=204)

    with ServedApp(Starlette(routes=[Route("/hooks", hook, methods=["POST"])])) as subscriber:
        config = load_worker_config(
            redis_url=worker_config.connection.redis_url,
            default_config=worker_config.worker.default_config,
            status_webhooks=json.dumps([{"url": f"{subscriber.url}/hooks", "secret": "s" * 32}]),
            status_webhooks_allow_private=True,
        )
        client = gateway()

        async def queue() -> None:
            # A desired state the renderer cannot use (written before images were checked at
            # the door, say): an image with whitespace in it.
            pool: ArqRedis = await create_pool(RedisSettings.from_dsn(config.connection.redis_url))
            store = DesiredStore(pool, config.keys, config.connection.environment_retention_ms)
            desired = Desired(
                provider=Provider.GENERIC,
                repository=REPO,
                number=95,
                action="deploy",
                intent="request",
                requested=True,
                head_sha=sha(1),
                head_ref="main",
                image="registry.example.com/shop:bad tag",
            )
            assert await store.save(desired, 0, None) == 1
            await pool.enqueue_job(Job.RECONCILE, str(desired.key), _queue_name=config.connection.queue_name)
            await pool.aclose()

        asyncio.run(queue())
        drain(config, kube_cluster(kube.url))

    status = environment(client, "generic", 95)
    assert status is not None and status["state"] == "failed"
    assert "image" in status["last_error"]
    # Told to the subscribers like any other state change.
    assert [event["environment"]["state"] for event in received][-1] == "failed"
