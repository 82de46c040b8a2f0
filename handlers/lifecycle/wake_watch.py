"""After a wake: follow the app until its pod is ready, then send the preview host back to it.

A woken environment is applied awake (its Deployments at the counts they ran before) while its
Ingress still sends the host to the gateway's wake service, so a visitor meanwhile gets the
waiting page rather than the ingress controller's 503. This job reads the app's Deployment every
POLL_S; once its pods are ready it clears `wake_route` in the desired state (a compare-and-set,
like any event) and queues the reconcile that points the Ingress at the app again and records
the environment `deployed`, which the waiting page learns within a second and follows.

The job never holds a worker for long: after SLICE_S it queues itself again. It stops when the
environment is no longer waking, or when a newer reconcile took over (which watches anew if it
is still waking). A wake that is not ready after WAKE_TIMEOUT_S (15 minutes) of checks leaves the
environment `failed`, with what the Deployment says.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from handlers import naming
from handlers.cluster import Cluster, ClusterError, ObjectRef
from handlers.desired import DesiredStore, EnvKey
from handlers.keys import Keys
from handlers.policy import app_ready
from handlers.status import EnvironmentStatus, StatusStore

logger = logging.getLogger("k8s_ee.worker")

# How often the app's Deployment is read while it wakes: well inside the one second the
# platform may add to the pod becoming ready.
POLL_S = 0.2
# How long one job watches before it queues the next.
SLICE_S = 20.0
# Longer than this, and the wake failed.
WAKE_TIMEOUT_S = 900.0
MAX_CAS_ATTEMPTS = 20


def deployment_ready(deployment: Mapping[str, Any] | None) -> tuple[bool, str]:
    """Whether a Deployment's pods are all ready at its current template, and a line of progress.

    Ready: at least one replica wanted, the controller has seen the current generation, and as
    many pods updated and ready as wanted."""
    if deployment is None:
        return False, "the app's Deployment is missing"
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    wanted = int(spec.get("replicas", 1) or 0)
    ready = int(status.get("readyReplicas") or 0)
    updated = status.get("updatedReplicas")
    generation = (deployment.get("metadata") or {}).get("generation")
    observed = status.get("observedGeneration")
    if wanted == 0:
        return False, "the app is scaled to zero"
    if generation is not None and observed is not None and int(observed) < int(generation):
        return False, f"app 0/{wanted} ready: the rollout has not started yet"
    if updated is not None and int(updated) < wanted:
        return False, f"app {min(ready, int(updated))}/{wanted} ready: starting"
    if ready < wanted:
        return False, f"app {ready}/{wanted} ready: starting"
    return True, f"app {ready}/{wanted} ready"


async def progress(statuses: StatusStore, keys: Keys, env: str) -> str | None:
    """What the watch last saw of a waking environment's app (for the waiting page)."""
    raw = await statuses.redis.get(keys.wake_progress(env))
    return raw.decode() if raw else None


@dataclass
class WakeWatch:
    desired: DesiredStore
    statuses: StatusStore
    keys: Keys
    cluster: Cluster
    # Queue the reconcile of `key` for the desired generation given.
    reconcile: Callable[[EnvKey, int], Awaitable[None]]
    # Queue this watch again (key, generation, started at epoch s).
    again: Callable[[EnvKey, int, float], Awaitable[None]]
    # Told of a state change (a wake that failed).
    on_change: Callable[[EnvironmentStatus, str | None], Awaitable[None]] | None = None
    clock: Callable[[], float] = field(default=time.time)
    poll_s: float = POLL_S
    slice_s: float = SLICE_S
    timeout_s: float = WAKE_TIMEOUT_S

    async def watch(self, key: EnvKey, generation: int, started: float) -> str:
        env = str(key)
        deadline = time.monotonic() + self.slice_s
        last_progress = ""
        while True:
            status = await self.statuses.get(env)
            _, want = await self.desired.load(key)
            if want is None or app_ready(want, datetime.now(UTC)) is None or status is None:
                return "not waking"
            if status.generation != generation or status.state != "deploying" or not status.namespace:
                return "a newer reconcile took over"
            ready, progress = await self._look(status.namespace)
            if ready or not self.cluster.observes:
                return await self._ready(key)
            if progress != last_progress:
                # Beside the status, not in it: the reconcile owns the status record.
                last_progress = progress
                await self.statuses.redis.set(
                    self.keys.wake_progress(env), progress, ex=int(self.timeout_s) + 60
                )
            if self.clock() - started > self.timeout_s:
                await self._failed(status, progress)
                return "timed out"
            if time.monotonic() >= deadline:
                await self.again(key, generation, started)
                return "watching"
            await asyncio.sleep(self.poll_s)

    async def _look(self, namespace: str) -> tuple[bool, str]:
        ref = ObjectRef(api_version="apps/v1", kind="Deployment", name=naming.app_name(namespace))
        try:
            return deployment_ready(await self.cluster.read(namespace, ref))
        except ClusterError as error:
            return False, f"could not read the app: {error}"

    async def _ready(self, key: EnvKey) -> str:
        """The app is up: the host goes back to it (the same compare-and-set as any event)."""
        for _ in range(MAX_CAS_ATTEMPTS):
            generation, want = await self.desired.load(key)
            if want is None:
                return "gone"
            now = datetime.now(UTC)
            routed = app_ready(want, now)
            if routed is None:
                return "not waking"
            saved = await self.desired.save(routed.model_copy(update={"updated_at": now}), generation, want)
            if saved is not None:
                await self.reconcile(key, saved)
                return "ready"
        raise RuntimeError(f"{key}: the desired state kept changing while the wake finished")

    async def _failed(self, status: EnvironmentStatus, progress: str) -> None:
        """Failed, unless a reconcile is running (it decides the state then)."""
        logger.warning("wake of %s not ready after %.0f s: %s", status.key, self.timeout_s, progress)
        key = EnvKey.parse(status.key)
        token = uuid.uuid4().hex
        if not await self.desired.acquire(key, token, 10_000):
            return
        try:
            current = await self.statuses.get(status.key)
            if current is None or current.generation != status.generation or current.state != "deploying":
                return
            failed = current.model_copy(
                update={
                    "state": "failed",
                    "last_error": f"woken, but not ready after {self.timeout_s:.0f} s: {progress}",
                    "updated_at": datetime.now(UTC),
                }
            )
            previous = await self.statuses.put(failed)
            if self.on_change is not None:
                await self.on_change(failed, previous.state if previous else None)
        finally:
            await self.desired.release(key, token)
