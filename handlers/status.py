"""Each environment's status record, and the links from deliveries to the reconciles that applied them.

Written by the worker, read by the gateway's admin API (this module imports no
cluster or SDK code, so the web process can use it).
"""

from __future__ import annotations

import heapq
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from pydantic.json_schema import SkipJsonSchema
from redis.asyncio import Redis
from redis.exceptions import WatchError

from handlers.keys import Keys
from providers.events import Provider
from providers.states import State


class EnvironmentStatus(BaseModel):
    provider: Provider
    repository: str
    number: int
    state: State
    namespace: str | None = None
    head_sha: str | None = None
    head_ref: str | None = None
    preview_url: str | None = None
    databases: list[str] = []
    # What went wrong last (a config error with its field path, an API error's message).
    last_error: str | None = None
    # Why nothing is deployed when that is on purpose (a draft, a fork, on-demand, the queue),
    # or what to know about what is (a fork's approved commit, what keeps running asleep).
    note: str | None = None
    # While deploying: how far the rollout is ("postgresql ready, app 0/1: pulling the image"),
    # and when that was written (it is rewritten at most every K8S_EE_READY_PROGRESS_INTERVAL).
    progress: str | None = None
    progress_at: datetime | None = None
    # What was left out and why (a ServiceMonitor without the Prometheus Operator).
    warnings: list[str] = []
    # How many comments the change had when the host was last asked (None: not asked, or the host
    # does not say). With none, and nothing reported yet, the first report's comment is created
    # without a search for an earlier one (handlers/report.py).
    host_comments: int | None = None
    # A fork's change: the commit that was approved (and is the one deployed).
    approved_sha: str | None = None
    # Preserved until then (handlers.preserve).
    preserved_until: datetime | None = None
    # What each Deployment ran when the environment fell asleep: restored exactly on wake.
    replicas: dict[str, int] = {}
    hibernated_at: datetime | None = None
    # Hibernated, and a visit to its preview URL wakes it (its host goes to the wake service).
    wakes_on_visit: bool = False
    generation: int = 0
    reconciles: int = 0
    last_reconcile: str | None = None
    # The deliveries the last reconcile applied.
    deliveries: list[str] = []
    created_at: datetime | None = None
    updated_at: datetime | None = None
    # When the last apply finished, and when the environment was then found ready (deployed).
    applied_at: datetime | None = None
    deployed_at: datetime | None = None
    # The digest of the manifests the last apply finished applying (handlers/cluster/digest.py);
    # None while one runs or after one failed. With the namespace's own record of it, a
    # redeploy of the same manifests is known to change nothing (handlers/reconcile.py).
    applied_digest: str | None = None

    @property
    def key(self) -> str:
        return f"{self.provider.value}:{self.repository}:{self.number}"


class ReportState(BaseModel):
    """What was last told to the host about one environment (kept beside its status record)."""

    comment_id: str | None = None
    # A digest of the comment as last written: the same text is not written again.
    # Internal (the API leaves both out): not in the OpenAPI document either.
    comment_digest: SkipJsonSchema[str | None] = None
    # What the host client wrote for the environment (deployment ids, status digests): a
    # providers.hosts.reporting.ReportMemo, kept as plain data (the gateway reads this model and
    # never imports the host clients).
    memo: SkipJsonSchema[dict[str, Any]] = Field(default_factory=dict)
    reported: str | None = None  # state@head@updated_at of the last report that got through
    last_error: str | None = None
    attempts: int = 0
    updated_at: datetime | None = None


class AppliedBy(BaseModel):
    """Where an accepted delivery ended up: the reconcile that applied it, or why none did."""

    reconcile: str | None = None
    namespace: str | None = None
    state: State | None = None
    note: str | None = None
    at: datetime


# Record where each delivery ended up. The first reconcile that applied it stays its answer, so
# later reconciles, which list the environment's deliveries again, change nothing. What came
# before it is not an answer yet and gives way to it: a decision's note (a chat command's, the
# reconcile it asked for still to come), or a reconcile that only queued it for a slot.
_LINK = """
for _, key in ipairs(KEYS) do
  local current = redis.call('GET', key)
  local provisional = current and (string.find(current, '"reconcile":null', 1, true)
    or string.find(current, '"state":"queued"', 1, true))
  if not current or (provisional and ARGV[3] == '1') then
    redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
  end
end
return 0
"""


# Take a namespace for an environment unless another environment owns it. An owner whose
# claim has an expiry (it was destroyed) or whose status record is gone owns nothing any more.
#   KEYS: namespace key    ARGV: environment, the status key stem
_CLAIM = """
local owner = redis.call('GET', KEYS[1])
if owner and owner ~= ARGV[1] and redis.call('PTTL', KEYS[1]) == -1
   and redis.call('EXISTS', ARGV[2] .. owner) == 1 then
  return owner
end
redis.call('SET', KEYS[1], ARGV[1])
return false
"""

# Let go of a namespace this environment owns: at once (`ms` 0), or kept `ms` for the admin
# API to find the destroyed environment by its namespace.
#   KEYS: namespace key    ARGV: environment, ms
_UNCLAIM = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if tonumber(ARGV[2]) > 0 then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return redis.call('DEL', KEYS[1])
"""


# Write a status record and its place in the indexes, in one step; with a fence (ARGV[6] >= 0),
# only while the generation key holds no newer generation. A destroyed environment's record
# expires after the retention, in the retired index, which is trimmed to it and expires with
# its newest member; a live one stays, in the live index.
#   KEYS: status, live index, retired index, fence generation (the status key when none)
#   ARGV: record, environment, stamp (epoch s), retired (1/0), retention ms, fenced generation
# Answers {written (1/0), the record replaced or false}.
_PUT = """
local fenced = tonumber(ARGV[6])
if fenced >= 0 and tonumber(redis.call('GET', KEYS[4]) or '0') > fenced then return {0, false} end
local previous
if ARGV[4] == '1' then
  previous = redis.call('SET', KEYS[1], ARGV[1], 'GET', 'PX', ARGV[5])
  redis.call('ZREM', KEYS[2], ARGV[2])
  redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2])
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', tonumber(ARGV[3]) - tonumber(ARGV[5]) / 1000)
  redis.call('PEXPIRE', KEYS[3], ARGV[5])
else
  previous = redis.call('SET', KEYS[1], ARGV[1], 'GET')
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
  redis.call('ZREM', KEYS[3], ARGV[2])
end
return {1, previous}
"""

# A first record, unless one exists (the reconcile owns it), with its place in the live index.
#   KEYS: status, live index    ARGV: record, environment, stamp    Answers 1 when written.
_CREATE = """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX') then return 0 end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
return 1
"""


class Superseded(Exception):
    """Not written: a newer generation of the desired state exists than the one acted on."""


# (the generation key, the generation the writer acted on): the write happens only while no
# newer generation exists, atomically.
Fence = tuple[str, int]


class StatusStore:
    def __init__(self, redis: Redis, keys: Keys, retention_ms: int, environment_retention_ms: int) -> None:
        self.redis = redis
        self.keys = keys
        # The delivery links' retention, and the destroyed environments'.
        self._link = redis.register_script(_LINK)
        self.retention_ms = retention_ms
        self.environment_retention_ms = environment_retention_ms
        self._claim = redis.register_script(_CLAIM)
        self._put = redis.register_script(_PUT)
        self._create = redis.register_script(_CREATE)
        self._unclaim = redis.register_script(_UNCLAIM)

    def _status_key(self, key: str) -> str:
        return self.keys.status(key)

    async def get(self, key: str) -> EnvironmentStatus | None:
        raw = await self.redis.get(self._status_key(key))
        return EnvironmentStatus.model_validate_json(raw) if raw else None

    async def put(self, status: EnvironmentStatus, fence: Fence | None = None) -> EnvironmentStatus | None:
        """Write the record; answers the one it replaced. A destroyed environment's record is
        kept for the environment retention period, then forgotten (a live one never expires).
        With a `fence`, raises Superseded instead of writing once a newer generation exists."""
        stamp = status.updated_at.timestamp() if status.updated_at else 0
        key = self._status_key(status.key)
        written, previous = await self._put(
            keys=[key, self.keys.statuses(), self.keys.retired_statuses(), fence[0] if fence else key],
            args=[
                status.model_dump_json(),
                status.key,
                stamp,
                "1" if status.state == "destroyed" else "0",
                self.environment_retention_ms,
                fence[1] if fence else -1,
            ],
        )
        if not int(written):
            raise Superseded(status.key)
        return EnvironmentStatus.model_validate_json(previous) if previous else None

    async def publish(
        self,
        status: EnvironmentStatus,
        on_change: Callable[[EnvironmentStatus, str | None], Awaitable[None]] | None,
        fence: Fence | None = None,
    ) -> None:
        """Write the record and tell `on_change` (report back, status webhooks) when its state changed."""
        previous = await self.put(status, fence)
        if on_change is not None and (previous is None or previous.state != status.state):
            await on_change(status, previous.state if previous else None)

    async def create(self, status: EnvironmentStatus) -> bool:
        """Write a first record; an existing one is left alone (the reconcile owns it)."""
        stamp = status.updated_at.timestamp() if status.updated_at else 0
        created = await self._create(
            keys=[self._status_key(status.key), self.keys.statuses()],
            args=[status.model_dump_json(), status.key, stamp],
        )
        return bool(int(created))

    async def update_waiting(self, status: EnvironmentStatus, queue: str) -> bool:
        """Write a queued environment's record (its new place in the queue) only while it is
        still queued and still in `queue`: never over what its own reconcile wrote meanwhile."""
        key = self._status_key(status.key)
        async with self.redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(key, queue)
                raw = await pipe.get(key)
                current = EnvironmentStatus.model_validate_json(raw) if raw else None
                if (
                    current is None
                    or current.state != "queued"
                    or await pipe.zscore(queue, status.key) is None
                ):
                    return False
                pipe.multi()  # type: ignore[no-untyped-call]
                pipe.set(key, status.model_dump_json())
                await pipe.execute()
            except WatchError:
                return False
        return True

    async def retire(self, status: EnvironmentStatus) -> None:
        """A destroyed environment's other records go with its status: what was reported, the
        warning flag, and its claim on the namespace (kept as long, for the admin API)."""
        ttl = self.environment_retention_ms
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.pexpire(self.keys.report(status.key), ttl)
            pipe.pexpire(self.keys.report_warned(status.key), ttl)
            await pipe.execute()
        if status.namespace:
            await self.unclaim(status.namespace, status.key, keep_ms=ttl)

    # -- namespaces: one owning environment each (SPEC 1) --

    async def claim(self, namespace: str, key: str) -> str | None:
        """Make environment `key` the namespace's owner; None when it is, else the owner's key."""
        owner = await self._claim(keys=[self.keys.namespace(namespace)], args=[key, self.keys.status("")])
        return owner.decode() if owner else None

    async def unclaim(self, namespace: str, key: str, keep_ms: int = 0) -> None:
        await self._unclaim(keys=[self.keys.namespace(namespace)], args=[key, keep_ms])

    async def by_namespace(self, namespace: str) -> EnvironmentStatus | None:
        """The environment that owns `namespace` (or owned it, while a destroyed one is kept)."""
        key = await self.redis.get(self.keys.namespace(namespace))
        return await self.get(key.decode()) if key else None

    async def recent(
        self,
        *,
        provider: Provider | None = None,
        repository: str | None = None,
        state: str | None = None,
        limit: int = 100,
    ) -> list[EnvironmentStatus]:
        live = await self.redis.zrevrange(self.keys.statuses(), 0, -1, withscores=True)
        retired = await self.redis.zrevrange(self.keys.retired_statuses(), 0, -1, withscores=True)
        # Newest first, live and destroyed together.
        keys = [member for member, _ in heapq.merge(live, retired, key=lambda m: -m[1])]
        found: list[EnvironmentStatus] = []
        # Environments number in the hundreds, not millions: one MGET of all of them is fine.
        values = await self.redis.mget([self._status_key(k.decode()) for k in keys]) if keys else []
        for raw in values:
            if raw is None:
                continue
            status = EnvironmentStatus.model_validate_json(raw)
            if provider and status.provider != provider:
                continue
            if repository and status.repository.lower() != repository.lower():
                continue
            if state and status.state != state:
                continue
            found.append(status)
            if len(found) == limit:
                break
        return found

    async def report_state(self, key: str) -> ReportState | None:
        raw = await self.redis.get(self.keys.report(key))
        return ReportState.model_validate_json(raw) if raw else None

    async def save_report_state(self, status: EnvironmentStatus, state: ReportState) -> None:
        """Kept as long as the environment's status: for good while it lives, then the retention."""
        retired = status.state == "destroyed"
        await self.redis.set(
            self.keys.report(status.key),
            state.model_dump_json(),
            px=self.environment_retention_ms if retired else None,
        )

    async def link(self, provider: Provider, delivery_ids: list[str], applied: AppliedBy) -> None:
        """Record where each delivery ended up (see `_LINK`); a replay clears the record first
        (`forget_applied`), to record anew."""
        if not delivery_ids:
            return
        keys = [self.keys.applied(provider, delivery_id) for delivery_id in delivery_ids]
        applies = "1" if applied.reconcile is not None else "0"
        await self._link(keys=keys, args=[applied.model_dump_json(), self.retention_ms, applies])

    async def forget_applied(self, provider: Provider, delivery_id: str) -> None:
        await self.redis.delete(self.keys.applied(provider, delivery_id))

    async def applied(self, provider: Provider, delivery_id: str) -> dict[str, Any] | None:
        raw = await self.redis.get(self.keys.applied(provider, delivery_id))
        return AppliedBy.model_validate_json(raw).model_dump(mode="json") if raw else None
