"""A worker's heartbeat written by the worker's own function, for tests of the gateway alone."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from handlers.heartbeat import beat
from handlers.keys import Keys

DAY_MS = 86_400_000


def worker_seen(redis_url: str, *, seconds_ago: float = 0.0, prefix: str = "k8s-ee:") -> None:
    import time

    async def write() -> None:
        client = Redis.from_url(redis_url)
        try:
            await beat(client, Keys(prefix), DAY_MS, now=time.time() - seconds_ago)
        finally:
            await client.aclose()

    asyncio.run(write())
