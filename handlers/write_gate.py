"""The host credentials' write buckets, in Redis: one per credential for every worker process.

`RedisWriteGate` is the worker's `WriteGate` (providers/hosts/gate.py). One script reserves a
credential's next write slot atomically (GCRA, on Redis's own clock, so the processes need not
agree on the time): a burst of `burst` writes may go at once, then one per `interval`. The host
clients call it from the threads their SDK calls run in; it runs the script on the worker's event
loop and waits for the answer.
"""

from __future__ import annotations

import asyncio
import threading

from redis.asyncio import Redis
from redis.exceptions import RedisError

from handlers.keys import Keys
from providers.hosts.base import HostUnavailable

# A reservation that takes longer than this is given up (the report is retried through the queue).
RESERVE_TIMEOUT_S = 30.0

# KEYS[1] the bucket; ARGV: interval ms, burst, longest wait ms. The bucket holds the theoretical
# arrival time (ms) of the next write; it expires once it is in the past.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
tat = tat + interval
local wait = tat - burst * interval - now
if wait < 0 then wait = 0 end
if wait > tonumber(ARGV[3]) then return -1 end
redis.call('SET', KEYS[1], tat, 'PX', tat - now + 1000)
return wait
"""


class RedisWriteGate:
    """Built on the event loop it runs its script on (the worker's start-up)."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self.loop = asyncio.get_running_loop()
        self._reserve = redis.register_script(_RESERVE)
        self._loop_thread = threading.get_ident()

    async def reserve_async(
        self, credential: str, interval: float, burst: int, max_wait: float
    ) -> float | None:
        wait = int(
            await self._reserve(
                keys=[self.keys.write_bucket(credential)],
                args=[max(1, round(interval * 1000)), max(1, burst), round(max_wait * 1000)],
            )
        )
        return None if wait < 0 else wait / 1000

    def reserve(self, credential: str, interval: float, burst: int, max_wait: float) -> float | None:
        if threading.get_ident() == self._loop_thread:
            # Waiting here for the loop would wait for ever: host calls run in threads.
            raise RuntimeError("the write gate is called from a thread, never on the event loop")
        future = asyncio.run_coroutine_threadsafe(
            self.reserve_async(credential, interval, burst, max_wait), self.loop
        )
        try:
            return future.result(RESERVE_TIMEOUT_S)
        except (RedisError, OSError, TimeoutError) as exc:
            future.cancel()
            # Unpaced writes are what the bucket is for: none goes until Redis answers again.
            raise HostUnavailable(
                f"the write bucket in Redis did not answer ({type(exc).__name__}): the write waits",
                retry_after=5.0,
            ) from exc
