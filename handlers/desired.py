"""What each environment should be: the desired state that events update and reconciles apply.

Events never drive the cluster directly. Each one updates its environment's
`Desired` record here (compare-and-set on a generation counter), and a reconcile
brings the cluster to whatever the record says when it runs. That is what makes
bursts coalesce and late or duplicated deliveries harmless.

Each field of the record remembers the event that set it (its `Stamp`: the event's
time, then its kind, then its delivery id), and an event only sets a field it is
newer than. Merging that way does not depend on the order events arrive in: the
record is the same as if every event had arrived in the order it happened.

The store also keeps the indexes from a branch and from a commit to the change
numbers whose head they are (what a push or a build without a number looks up),
the per-environment lock, and the generation each reconcile applied.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator
from redis.asyncio import Redis
from redis.exceptions import WatchError

from handlers.keys import Keys
from handlers.locks import RELEASE, RENEW
from providers.events import Provider

Action = Literal["deploy", "destroy", "none"]
# What the newest deploying or destroying event asked for: `deploy` (a change event),
# `request` (an explicit request: the generic trigger, later `/deploy-preview`), `destroy`.
Intent = Literal["deploy", "request", "destroy"]

# Commits are indexed by this many leading characters: the shortest abbreviation git (and
# Bitbucket Cloud's payloads) use, so an abbreviated and a full hash find each other.
COMMIT_PREFIX = 7


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


class Stamp(BaseModel):
    """When a field was set, as an order: the event's time (the payload's own, else when it
    was received), then its kind's rank (for two events of one second), then its delivery id."""

    model_config = ConfigDict(frozen=True)

    at: datetime
    rank: int = 0
    delivery: str = ""

    def order(self) -> tuple[datetime, int, str]:
        return (self.at, self.rank, self.delivery)


class DeliveryRef(BaseModel):
    """A delivery that changed the record: its provider is the sender's, which may not be the
    environment's (the generic trigger can act on another provider's environment)."""

    model_config = ConfigDict(frozen=True)

    provider: Provider
    id: str


class Desired(BaseModel):
    provider: Provider
    repository: str
    number: int
    # Derived by the policy from the fields below; what the reconcile acts on.
    action: Action = "none"
    # Why the action is `none` (a draft, a fork, waiting for a command).
    reason: str | None = None
    intent: Intent | None = None
    head_sha: str | None = None
    head_ref: str | None = None
    base_ref: str | None = None
    draft: bool = False
    fork: bool = False
    title: str | None = None
    url: str | None = None
    # The change's comments as the host last said (its answer, providers.hosts.base.ChangeState,
    # or an event's payload): passed on to the status, for the reporter.
    host_comments: int | None = None
    image: str | None = None
    config: dict[str, Any] | None = None
    # The last commit whose build succeeded: the app rolls when it changes.
    built_sha: str | None = None
    hibernated: bool = False
    # The Ingress sends the host to the gateway's wake service: while hibernated, and after a
    # wake until the app is ready again (handlers/lifecycle/wake_watch.py clears it).
    wake_route: bool = False
    # When hibernation was asked for, and by whom (an EventSource: `idle`, `api`, `webhook`).
    hibernated_at: datetime | None = None
    hibernated_by: str | None = None
    # Deployment was asked for explicitly: what an on-demand repository waits for.
    requested: bool = False
    # A fork's change deploys only the commit someone with write access approved
    # (`/deploy-preview`, or an explicit deploy naming it); a later push needs a new approval.
    approved_sha: str | None = None
    approved_by: str | None = None
    # Preserved (`/preserve`) until then: the namespace carries `preserve=true` and
    # `k8s-ee/preserve-until`, and a close leaves it standing. None, or a time past, is not
    # preserved. handlers.preserve keeps the index the per-repository limit is counted in.
    preserved_until: datetime | None = None
    # The change was closed (not only destroyed on request): only a newer reopen brings it back.
    closed: bool = False
    # The event that last set each field above (by field name).
    stamps: dict[str, Stamp] = {}
    # Deliveries that changed this record since the last reconcile finished.
    deliveries: list[DeliveryRef] = []
    updated_at: datetime | None = None

    @model_validator(mode="before")
    @classmethod
    def _plain_delivery_ids(cls, data: Any) -> Any:
        # Records written before deliveries named their provider hold plain ids of the record's own.
        if isinstance(data, dict) and any(isinstance(d, str) for d in data.get("deliveries") or []):
            data = {
                **data,
                "deliveries": [
                    {"provider": data.get("provider"), "id": d} if isinstance(d, str) else d
                    for d in data["deliveries"]
                ],
            }
        return data

    @property
    def key(self) -> EnvKey:
        return EnvKey(provider=self.provider, repository=self.repository, number=self.number)

    @property
    def live(self) -> bool:
        """Not a tombstone: pushes and builds of its branch and head concern it."""
        return self.action != "destroy"

    def preserved(self, now: datetime) -> bool:
        return self.preserved_until is not None and self.preserved_until > now


class LockLost(Exception):
    """This reconcile no longer holds its environment's lock (it was paused past the lock's TTL,
    and another reconcile may have applied since): stop writing."""


# Compare-and-set of the record and its generation; the generation is a key of its own so the
# reconcile's checks (below) read it without JSON. The branch and commit indexes move with
# the record's head in the same step. A tombstone (action destroy) is kept for the retention
# period and leaves the indexes; any other record is kept for good.
#   KEYS: record, generation, old branch index, new branch index, old commit index, new commit index
#   ARGV: expected generation, record, number, ttl ms (0: no expiry), then 1/0 for whether each
#         of the four indexes applies (old branch, new branch, old commit, new commit)
_CAS = """
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
if current ~= tonumber(ARGV[1]) then return -1 end
local ttl = tonumber(ARGV[4])
if ttl > 0 then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ttl)
  redis.call('SET', KEYS[2], current + 1, 'PX', ttl)
else
  redis.call('SET', KEYS[1], ARGV[2])
  redis.call('SET', KEYS[2], current + 1)
end
if ARGV[5] == '1' then redis.call('SREM', KEYS[3], ARGV[3]) end
if ARGV[7] == '1' then redis.call('SREM', KEYS[5], ARGV[3]) end
if ARGV[6] == '1' then redis.call('SADD', KEYS[4], ARGV[3]) end
if ARGV[8] == '1' then redis.call('SADD', KEYS[6], ARGV[3]) end
return current + 1
"""

# Release the environment's lock only if nothing newer arrived meanwhile; atomic with the
# events' compare-and-set, so no update falls between the two. Records the generation
# applied, so a reconcile queued for it later does nothing.
#   KEYS: lock, generation, applied generation    ARGV: token, applied generation, lock ttl ms
_FINISH = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local generation = tonumber(redis.call('GET', KEYS[2]) or '0')
local ttl = redis.call('PTTL', KEYS[2])
if ttl > 0 then
  redis.call('SET', KEYS[3], ARGV[2], 'PX', ttl)
else
  redis.call('SET', KEYS[3], ARGV[2])
end
if generation > tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 0
end
redis.call('DEL', KEYS[1])
return 1
"""

# Before each write wave: this reconcile still holds the lock, and no reconcile has applied
# this generation or a newer one. Renews the lock while it is at it.
#   KEYS: lock, applied generation    ARGV: token, generation, lock ttl ms
_FENCE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if tonumber(redis.call('GET', KEYS[2]) or '0') >= tonumber(ARGV[2]) then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""

# KEYS: generation. A record that expired meanwhile gets no generation back.
_INVALIDATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[1])
  return redis.call('INCR', KEYS[1])
end
return 0
"""


class DesiredStore:
    def __init__(self, redis: Redis, keys: Keys, retention_ms: int) -> None:
        self.redis = redis
        self.keys = keys
        # How long a tombstone (and a destroyed environment's records) is kept.
        self.retention_ms = retention_ms
        self._cas = redis.register_script(_CAS)
        self._finish = redis.register_script(_FINISH)
        self._fence = redis.register_script(_FENCE)
        self._invalidate = redis.register_script(_INVALIDATE)
        self._renew = redis.register_script(RENEW)
        self._release = redis.register_script(RELEASE)

    def _keys(self, key: EnvKey) -> tuple[str, str, str, str]:
        env = str(key)
        return (
            self.keys.desired(env),
            self.keys.generation(env),
            self.keys.lock(env),
            self.keys.applied_generation(env),
        )

    def _branch_index(self, desired: Desired | None, live_only: bool = True) -> str | None:
        if desired is None or (live_only and not desired.live) or not desired.head_ref:
            return None
        return self.keys.branch_envs(desired.provider, desired.repository, desired.head_ref)

    def _commit_index(self, desired: Desired | None, live_only: bool = True) -> str | None:
        if desired is None or (live_only and not desired.live) or not desired.head_sha:
            return None
        return self.keys.commit_envs(desired.provider, desired.repository, commit_prefix(desired.head_sha))

    async def load(self, key: EnvKey) -> tuple[int, Desired | None]:
        record, generation = await self.redis.mget(self._keys(key)[:2])
        desired = Desired.model_validate_json(record) if record else None
        return int(generation or 0), desired

    async def generation(self, key: EnvKey) -> int:
        """The newest generation of the desired state (one GET, no JSON)."""
        return int(await self.redis.get(self._keys(key)[1]) or 0)

    async def applied(self, key: EnvKey) -> int:
        """The generation the last finished reconcile applied (0: none)."""
        return int(await self.redis.get(self._keys(key)[3]) or 0)

    async def save(self, desired: Desired, expected_generation: int, previous: Desired | None) -> int | None:
        """Write if the generation is still `expected_generation` (the one `previous` was loaded
        at); the new generation, or None on a race."""
        record, generation, _, _ = self._keys(desired.key)
        index_keys = [
            self._branch_index(previous),
            self._branch_index(desired),
            self._commit_index(previous),
            self._commit_index(desired),
        ]
        result = await self._cas(
            keys=[record, generation, *(k or record for k in index_keys)],
            args=[
                expected_generation,
                desired.model_dump_json(),
                desired.number,
                0 if desired.live else self.retention_ms,
                *("1" if k else "0" for k in index_keys),
            ],
        )
        return None if int(result) < 0 else int(result)

    async def numbers_on_branch(self, provider: Provider, repository: str, branch: str) -> list[int]:
        """The live changes whose head branch is `branch` (what a push concerns)."""
        index = self.keys.branch_envs(provider, repository, branch)
        members: set[bytes] = await self.redis.smembers(index)  # type: ignore[misc]
        return sorted(int(n) for n in members)

    async def numbers_at_commit(self, provider: Provider, repository: str, sha: str) -> list[int]:
        """The live changes whose head may be `sha` (what a build without a number concerns);
        the caller compares the full hashes."""
        index = self.keys.commit_envs(provider, repository, commit_prefix(sha))
        members: set[bytes] = await self.redis.smembers(index)  # type: ignore[misc]
        return sorted(int(n) for n in members)

    async def retire(self, key: EnvKey) -> None:
        """A destroyed environment's record stays long enough to refuse late deliveries, then
        goes; it leaves the indexes now (its record may still say deploy: the host said the
        change is closed). Nothing is done if an event changed the record meanwhile: the
        reconcile runs again on it."""
        record, generation, _, applied = self._keys(key)
        async with self.redis.pipeline(transaction=True) as pipe:
            await pipe.watch(generation)
            raw = await pipe.get(record)
            desired = Desired.model_validate_json(raw) if raw else None
            pipe.multi()  # type: ignore[no-untyped-call]
            for name in (record, generation, applied):
                pipe.pexpire(name, self.retention_ms)
            for index in (self._branch_index(desired, False), self._commit_index(desired, False)):
                if index is not None:
                    pipe.srem(index, key.number)
            try:
                await pipe.execute()
            except WatchError:
                return

    # -- the per-environment lock: one reconcile at a time, across worker processes --

    async def acquire(self, key: EnvKey, token: str, ttl_ms: int) -> bool:
        return bool(await self.redis.set(self._keys(key)[2], token, nx=True, px=ttl_ms))

    async def renew(self, key: EnvKey, token: str, ttl_ms: int) -> bool:
        return bool(await self._renew(keys=[self._keys(key)[2]], args=[token, ttl_ms]))

    async def fence(self, key: EnvKey, token: str, generation: int, ttl_ms: int) -> None:
        """Raise LockLost unless this reconcile may still write `generation` (see _FENCE)."""
        _, _, lock, applied = self._keys(key)
        if not int(await self._fence(keys=[lock, applied], args=[token, generation, ttl_ms])):
            raise LockLost(f"{key}: the lock for generation {generation} is no longer held")

    async def invalidate(self, key: EnvKey) -> int:
        """After a lost lock: what this reconcile wrote may have landed over a newer apply, so a
        new generation is made (the same record), which whoever holds the lock now applies again
        before it lets go, or the reconcile queued for it does. Answers that generation (0 when
        the record is gone)."""
        whole = self.keys.whole_apply(str(key))
        return int(await self._invalidate(keys=[self._keys(key)[1], whole], args=[self.retention_ms]))

    async def whole_apply_due(self, key: EnvKey) -> bool:
        """Whether an invalidation asked for a whole apply that has not happened yet."""
        return bool(await self.redis.exists(self.keys.whole_apply(str(key))))

    async def whole_applied(self, key: EnvKey) -> None:
        await self.redis.delete(self.keys.whole_apply(str(key)))

    async def finish(
        self, key: EnvKey, token: str, applied_generation: int, ttl_ms: int
    ) -> Literal["done", "again", "lost"]:
        _, generation, lock, applied = self._keys(key)
        result = int(
            await self._finish(keys=[lock, generation, applied], args=[token, applied_generation, ttl_ms])
        )
        return {1: "done", 0: "again", -1: "lost"}[result]  # type: ignore[return-value]

    async def release(self, key: EnvKey, token: str) -> bool:
        """Let go of the lock; False when it was not held by `token` any more."""
        return bool(await self._release(keys=[self._keys(key)[2]], args=[token]))


def commit_prefix(sha: str) -> str:
    return sha[:COMMIT_PREFIX].lower()
