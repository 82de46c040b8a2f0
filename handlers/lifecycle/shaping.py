"""What hibernation and wake change in a reconcile: the manifests applied, and what is said.

The reconcile renders the environment as its configuration says (handlers/render), then asks
`Lifecycle.shape` for the form the lifecycle wants: asleep (everything that can scale to zero
at zero, the host routed to the wake service), waking (the app back at its replicas, the host
still on the wake service until the app is ready), or awake. After the apply, `asleep` says
what its people should know (what kept running, a PostgreSQL cluster CloudNativePG would not
hibernate yet), `awake` starts its idle clock (and a woken one's watch); both keep the idle
bookkeeping (handlers/lifecycle/activity.py) in step. The reconcile itself frees the admission
slot of what falls asleep (Reconciler.release_slot, the one promotion entry point).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from handlers.cluster import Cluster, ClusterError, ObjectRef
from handlers.desired import Desired, EnvKey
from handlers.durations import describe
from handlers.hibernate import (
    CNPG_API,
    WakeRoute,
    deployments,
    hibernate,
    keeps_running,
    postgres_hibernation,
    restore,
    route_to_wake,
    with_wake_service,
)
from handlers.lifecycle.activity import Activity
from handlers.lifecycle.counters import LifecycleCounters
from handlers.status import EnvironmentStatus
from providers.events import EventSource

logger = logging.getLogger("k8s_ee.worker")


@dataclass(frozen=True, slots=True)
class Shaped:
    manifests: list[dict[str, Any]]
    # The counts the Deployments ran before hibernation, to restore on wake.
    replicas: dict[str, int]


@dataclass
class Lifecycle:
    activity: Activity
    # The wake service's address; None: no wake on visit (the Ingress is left as rendered).
    route: WakeRoute | None
    # Queue the watch of a woken environment (handlers/lifecycle/wake_watch.py).
    watch_wake: Callable[[EnvKey, int], Awaitable[None]]
    counters: LifecycleCounters | None = None

    async def shape(
        self,
        cluster: Cluster,
        namespace: str,
        manifests: list[dict[str, Any]],
        want: Desired,
        status: EnvironmentStatus,
    ) -> Shaped:
        manifests = with_wake_service(manifests, self.route)
        if want.hibernated:
            replicas = await self._replicas_before(cluster, namespace, manifests, status)
            shaped = hibernate(
                manifests,
                replicas=replicas,
                hibernated_at=want.hibernated_at,
                route=self.route,
            )
            return Shaped(shaped, replicas)
        shaped = restore(manifests, status.replicas)
        if want.wake_route and self.route is not None:
            shaped = route_to_wake(shaped, self.route)
        return Shaped(shaped, status.replicas)

    async def _replicas_before(
        self, cluster: Cluster, namespace: str, manifests: list[dict[str, Any]], status: EnvironmentStatus
    ) -> dict[str, int]:
        """What each Deployment runs now (a `kubectl scale` included), read before it goes to zero.
        An environment already asleep (or scaling) keeps what was read when it fell asleep."""
        if status.state == "hibernated" and status.replicas:
            return dict(status.replicas)
        found = dict(status.replicas)
        for name in deployments(manifests):
            ref = ObjectRef(api_version="apps/v1", kind="Deployment", name=name)
            try:
                live = await cluster.read(namespace, ref)
            except ClusterError as error:
                logger.warning("could not read %s before hibernating it: %s", name, error)
                continue
            count = ((live or {}).get("spec") or {}).get("replicas")
            if isinstance(count, int) and count > 0:
                found[name] = count
        return found

    async def asleep(
        self,
        cluster: Cluster,
        namespace: str,
        manifests: list[dict[str, Any]],
        want: Desired,
        status: EnvironmentStatus,
        idle_s: float | None,
    ) -> str:
        """It sleeps: no idle deadline, counted if it just fell asleep; what its comment says."""
        await self.activity.asleep(str(want.key))
        if status.state != "hibernated" and self.counters is not None:
            await self.counters.hibernated(want.hibernated_by or "api")
        return await self._asleep_note(cluster, namespace, manifests, want, idle_s)

    async def awake(
        self, want: Desired, status: EnvironmentStatus, now: datetime, idle_s: float | None
    ) -> None:
        """It runs from now on (its idle clock too); a woken one is watched until its app is ready."""
        await self.activity.awake(str(want.key), now.timestamp(), idle_s)
        if want.wake_route:
            await self.watch_wake(want.key, status.generation)

    async def forget(self, key: EnvKey) -> None:
        """The environment is destroyed: no activity, no deadline."""
        await self.activity.forget(str(key))

    async def _asleep_note(
        self,
        cluster: Cluster,
        namespace: str,
        manifests: list[dict[str, Any]],
        want: Desired,
        idle_s: float | None,
    ) -> str:
        idle = self.activity.default_idle_s if idle_s is None else idle_s
        if want.hibernated_by == EventSource.IDLE.value and idle:
            lines = [f"Scaled to zero {idle_note(idle)}; its data is kept."]
        else:
            lines = ["Scaled to zero on request; its data is kept."]
        running = keeps_running(manifests)
        if running:
            several = len(running) > 1
            lines.append(
                f"{' and '.join(running)} {'keep' if several else 'keeps'} running: "
                f"{'their operators have' if several else 'its operator has'} "
                "no supported way to scale to zero."
            )
        for manifest in manifests:
            if manifest.get("kind") == "Cluster" and str(manifest.get("apiVersion", "")).startswith(CNPG_API):
                waiting = await self._postgres(cluster, namespace, str(manifest["metadata"]["name"]))
                if waiting:
                    lines.append(waiting + ".")
        how = "Visit the preview URL, push a commit" if self.route is not None else "Push a commit"
        lines.append(f"{how} or comment /wake-preview to wake it.")
        return " ".join(lines)

    async def _postgres(self, cluster: Cluster, namespace: str, name: str) -> str | None:
        if not cluster.observes:
            return None
        ref = ObjectRef(api_version="postgresql.cnpg.io/v1", kind="Cluster", name=name)
        try:
            return postgres_hibernation(await cluster.read(namespace, ref))
        except ClusterError as error:
            logger.warning("could not read %s in %s: %s", ref, namespace, error)
            return None


def idle_note(seconds: float) -> str:
    return f"after {describe(seconds)} without activity"
