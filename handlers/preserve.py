"""Which environments are preserved, and until when: the index beside their desired states.

The truth is each environment's `Desired.preserved_until` (set by `/preserve`, cleared by
`/unpreserve`; see handlers.policy). While it is in the future:

- the namespace carries the label `preserve=true` and the annotation `k8s-ee/preserve-until`
  (the renderer writes both on every apply of an open change);
- closing the change leaves the environment standing, in state `preserved`;
- it counts against `K8S_EE_MAX_PRESERVED_PER_REPOSITORY`.

Once it has passed (or is cleared), the next reconcile of the environment acts on the change
as it is: an open one is applied without the label, a closed one is destroyed (its label no
longer protects it, since the gateway set it). Expiry therefore needs nothing but a reconcile
after the time: the sweeps (the 1 h warning, expiry, destroying expired closed ones) read
`expiring` and queue one.

The index is two sorted sets of environment keys scored by preserved-until (epoch seconds): one
per repository, where the limit is counted atomically (two `/preserve` at once cannot both take
the last place), and one of all of them, for the sweeps. An entry whose time has passed counts
for nothing, so the limit holds even before a sweep has tidied it away; a destroyed environment
leaves the index (handlers.reconcile), and `/unpreserve` takes it out at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from redis.asyncio import Redis

from handlers.desired import EnvKey
from handlers.keys import Keys

# Take a place for `env` unless the repository's live preservations are at the limit (its own
# renewal always fits). Answers {1, previous score} or {0, live count}.
_RESERVE = """
local now = tonumber(ARGV[3])
local previous = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not (previous and tonumber(previous) > now) then
  local live = redis.call('ZCOUNT', KEYS[1], '(' .. ARGV[3], '+inf')
  if live >= tonumber(ARGV[4]) then return {0, live} end
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return {1, previous or ''}
"""


@dataclass(frozen=True, slots=True)
class Reservation:
    granted: bool
    # Granted: the score the environment had before (to put back should the change not be saved).
    previous: float | None = None
    # Refused: how many of the repository's environments are preserved now.
    live: int = 0


class PreserveIndex:
    def __init__(self, redis: Redis, keys: Keys, limit: int) -> None:
        self.redis = redis
        self.keys = keys
        self.limit = limit
        self._reserve = redis.register_script(_RESERVE)

    def _sets(self, key: EnvKey) -> list[str]:
        return [self.keys.preserved_in(key.provider, key.repository), self.keys.preserved()]

    async def reserve(self, key: EnvKey, until: datetime, now: datetime) -> Reservation:
        granted, value = await self._reserve(
            keys=self._sets(key), args=[str(key), until.timestamp(), now.timestamp(), self.limit]
        )
        if not int(granted):
            return Reservation(False, live=int(value))
        previous = value.decode() if isinstance(value, bytes) else str(value)
        return Reservation(True, previous=float(previous) if previous else None)

    async def undo(self, key: EnvKey, reservation: Reservation) -> None:
        """Put back what `reserve` changed, when the preservation was not saved after all."""
        if not reservation.granted:
            return
        if reservation.previous is None:
            await self.release(key)
            return
        async with self.redis.pipeline(transaction=True) as pipe:
            for name in self._sets(key):
                pipe.zadd(name, {str(key): reservation.previous})
            await pipe.execute()

    async def release(self, key: EnvKey) -> None:
        """The environment is no longer preserved (`/unpreserve`, expiry, destroyed)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            for name in self._sets(key):
                pipe.zrem(name, str(key))
            await pipe.execute()

    async def expiring(self, before: datetime) -> list[tuple[EnvKey, datetime]]:
        """Every preserved environment whose preservation ends before `before`, soonest first
        (those already past included): what the sweeps warn about and expire."""
        found = await self.redis.zrangebyscore(
            self.keys.preserved(), "-inf", before.timestamp(), withscores=True
        )
        return [
            (EnvKey.parse(member.decode()), datetime.fromtimestamp(score, UTC)) for member, score in found
        ]
