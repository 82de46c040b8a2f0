"""How many environments may be awake at once, and who waits for a slot.

`K8S_EE_MAX_ENVIRONMENTS` (all repositories) and `K8S_EE_MAX_ENVIRONMENTS_PER_REPOSITORY` bound
the environments that hold a slot: deployed, deploying, failed with something applied, or kept
after a close because they are preserved. Hibernated ones hold none unless
`K8S_EE_ADMISSION_COUNT_HIBERNATED` is set. A reconcile that is about to deploy asks `admit`:

- admitted: it goes ahead (an environment already running is always admitted, so a push to it
  is never queued, nor one that ran before these limits were set);
- queued: it waits in a first-come-first-served queue, and its comment says where
  ("queued: position 2, 5 of 5 in use");
- refused: the queue is full (`K8S_EE_ADMISSION_QUEUE_SIZE`); its comment says so, and nothing
  waits (a later push or `/deploy-preview` asks again).

A slot is freed by `release` (a destroy, a hibernation; the sweeps call it for TTL expiry too),
which promotes whoever fits: the queue is read in order, and an environment held back only by its
own repository's limit does not hold up the others. `promote` does the same without freeing a
slot (after the limits were raised, say).

Promotion happens inside Redis scripts, so under any number of workers a slot goes to exactly one
environment, once. A promoted environment is also written to an outbox before its reconcile is
queued, and taken out only after: a worker that dies in between leaves it there, and the next
admission call of any worker (or a worker's start) queues the reconcile again. Reconciles are
idempotent, so a duplicate costs nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from redis.asyncio import Redis

from handlers.desired import EnvKey
from handlers.keys import Keys
from handlers.settings import AdmissionSettings

logger = logging.getLogger("k8s_ee.worker")

# An outbox entry this old was left by a worker that stopped before queuing its reconcile.
STALE_PROMOTION_S = 30.0

# Promote, in queue order, every waiting environment that fits both limits. KEYS: awake, queue,
# promoted; ARGV[1..4]: now, limit of all, limit per repository, stem of the per-repository sets;
# ARGV[9]: stem of the desired states' generations. A promoted environment's generation is bumped:
# a reconcile of it that is running now (one that found it queued) then runs again, admitted.
_PROMOTE = """
local function promote(now, max_all, max_repo, stem, asking)
  local granted = {}
  local in_use = redis.call('ZCARD', KEYS[1])
  if max_all > 0 and in_use >= max_all then return granted end
  for _, env in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
    if max_all > 0 and in_use >= max_all then break end
    local repo = stem .. string.match(env, '^(.*):[0-9]+$')
    if max_repo == 0 or redis.call('ZCARD', repo) < max_repo then
      redis.call('ZREM', KEYS[2], env)
      redis.call('ZADD', KEYS[1], now, env)
      redis.call('ZADD', repo, now, env)
      redis.call('ZADD', KEYS[3], now, env)
      if env ~= asking then redis.call('INCR', ARGV[9] .. env) end
      in_use = in_use + 1
      table.insert(granted, env)
    end
  end
  return granted
end
"""

# KEYS: awake, queue, promoted, arrivals. ARGV: now, max_all, max_repo, stem, env, its
# `{provider}:{repository}`, queue size, already running (1/0), the generations' stem.
_ADMIT = (
    _PROMOTE
    + """
local now, max_all, max_repo, stem = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local env, repo = ARGV[5], ARGV[4] .. ARGV[6]
local function admit()
  redis.call('ZREM', KEYS[2], env)
  redis.call('ZADD', KEYS[1], now, env)
  redis.call('ZADD', repo, now, env)
end
if redis.call('ZSCORE', KEYS[1], env) then
  redis.call('ZADD', repo, 'NX', now, env)
  return {'admitted', 0, 0, 0, '', {}}
end
if ARGV[8] == '1' or (max_all == 0 and max_repo == 0) then
  admit()
  return {'admitted', 0, 0, 0, '', {}}
end
if not redis.call('ZSCORE', KEYS[2], env) then
  if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[7]) then
    local all, mine = redis.call('ZCARD', KEYS[1]), redis.call('ZCARD', repo)
    if (max_all == 0 or all < max_all) and (max_repo == 0 or mine < max_repo) then
      admit()
      return {'admitted', 0, 0, 0, '', {}}
    end
    return {'refused', redis.call('ZCARD', KEYS[2]), 0, 0, '', {}}
  end
  redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[4]), env)
end
local granted = promote(now, max_all, max_repo, stem, env)
local others = {}
for _, promoted in ipairs(granted) do
  if promoted ~= env then table.insert(others, promoted) end
end
if redis.call('ZSCORE', KEYS[1], env) then
  -- Its own reconcile is the one asking: no other needs queuing for it.
  redis.call('ZREM', KEYS[3], env)
  return {'admitted', 0, 0, 0, '', others}
end
local position = redis.call('ZRANK', KEYS[2], env) + 1
local all = redis.call('ZCARD', KEYS[1])
if max_all > 0 and all >= max_all then
  return {'queued', position, all, max_all, '', others}
end
return {'queued', position, redis.call('ZCARD', repo), max_repo, ARGV[6], others}
"""
)

# KEYS: awake, queue, promoted. ARGV: now, max_all, max_repo, stem, env (or ''), its repository,
# two unused, the generations' stem.
_RELEASE = (
    _PROMOTE
    + """
if ARGV[5] ~= '' then
  redis.call('ZREM', KEYS[1], ARGV[5])
  redis.call('ZREM', ARGV[4] .. ARGV[6], ARGV[5])
  redis.call('ZREM', KEYS[2], ARGV[5])
  redis.call('ZREM', KEYS[3], ARGV[5])
end
return promote(ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], '')
"""
)

# Take the outbox entries older than ARGV[2] (stamping them ARGV[1], so that one worker takes them).
_CLAIM = """
local stale = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
for _, env in ipairs(stale) do redis.call('ZADD', KEYS[1], ARGV[1], env) end
return stale
"""


@dataclass(frozen=True, slots=True)
class Ticket:
    """The answer to `admit`."""

    state: Literal["admitted", "queued", "refused"]
    # Queued: its place (1 is next), and the limit that holds it back: `in_use` of `limit`
    # slots, of all repositories or (`repository` set) of its own.
    position: int = 0
    in_use: int = 0
    limit: int = 0
    repository: str | None = None
    # Refused: how many wait already.
    waiting: int = 0

    def note(self) -> str:
        if self.state == "queued":
            scope = f" by {self.repository}" if self.repository else ""
            return f"queued: position {self.position}, {self.in_use} of {self.limit} in use{scope}"
        if self.state == "refused":
            return (
                f"not deployed: {self.waiting} environments already wait for a slot, the most the queue "
                "holds (K8S_EE_ADMISSION_QUEUE_SIZE). Push a commit or comment /deploy-preview to ask again later."
            )
        return ""


class Admission:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        settings: AdmissionSettings,
        reconcile: Callable[[EnvKey, str], Awaitable[None]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`reconcile(key, job_id)` queues a reconcile of a promoted environment."""
        self.redis = redis
        self.keys = keys
        self.settings = settings
        self.reconcile = reconcile
        self.clock = clock
        self._admit = redis.register_script(_ADMIT)
        self._release = redis.register_script(_RELEASE)
        self._claim = redis.register_script(_CLAIM)

    @property
    def counts_hibernated(self) -> bool:
        return self.settings.admission_count_hibernated

    def _limits(self, now: float) -> list[str | int | float]:
        s = self.settings
        return [now, s.max_environments, s.max_environments_per_repository, self.keys.awake_stem()]

    @staticmethod
    def _repository(key: EnvKey) -> str:
        return f"{key.provider.value}:{key.repository}"

    async def admit(self, key: EnvKey, *, running: bool = False) -> Ticket:
        """May this environment be deployed now? `running`: it already is (never queue it)."""
        now = self.clock()
        state, position, in_use, limit, repository, granted = await self._admit(
            keys=[
                self.keys.awake(),
                self.keys.admission_queue(),
                self.keys.admission_promoted(),
                self.keys.admission_arrivals(),
            ],
            args=[
                *self._limits(now),
                str(key),
                self._repository(key),
                self.settings.admission_queue_size,
                int(running),
                self.keys.generation_stem(),
            ],
        )
        await self._wake(granted)
        state = state.decode()
        if state == "refused":
            return Ticket("refused", waiting=int(position))
        if state == "queued":
            scope = repository.decode() if repository else ""
            return Ticket(
                "queued",
                position=int(position),
                in_use=int(in_use),
                limit=int(limit),
                repository=scope.partition(":")[2] or None,
            )
        return Ticket("admitted")

    async def release(self, key: EnvKey) -> list[EnvKey]:
        """The environment holds no slot any more (destroyed, hibernated, expired), nor waits for
        one: promote whoever fits, and queue their reconciles. Answers who was promoted."""
        return await self._run_release(str(key), self._repository(key))

    async def promote(self) -> list[EnvKey]:
        """Promote whoever fits now (the limits may have been raised); also re-queue the
        reconciles a stopped worker may have left behind."""
        return await self._run_release("", "")

    async def recover(self, older_than: float = STALE_PROMOTION_S) -> list[EnvKey]:
        """Queue again the reconcile of every promoted environment whose worker may have stopped
        before queuing it (`older_than` 0: all of them, as a worker does when it starts)."""
        now = self.clock()
        stale = await self._claim(keys=[self.keys.admission_promoted()], args=[now, now - older_than])
        await self._wake(stale, recovered=True)
        return [EnvKey.parse(member.decode()) for member in stale]

    async def in_use(self) -> int:
        return int(await self.redis.zcard(self.keys.awake()))

    async def waiting(self) -> list[EnvKey]:
        members = await self.redis.zrange(self.keys.admission_queue(), 0, -1)
        return [EnvKey.parse(member.decode()) for member in members]

    async def tickets(self) -> list[tuple[EnvKey, Ticket]]:
        """Where each waiting environment stands now (for their comments, after the queue moved)."""
        waiting = await self.waiting()
        if not waiting:
            return []
        in_use = await self.in_use()
        s = self.settings
        found: list[tuple[EnvKey, Ticket]] = []
        for position, key in enumerate(waiting, start=1):
            if s.max_environments and in_use >= s.max_environments:
                found.append((key, Ticket("queued", position, in_use, s.max_environments)))
                continue
            mine = int(await self.redis.zcard(self.keys.awake_in(key.provider, key.repository)))
            found.append(
                (key, Ticket("queued", position, mine, s.max_environments_per_repository, key.repository))
            )
        return found

    async def _run_release(self, env: str, repository: str) -> list[EnvKey]:
        granted = await self._release(
            keys=[self.keys.awake(), self.keys.admission_queue(), self.keys.admission_promoted()],
            args=[*self._limits(self.clock()), env, repository, "", "", self.keys.generation_stem()],
        )
        await self._wake(granted)
        await self.recover()
        return [EnvKey.parse(member.decode()) for member in granted]

    async def _wake(self, members: Sequence[bytes], *, recovered: bool = False) -> None:
        for member in members:
            env = member.decode()
            key = EnvKey.parse(env)
            stamp = int(self.clock() * 1000)
            await self.reconcile(key, f"reconcile:{env}:promoted:{stamp}")
            await self.redis.zrem(self.keys.admission_promoted(), env)
            logger.info(
                "%s %s: a slot is free", "re-queued the reconcile of" if recovered else "promoted", env
            )
