"""After the apply: follow the rollout until the environment is really up, without holding a worker.

"Deployed" means the preview answers: the app's Deployment at the new revision and available,
every database ready as its operator reports it (handlers/rollout.py). A reconcile does not
wait for that. It applies, looks once (`begin`), and if the environment is not up yet records
`deploying` with its progress and a *watch* in Redis, then queues a `check_ready` job deferred
by a short delay. That job (`check`) looks again and either settles the environment
(`deployed`, with `deployed_at` the moment it was found ready, or `failed` with the reason its
pods or ReplicaSet give) or queues itself again, a little later each time, until
K8S_EE_READY_TIMEOUT has passed since the apply. A waiting environment costs a key and a
deferred job in Redis and nothing in the worker, so hundreds can wait at once; each check is a
few reads.

The generation model holds: a check takes the environment's lock (never waiting for it) and
acts only if its watch is still the one the last apply wrote (a token) for the generation that
is still the newest; a newer event's reconcile replaces the watch, so a check of an older
apply never settles a newer one. Releasing the lock is the reconcile's own finish check: if an
event arrived meanwhile, the caller runs the reconcile that event's job left to the lock's
holder.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel
from redis.asyncio import Redis

from handlers import rollout
from handlers.cluster import Cluster, ClusterError, ObjectRef
from handlers.desired import DesiredStore, EnvKey
from handlers.keys import Keys
from handlers.rollout import Observation, Target
from handlers.status import EnvironmentStatus, Fence, StatusStore, Superseded

logger = logging.getLogger("k8s_ee.worker")

# Seconds before the first check, how much longer each wait is, and the longest wait.
FIRST_CHECK_S = 0.5
BACKOFF = 1.5
LONGEST_WAIT_S = 10.0
# A check that finds the lock held (a reconcile runs) looks again this soon.
BUSY_RETRY_S = 1.0

# What one look at a rollout found (not an adapter's `providers.verdicts.Outcome`).
CheckResult = Literal["deployed", "failed", "waiting", "stale", "busy", "again"]


class Watch(BaseModel):
    """What the checks of one apply follow."""

    token: str
    generation: int
    namespace: str
    deadline: datetime
    targets: list[Target]
    checks: int = 0


def wait_before(checks: int) -> float:
    """Seconds before the next check: growing, capped, jittered so waiting environments spread."""
    base = min(LONGEST_WAIT_S, FIRST_CHECK_S * BACKOFF**checks)
    return base * random.uniform(0.8, 1.2)


@dataclass
class Readiness:
    redis: Redis
    keys: Keys
    desired: DesiredStore
    statuses: StatusStore
    cluster: Cluster
    # Queue a check of `env` for `token` after `delay` seconds (the check_ready job).
    schedule: Callable[[str, str, float], Awaitable[None]]
    timeout_s: float = 600.0
    progress_interval_s: float = 5.0
    lock_ttl_s: int = 30
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    # Told of every state change (report back, status webhooks).
    on_change: Callable[[EnvironmentStatus, str | None], Awaitable[None]] | None = None
    # Told of a progress update (the comment follows it).
    on_progress: Callable[[EnvironmentStatus], Awaitable[None]] | None = None
    # Told of each apply's outcome once it is known, deployed or failed (the DORA counts).
    on_settled: Callable[[EnvironmentStatus], Awaitable[None]] | None = None

    # -- from the reconcile, which holds the environment's lock ---------------------------------

    async def begin(
        self, status: EnvironmentStatus, manifests: Sequence[dict[str, Any]], *, unchanged: bool = False
    ) -> EnvironmentStatus:
        """The apply of `status.generation` is done: deployed if already up, else watched.

        `unchanged`: nothing was applied, the manifests being what the last apply applied. If
        that apply's environment was found deployed, only the app is looked at again (one read
        while it answers, the one request besides the namespace's that a no-op redeploy costs):
        still available, it stays deployed, since when it was; the databases, unchanged, are
        not read again. An app no longer available, or an environment that was not deployed,
        is watched as after any apply, every target read."""
        now = self.clock()
        if not unchanged:
            status = status.model_copy(update={"applied_at": now})
        if unchanged and status.state == "deployed":
            app = [target for target in rollout.targets(manifests) if target.label == "app"]
            assert status.namespace is not None
            if not self.cluster.observes or (await self._observe(status.namespace, app)).ready:
                still = status.model_copy(update={"progress": None, "progress_at": None, "updated_at": now})
                await self.statuses.publish(still, self.on_change)
                return still
        if not self.cluster.observes:
            # A folder for a GitOps tool: what runs is that tool's to report.
            return await self._settle(status, "deployed", now)
        assert status.namespace is not None
        watch = Watch(
            token=uuid.uuid4().hex,
            generation=status.generation,
            namespace=status.namespace,
            deadline=now + timedelta(seconds=self.timeout_s),
            targets=rollout.targets(manifests),
        )
        observed = await self._observe(watch.namespace, watch.targets)
        if observed.ready:
            return await self._settle(status, "deployed", now)
        if observed.failure:
            return await self._settle(status, "failed", now, observed.failure)
        await self._save(status.key, watch)
        status = status.model_copy(
            update={
                "state": "deploying",
                "progress": observed.progress,
                "progress_at": now,
                "updated_at": now,
            }
        )
        await self.statuses.publish(status, self.on_change)
        if self.on_progress is not None:
            await self.on_progress(status)
        await self.schedule(status.key, watch.token, wait_before(0))
        return status

    # -- the check_ready job ------------------------------------------------------------------

    async def check(self, key: EnvKey, token: str) -> CheckResult:
        """Look once at the rollout `token` follows. "again": an event arrived while this check
        held the lock, and the caller must run the reconcile (the event's job left it to us)."""
        env = str(key)
        lock = uuid.uuid4().hex
        ttl_ms = self.lock_ttl_s * 1000
        if not await self.desired.acquire(key, lock, ttl_ms):
            await self.schedule(env, token, BUSY_RETRY_S)
            return "busy"
        try:
            seen = await self.desired.generation(key)
            outcome = await self._check(env, token, seen)
        except BaseException:
            await self.desired.release(key, lock)
            raise
        # The reconcile's own finish check: released, unless an event came while we held it.
        if await self.desired.finish(key, lock, seen, ttl_ms) == "again":
            await self.desired.release(key, lock)
            return "again"
        return outcome

    async def _check(self, env: str, token: str, generation: int) -> CheckResult:
        watch = await self._load(env)
        status = await self.statuses.get(env)
        if (
            watch is None
            or watch.token != token
            or watch.generation != generation
            or status is None
            or status.state != "deploying"
            or status.generation != generation
        ):
            return "stale"  # a newer apply (or a destroy) took over
        # Bounded well inside the lock's lifetime: a slow API cannot outlast the lock.
        try:
            observed = await asyncio.wait_for(
                self._observe(watch.namespace, watch.targets), timeout=self.lock_ttl_s / 2
            )
        except TimeoutError:
            observed = Observation(ready=False, progress=status.progress or "", failure=None)
        now = self.clock()
        # Written only while no newer event has changed what is wanted, atomically.
        fence = (self.keys.generation(env), generation)
        failure = observed.failure
        if failure is None and not observed.ready and now >= watch.deadline:
            failure = f"not ready {self.timeout_s:.0f} s after the apply: {observed.progress}"
        try:
            if observed.ready or failure is not None:
                state: Literal["deployed", "failed"] = "deployed" if observed.ready else "failed"
                await self._settle(status, state, now, failure, fence)
                await self._forget(env)
                return state
            await self._progress(status, observed.progress, now, fence)
        except Superseded:
            return "stale"
        watch = watch.model_copy(update={"checks": watch.checks + 1})
        await self._save(env, watch)
        await self.schedule(env, token, wait_before(watch.checks))
        return "waiting"

    # -- reading the cluster --------------------------------------------------------------------

    async def _observe(self, namespace: str, targets: Sequence[Target]) -> Observation:
        try:
            assessments = await asyncio.gather(*(self._assess(namespace, t) for t in targets))
        except ClusterError as error:
            # Not an answer about the rollout: look again next time.
            logger.warning("could not read the rollout of %s: %s", namespace, error)
            return Observation(ready=False, progress=f"could not read the rollout: {error}")
        return rollout.summarise(assessments)

    async def _assess(self, namespace: str, target: Target) -> rollout.Assessment:
        ref = ObjectRef(api_version=target.api_version, kind=target.kind, name=target.name)
        obj = await self.cluster.read(namespace, ref)
        assessment = rollout.assess(target, obj)
        if assessment.needs_pods and target.pod_labels:
            # Only a workload that is not ready costs a second read: its pods say why.
            assessment = rollout.assess(target, obj, await self.cluster.pods(namespace, target.pod_labels))
        return assessment

    # -- records --------------------------------------------------------------------------------

    async def _settle(
        self,
        status: EnvironmentStatus,
        state: Literal["deployed", "failed"],
        now: datetime,
        error: str | None = None,
        fence: Fence | None = None,
    ) -> EnvironmentStatus:
        update: dict[str, object] = {"state": state, "updated_at": now, "progress": None, "progress_at": None}
        if state == "deployed":
            update |= {"deployed_at": now, "last_error": None}
        else:
            update["last_error"] = error
            logger.warning("environment %s failed: %s", status.key, error)
        settled = status.model_copy(update=update)
        await self.statuses.publish(settled, self.on_change, fence)
        if self.on_settled is not None:
            await self.on_settled(settled)
        return settled

    async def _progress(self, status: EnvironmentStatus, progress: str, now: datetime, fence: Fence) -> None:
        """Write new progress, at most every progress interval (the comment follows it)."""
        if progress == status.progress:
            return
        if (
            status.progress_at is not None
            and (now - status.progress_at).total_seconds() < self.progress_interval_s
        ):
            return
        updated = status.model_copy(update={"progress": progress, "progress_at": now, "updated_at": now})
        await self.statuses.publish(updated, self.on_change, fence)
        if self.on_progress is not None:
            await self.on_progress(updated)

    async def _load(self, env: str) -> Watch | None:
        raw = await self.redis.get(self.keys.readiness(env))
        return Watch.model_validate_json(raw) if raw else None

    async def _save(self, env: str, watch: Watch) -> None:
        # Outlives its deadline a little, then goes by itself (a destroyed environment's too).
        ttl = max(1.0, (watch.deadline - self.clock()).total_seconds()) + 60
        await self.redis.set(self.keys.readiness(env), watch.model_dump_json(), px=int(ttl * 1000))

    async def _forget(self, env: str) -> None:
        await self.redis.delete(self.keys.readiness(env))
