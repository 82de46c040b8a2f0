"""When each environment was last used, and when it falls idle.

Two sorted sets of environment keys: `activity`, scored by the last moment someone used the
environment (epoch seconds), and `idle-deadlines`, the awake environments scored by when they
fall idle (their last activity plus their idle time). The idle check hibernates what is past
its deadline (handlers/lifecycle/idle.py); the sweep destroys what has been idle past the TTL.

Activity is a push, a comment or command, a deploy, a wake, an API or CLI call (the worker
records each event that concerns an environment, handlers/worker.py), a visit to a
hibernated environment (the gateway's wake service) and HTTP traffic through the ingress
controller (handlers/lifecycle/prometheus.py, at each sweep). Scores only go forward (ZADD GT),
so an event that arrives late never makes an environment look idler than it is.

Only Redis is touched here: the web process records visits with it too.
"""

from __future__ import annotations

from collections.abc import Sequence

from redis.asyncio import Redis

from handlers.keys import Keys

# KEYS: activity, idle-deadlines, idle-after. ARGV: env, moment, default idle seconds.
# The deadline moves only for an environment that is awake (in the deadlines set).
_TOUCH = """
redis.call('ZADD', KEYS[1], 'GT', ARGV[2], ARGV[1])
if redis.call('ZSCORE', KEYS[2], ARGV[1]) then
  local after = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or ARGV[3])
  if after > 0 then
    redis.call('ZADD', KEYS[2], 'GT', tonumber(ARGV[2]) + after, ARGV[1])
  end
end
return 1
"""

# KEYS: activity, idle-deadlines, idle-after. ARGV: env, now, its idle seconds (0: never).
# Awake from `now` on (a deploy, a wake): at the least, it has just been used.
_AWAKE = """
redis.call('ZADD', KEYS[1], 'GT', ARGV[2], ARGV[1])
local after = tonumber(ARGV[3])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
if after <= 0 then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 0
end
local last = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]))
redis.call('ZADD', KEYS[2], last + after, ARGV[1])
return 1
"""


class Activity:
    def __init__(self, redis: Redis, keys: Keys, default_idle_s: float) -> None:
        self.redis = redis
        self.keys = keys
        self.default_idle_s = default_idle_s
        self._touch = redis.register_script(_TOUCH)
        self._awake = redis.register_script(_AWAKE)

    async def prepare(self) -> None:
        """Load the scripts into Redis (else their first call costs a NOSCRIPT answer and a retry)."""
        for script in (self._touch, self._awake):
            await self.redis.script_load(script.script)

    def _sets(self) -> list[str]:
        return [self.keys.activity(), self.keys.idle_deadlines(), self.keys.idle_after()]

    async def touch(self, env: str, at: float) -> None:
        """Someone used `env` at `at` (epoch seconds)."""
        await self._touch(keys=self._sets(), args=[env, at, self.default_idle_s])

    async def awake(self, env: str, now: float, idle_s: float | None) -> None:
        """`env` runs from `now` on and falls idle `idle_s` after its last use (None: the default)."""
        after = self.default_idle_s if idle_s is None else idle_s
        await self._awake(keys=self._sets(), args=[env, now, after])

    async def asleep(self, env: str) -> None:
        """`env` hibernated: it has no idle deadline until it wakes."""
        await self.redis.zrem(self.keys.idle_deadlines(), env)

    async def forget(self, env: str) -> None:
        """`env` is destroyed."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(self.keys.activity(), env)
            pipe.zrem(self.keys.idle_deadlines(), env)
            pipe.hdel(self.keys.idle_after(), env)
            await pipe.execute()

    async def due(self, now: float, limit: int = 100) -> list[tuple[str, float]]:
        """Awake environments past their idle deadline, soonest first, with the deadline."""
        found: list[tuple[bytes, float]] = await self.redis.zrangebyscore(
            self.keys.idle_deadlines(), "-inf", now, start=0, num=limit, withscores=True
        )
        return [(member.decode(), score) for member, score in found]

    async def next_deadline(self) -> float | None:
        found: list[tuple[bytes, float]] = await self.redis.zrange(
            self.keys.idle_deadlines(), 0, 0, withscores=True
        )
        return found[0][1] if found else None

    async def last(self, envs: Sequence[str]) -> dict[str, float]:
        """The last activity of each of `envs` that has one."""
        if not envs:
            return {}
        scores = await self.redis.zmscore(self.keys.activity(), list(envs))
        return {env: float(score) for env, score in zip(envs, scores, strict=True) if score is not None}

    async def deadline(self, env: str) -> float | None:
        score = await self.redis.zscore(self.keys.idle_deadlines(), env)
        return float(score) if score is not None else None
