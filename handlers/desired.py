"""What each environment should be: the desired state that events update and reconciles apply.

Events never drive the cluster directly. Each one updates its environment's
`Desired` record here (compare-and-set on a generation counter), and a reconcile
brings the cluster to whatever the record says when it runs. That is what makes
bursts coalesce and late or duplicated deliveries harmless.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from redis.asyncio import Redis

from handlers.keys import Keys
from providers.events import Provider

Action = Literal["deploy", "destroy", "none"]


class EnvKey(BaseModel):
    """(provider, repository, change number): what serialises work on one environment."""

    model_config = ConfigDict(frozen=True)

    provider: Provider
    repository: str
    number: int

    def __str__(self) -> str:
        return f"{self.provider.value}:{self.repository}:{self.number}"

    @classmethod
    def parse(cls, text: str) -> EnvKey:
        provider, _, rest = text.partition(":")
        repository, _, number = rest.rpartition(":")
        return cls(provider=Provider(provider), repository=repository, number=int(number))


class Desired(BaseModel):
    provider: Provider
    repository: str
    number: int
    action: Action = "none"
    # Why the action is `none` (a draft, a fork, waiting for a command).
    reason: str | None = None
    head_sha: str | None = None
    head_ref: str | None = None
    base_ref: str | None = None
    draft: bool = False
    fork: bool = False
    title: str | None = None
    url: str | None = None
    image: str | None = None
    config: dict[str, Any] | None = None
    # The last commit whose build succeeded: the app rolls when it changes.
    built_sha: str | None = None
    hibernated: bool = False
    # Deployment was asked for explicitly (the generic trigger, later `/deploy-preview`):
    # what an on-demand repository waits for.
    requested: bool = False
    # A fork's change deploys only the commit someone with write access approved
    # (`/deploy-preview`, or an explicit deploy naming it); a later push needs a new approval.
    approved_sha: str | None = None
    approved_by: str | None = None
    # Preserved (`/preserve`) until then: the namespace carries `preserve=true` and
    # `k8s-ee/preserve-until`, and a close leaves it standing. None, or a time past, is not
    # preserved. handlers.preserve keeps the index the per-repository limit is counted in.
    preserved_until: datetime | None = None
    # The change was closed (not only destroyed on request): only a reopen brings it back.
    closed: bool = False
    closed_at: datetime | None = None
    # The payload time of the event that set the head: older ones do not overwrite it.
    head_at: datetime | None = None
    # Deliveries that changed this record since the last reconcile finished.
    deliveries: list[str] = []
    updated_at: datetime | None = None

    @property
    def key(self) -> EnvKey:
        return EnvKey(provider=self.provider, repository=self.repository, number=self.number)

    def preserved(self, now: datetime) -> bool:
        return self.preserved_until is not None and self.preserved_until > now


# Compare-and-set of the record and its generation; the generation is a key of
# its own so the reconcile's finish check (below) can read it without JSON.
_CAS = """
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
if current ~= tonumber(ARGV[1]) then return -1 end
-- A write (a reopen, say) brings a retired record back for good: no expiry.
redis.call('SET', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], current + 1)
redis.call('SADD', KEYS[3], ARGV[3])
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[5])
return current + 1
"""

# Release the environment's lock only if nothing newer arrived meanwhile;
# atomic with the events' compare-and-set, so no update falls between the two.
_FINISH = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local generation = tonumber(redis.call('GET', KEYS[2]) or '0')
if generation > tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 0
end
redis.call('DEL', KEYS[1])
return 1
"""

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class DesiredStore:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._cas = redis.register_script(_CAS)
        self._finish = redis.register_script(_FINISH)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    def _keys(self, key: EnvKey) -> tuple[str, str, str]:
        env = str(key)
        return self.keys.desired(env), self.keys.generation(env), self.keys.lock(env)

    def _repo_index(self, provider: Provider, repository: str) -> str:
        return self.keys.repository_envs(provider, repository)

    async def load(self, key: EnvKey) -> tuple[int, Desired | None]:
        record, generation = await self.redis.mget(self._keys(key)[:2])
        desired = Desired.model_validate_json(record) if record else None
        return int(generation or 0), desired

    async def save(self, desired: Desired, expected_generation: int) -> int | None:
        """Write if the generation is still `expected_generation`; the new generation, or None on a race."""
        record, generation, _ = self._keys(desired.key)
        now = desired.updated_at.timestamp() if desired.updated_at else 0
        result = await self._cas(
            keys=[
                record,
                generation,
                self._repo_index(desired.provider, desired.repository),
                self.keys.envs(),
            ],
            args=[expected_generation, desired.model_dump_json(), desired.number, now, str(desired.key)],
        )
        return None if int(result) < 0 else int(result)

    async def numbers(self, provider: Provider, repository: str) -> list[int]:
        """The changes of a repository that have a desired state (for pushes and builds without a number)."""
        members: set[bytes] = await self.redis.smembers(self._repo_index(provider, repository))  # type: ignore[misc]
        return sorted(int(n) for n in members)

    async def retire(self, key: EnvKey, after_s: int) -> None:
        """A destroyed environment's record stays long enough to refuse late deliveries, then goes."""
        record, generation, _ = self._keys(key)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.expire(record, after_s)
            pipe.expire(generation, after_s)
            pipe.srem(self._repo_index(key.provider, key.repository), key.number)
            pipe.zrem(self.keys.envs(), str(key))
            await pipe.execute()

    # -- the per-environment lock: one reconcile at a time, across worker processes --

    async def acquire(self, key: EnvKey, token: str, ttl_ms: int) -> bool:
        return bool(await self.redis.set(self._keys(key)[2], token, nx=True, px=ttl_ms))

    async def renew(self, key: EnvKey, token: str, ttl_ms: int) -> bool:
        return bool(await self._renew(keys=[self._keys(key)[2]], args=[token, ttl_ms]))

    async def finish(
        self, key: EnvKey, token: str, applied_generation: int, ttl_ms: int
    ) -> Literal["done", "again", "lost"]:
        _, generation, lock = self._keys(key)
        result = int(await self._finish(keys=[lock, generation], args=[token, applied_generation, ttl_ms]))
        return {1: "done", 0: "again", -1: "lost"}[result]  # type: ignore[return-value]

    async def release(self, key: EnvKey, token: str) -> None:
        await self._release(keys=[self._keys(key)[2]], args=[token])
