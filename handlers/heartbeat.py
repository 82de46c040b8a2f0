"""The worker's heartbeat: proof, in Redis, that some worker is consuming the queue.

Every worker writes the time to one key every quarter of `K8S_EE_WORKER_HEARTBEAT_TIMEOUT`
(the newest write wins: "a worker was seen then"). The gateway reads it for `/readyz`,
which answers 503 when no worker has been seen for the timeout, and exports its age as
`k8s_ee_worker_heartbeat_age_seconds`, so deliveries are not accepted for hours with nobody
to act on them. The key expires after the retention period, like every other key.
"""

from __future__ import annotations

import asyncio
import logging
import time

from redis.asyncio import Redis
from redis.exceptions import RedisError

from handlers.keys import Keys

logger = logging.getLogger("k8s_ee.worker")


def beat_interval(timeout: float) -> float:
    """Four beats per timeout: one lost write (a Redis blip) never makes the worker look dead."""
    return timeout / 4


async def beat(redis: Redis, keys: Keys, retention_ms: int, now: float | None = None) -> None:
    moment = time.time() if now is None else now
    await redis.set(keys.worker_heartbeat(), str(int(moment * 1000)), px=retention_ms)


async def last_beat(redis: Redis, keys: Keys) -> float | None:
    """Epoch seconds of the newest heartbeat, None when no worker ever wrote one (or it expired)."""
    raw = await redis.get(keys.worker_heartbeat())
    if raw is None:
        return None
    try:
        return int(raw) / 1000
    except ValueError:
        return None


async def keep_beating(redis: Redis, keys: Keys, retention_ms: int, timeout: float) -> None:
    """Runs for the worker's lifetime (cancelled on shutdown); a failed write is retried next beat."""
    while True:
        try:
            await beat(redis, keys, retention_ms)
        except (RedisError, OSError) as exc:
            logger.warning("could not write the worker heartbeat: %s", type(exc).__name__)
        await asyncio.sleep(beat_interval(timeout))


def silence(last: float | None, now: float) -> float:
    """Seconds since the last heartbeat; infinite when none was ever seen."""
    return float("inf") if last is None else max(0.0, now - last)
