"""The periodic runs (sweep, resync): when one is due, and that only one worker does it.

A worker's tick (every second, handlers/lifecycle/ticker.py) asks `due(kind, interval)`: the first
worker to ask once the interval has passed claims the run (a key set only if absent, expiring
after the interval), and queues it. The run itself holds `locked(kind)`, a lock renewed while it
runs, so a run that outlasts its interval is never overlapped by the next one: the next finds
the lock held and is counted `skipped`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.asyncio import Redis

from handlers.keys import Keys
from handlers.lifecycle.counters import LifecycleCounters
from handlers.locks import RELEASE, RENEW

logger = logging.getLogger("k8s_ee.worker")

T = TypeVar("T")


class Runs:
    def __init__(
        self, redis: Redis, keys: Keys, counters: LifecycleCounters, lock_ttl_s: float = 60.0
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.counters = counters
        self.lock_ttl_s = lock_ttl_s
        self._renew = redis.register_script(RENEW)
        self._release = redis.register_script(RELEASE)

    async def due(self, kind: str, interval_s: float, now: float | None = None) -> bool:
        """Claim the run of `kind` if `interval_s` has passed since the last claim."""
        if interval_s <= 0:
            return False
        stamp = str(time.time() if now is None else now)
        return bool(
            await self.redis.set(self.keys.lifecycle_due(kind), stamp, nx=True, px=int(interval_s * 1000))
        )

    async def locked(self, kind: str, body: Callable[[], Awaitable[T]]) -> T | None:
        """Run `body` holding the lock of `kind`; None (and counted `skipped`) when another holds it."""
        lock = self.keys.lifecycle_lock(kind)
        token = uuid.uuid4().hex
        ttl_ms = int(self.lock_ttl_s * 1000)
        if not await self.redis.set(lock, token, nx=True, px=ttl_ms):
            await self.counters.run(kind, "skipped")
            return None
        heartbeat = asyncio.create_task(self._keep(lock, token, ttl_ms))
        try:
            result = await body()
        except Exception:
            await self.counters.run(kind, "error")
            raise
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            await self._release(keys=[lock], args=[token])
        await self.counters.run(kind, "ok")
        return result

    async def _keep(self, lock: str, token: str, ttl_ms: int) -> None:
        while True:
            await asyncio.sleep(ttl_ms / 3000)
            if not await self._renew(keys=[lock], args=[token, ttl_ms]):
                logger.warning("lost the lock %s while running", lock)
                return
