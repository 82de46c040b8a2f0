"""The sweep: TTLs and their warnings, preserve expiry, and namespaces whose record is gone.

Every K8S_EE_SWEEP_INTERVAL, on one worker (handlers/lifecycle/runs.py), over every environment
with a desired state:

- **TTL**: one idle past K8S_EE_TTL (no activity: handlers/lifecycle/activity.py) is destroyed
  (`env.destroy`, source `sweep`), unless preserved; its change is warned 24 h and 1 h before
  (TTLs shorter than a warning's lead skip it).
- **Preserve**: a preservation ending within the hour is warned of; one that ended is said so,
  and the environment reconciled: the namespace loses its `preserve=true` label, and a closed
  change's environment goes.
- **Closed changes**: found by the resync's host pass; with the resync off, the sweep runs
  that pass's closed-change part itself (handlers/lifecycle/resync.py).
- **Orphans**: a namespace this gateway manages whose environment record is gone (or says
  destroyed) is deleted once two sweeps, an interval apart, found it so and its host's listing
  (which proves the repository reachable) shows its change not open. One whose change is open
  gets its repository resynced, which takes it back. Without credentials for its host, or for
  the generic trigger, it is kept and counted: nothing is deleted that could not be checked.
- **Hibernated PostgreSQL**: an environment asleep whose CloudNativePG cluster was not healthy
  enough to hibernate is reconciled again, so its comment follows what the operator did.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from redis.asyncio import Redis

from handlers import naming
from handlers.cluster import Cluster, ClusterError, NamespaceInfo
from handlers.desired import Desired, EnvKey
from handlers.durations import describe
from handlers.keys import Keys
from handlers.lifecycle.activity import Activity
from handlers.lifecycle.counters import Tally
from handlers.lifecycle.emit import delivery_id
from handlers.lifecycle.notices import when
from handlers.lifecycle.resync import APART
from handlers.status import EnvironmentStatus
from providers.events import EventSource, EventType, LifecycleEvent, Provider
from providers.hosts.base import Host, HostError, NotFound

logger = logging.getLogger("k8s_ee.worker")

HOUR = 3600.0
DAY = 86400.0
# Records read per round trip.
BATCH = 500
# Nearest first: with 30 min left the hour's warning is the one to give.
TTL_WARNINGS = (("ttl-1h", HOUR), ("ttl-24h", DAY))
PRESERVE_WARNING = HOUR
PG_WAITING = "PostgreSQL keeps running for now"
# How long a repository the sweep registered for the resync stays registered.
REGISTERED_S = 7 * DAY

# Queue a warning: (env, kind, deadline epoch s, text) -> queued.
Warn = Callable[[str, str, float, str], Awaitable[bool]]


@dataclass
class Sweep:
    redis: Redis
    keys: Keys
    activity: Activity
    cluster: Cluster
    hosts: Mapping[Provider, Host]
    emit: Callable[[LifecycleEvent], Awaitable[bool]]
    # Queue a reconcile of the environment, named (so a sweep queues it once).
    reconcile: Callable[[EnvKey, str], Awaitable[None]]
    warn: Warn
    # Take an environment whose preservation ended out of the preserve index (None: no index).
    unpreserve: Callable[[EnvKey], Awaitable[None]] | None
    ttl_s: float
    interval_s: float
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    tally: Tally = field(default_factory=Tally)

    async def run(self) -> Tally:
        envs = await self._envs()
        for start in range(0, len(envs), BATCH):
            batch = envs[start : start + BATCH]
            desired, statuses, last = await self._read(batch)
            for env in batch:
                want, status = desired.get(env), statuses.get(env)
                if want is None:
                    continue
                activity = last.get(env)
                if activity is None:
                    activity = await self._seed(env, want, status)
                await self._preserve(env, want)
                await self._ttl(env, want, activity)
                await self._postgres(env, want, status)
        await self._orphans()
        return self.tally

    @property
    def _now(self) -> float:
        return self.now.timestamp()

    async def _envs(self) -> list[str]:
        members: list[bytes] = await self.redis.zrange(self.keys.statuses(), 0, -1)
        return [m.decode() for m in members]

    async def _read(
        self, envs: Sequence[str]
    ) -> tuple[dict[str, Desired], dict[str, EnvironmentStatus], dict[str, float]]:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.mget([self.keys.desired(e) for e in envs])
            pipe.mget([self.keys.status(e) for e in envs])
            pipe.zmscore(self.keys.activity(), list(envs))
            raw_desired, raw_status, scores = await pipe.execute()
        desired = {e: Desired.model_validate_json(r) for e, r in zip(envs, raw_desired, strict=True) if r}
        statuses = {
            e: EnvironmentStatus.model_validate_json(r) for e, r in zip(envs, raw_status, strict=True) if r
        }
        last = {e: float(s) for e, s in zip(envs, scores, strict=True) if s is not None}
        return desired, statuses, last

    async def _seed(self, env: str, want: Desired, status: EnvironmentStatus | None) -> float:
        """An environment from before activity was recorded: active when its record last changed."""
        moment = (want.updated_at or self.now).timestamp()
        if status is not None and status.state == "deployed":
            await self.activity.awake(env, moment, None)
        else:
            await self.activity.touch(env, moment)
        return moment

    # -- TTL ---------------------------------------------------------------------------------

    async def _ttl(self, env: str, want: Desired, last: float) -> None:
        if not self.ttl_s or want.action != "deploy" or want.preserved(self.now):
            return
        deadline = last + self.ttl_s
        left = deadline - self._now
        if left <= 0:
            key = EnvKey.parse(env)
            event = LifecycleEvent(
                provider=key.provider,
                delivery_id=delivery_id(f"ttl:{env}:{int(deadline)}"),
                type=EventType.ENV_DESTROY,
                repository=key.repository,
                number=key.number,
                actor="k8s-ee sweep",
                occurred_at=self.now,
                received_at=self.now,
                source=EventSource.SWEEP,
            )
            if await self.emit(event):
                self.tally.change("ttl_destroyed")
            return
        for kind, lead in TTL_WARNINGS:
            if lead < self.ttl_s and left <= lead:
                at = datetime.fromtimestamp(deadline, UTC)
                text = (
                    f"⏳ **This preview environment will be destroyed at {when(at)}** "
                    f"(in about {describe(lead)}): it has had no activity for "
                    f"{describe(self.ttl_s - lead)}, and environments go after {describe(self.ttl_s)} "
                    "without any. Push a commit, comment, or visit the preview to keep it; "
                    "`/preserve` keeps it regardless."
                )
                if await self.warn(env, kind, deadline, text):
                    self.tally.change("warned")
                return  # the nearer warning only

    # -- preserve ----------------------------------------------------------------------------

    async def _preserve(self, env: str, want: Desired) -> None:
        until = want.preserved_until
        if until is None:
            return
        left = until.timestamp() - self._now
        if left > PRESERVE_WARNING:
            return
        if left > 0:
            text = (
                f"📌 **This preview environment is preserved until {when(until)}**, about an hour "
                "from now. Comment `/preserve` to keep it longer."
            )
            if await self.warn(env, "preserve-1h", until.timestamp(), text):
                self.tally.change("warned")
            return
        closed = want.action == "destroy"
        text = f"📌 **This preview environment is no longer preserved** (it was until {when(until)}). " + (
            "Its change is closed, so the environment is destroyed now."
            if closed
            else "It stays while its change is open; the `preserve=true` label is removed."
        )
        if await self.warn(env, "preserve-expired", until.timestamp(), text):
            self.tally.change("preserve_expired")
            if self.unpreserve is not None:
                await self.unpreserve(EnvKey.parse(env))
            # Applied without the label (open), or destroyed (closed): the reconcile decides.
            await self.reconcile(EnvKey.parse(env), f"preserve-expired:{int(until.timestamp())}")

    # -- hibernated PostgreSQL ------------------------------------------------------------------

    async def _postgres(self, env: str, want: Desired, status: EnvironmentStatus | None) -> None:
        if not want.hibernated or status is None or status.state != "hibernated":
            return
        if PG_WAITING in (status.note or ""):
            await self.reconcile(EnvKey.parse(env), f"postgres:{int(self._now)}")
            self.tally.change("postgres_rechecked")

    # -- orphans -----------------------------------------------------------------------------

    async def _orphans(self) -> None:
        try:
            namespaces = await self.cluster.namespaces()
        except ClusterError as error:
            self.tally.error("cluster")
            logger.warning("sweep: cannot list the managed namespaces: %s", error)
            return
        seen_now: set[str] = set()
        listings: dict[tuple[Provider, str], set[int] | None] = {}
        candidates = [info for info in namespaces if not info.terminating]
        for start in range(0, len(candidates), BATCH):
            batch = candidates[start : start + BATCH]
            for info in await self._orphaned(batch):
                seen_now.add(info.name)
                await self._orphan(info, listings)
        # A namespace no longer orphaned (or gone) loses its first sighting.
        recorded: dict[bytes, bytes] = await self.redis.hgetall(self.keys.orphans_seen())  # type: ignore[misc]
        stale = [name for name in (k.decode() for k in recorded) if name not in seen_now]
        if stale:
            await self.redis.hdel(self.keys.orphans_seen(), *stale)  # type: ignore[misc]

    async def _orphaned(self, batch: Sequence[NamespaceInfo]) -> list[NamespaceInfo]:
        """Those of `batch` without a live environment record: no claim, no record, or destroyed.
        Two round trips for the whole batch."""
        owners = await self.redis.mget([self.keys.namespace(info.name) for info in batch])
        claimed = [(info, owner.decode()) for info, owner in zip(batch, owners, strict=True) if owner]
        found = [info for info, owner in zip(batch, owners, strict=True) if owner is None]
        if not claimed:
            return found
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.mget([self.keys.status(env) for _, env in claimed])
            pipe.mget([self.keys.desired(env) for _, env in claimed])
            raw_status, raw_desired = await pipe.execute()
        for (info, _), status, desired in zip(claimed, raw_status, raw_desired, strict=True):
            if (
                status is None
                or desired is None
                or EnvironmentStatus.model_validate_json(status).state == "destroyed"
            ):
                found.append(info)
        return found

    async def _orphan(
        self, info: NamespaceInfo, listings: dict[tuple[Provider, str], set[int] | None]
    ) -> None:
        repository = info.repository
        try:
            provider = Provider(info.labels.get(naming.LABEL_PROVIDER, ""))
            number = int(info.labels.get(naming.LABEL_PR_NUMBER, ""))
        except ValueError:
            provider, number = Provider.GENERIC, 0
        host = self.hosts.get(provider)
        if host is None or not repository or not number:
            self.tally.change("orphan_unverifiable")
            logger.warning(
                "sweep: namespace %s has no environment record, and its change cannot be checked "
                "(no credentials for its host): kept",
                info.name,
            )
            return
        if (provider, repository) not in listings:
            listings[(provider, repository)] = await self._open_numbers(host, repository)
        open_numbers = listings[(provider, repository)]
        if open_numbers is None:
            self.tally.error(provider.value)
            return  # the host could not be read: nothing is deleted
        if number in open_numbers:
            # An open change whose record was lost: the resync creates it again, adopting this.
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.sadd(self.keys.resync_repositories(), f"{provider.value}:{repository}")
                # Until its environment is back (then it is resynced for having one), and a while more.
                pipe.expire(self.keys.resync_repositories(), int(REGISTERED_S))
                await pipe.execute()
            await self.redis.hdel(self.keys.orphans_seen(), info.name)  # type: ignore[misc]
            self.tally.change("orphan_reclaimed")
            return
        first = await self.redis.hget(self.keys.orphans_seen(), info.name)  # type: ignore[misc]
        if first is None:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.hset(self.keys.orphans_seen(), info.name, str(self._now))
                pipe.expire(self.keys.orphans_seen(), int(max(self.interval_s, 60) * 10))
                await pipe.execute()
            self.tally.change("orphan_suspected")
            return
        if self._now - float(first) < APART * self.interval_s:
            return
        try:
            result = await self.cluster.destroy(info.name, repository)
        except ClusterError as error:
            self.tally.error("cluster")
            logger.warning("sweep: could not delete orphaned namespace %s: %s", info.name, error)
            return
        await self.redis.hdel(self.keys.orphans_seen(), info.name)  # type: ignore[misc]
        if result.preserved:
            self.tally.change("orphan_preserved")
        else:
            logger.info("sweep: deleted namespace %s: no environment record, change not open", info.name)
            self.tally.change("orphan_deleted")

    async def _open_numbers(self, host: Host, repository: str) -> set[int] | None:
        try:
            return {c.number for c in await asyncio.to_thread(host.open_changes, repository)}
        except NotFound:
            return None  # not reachable: not proof of anything
        except HostError as exc:
            logger.warning("sweep: cannot list the open changes of %s: %s", repository, exc)
            return None
