"""The lifecycle's side of the worker: what it holds, its tick, and its job functions.

`build` makes what the lifecycle needs once per worker (at start-up, beside the reconciler);
`keep_ticking` runs for the worker's lifetime: each second one worker (whoever claims the
second) runs the idle check, and any worker queues a periodic run that has come due (claimed, so
it is queued once per interval). The runs and the wake watch are arq jobs like the others.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from arq import Retry, func
from arq.worker import Function
from redis.exceptions import RedisError

from handlers.cluster import Cluster
from handlers.desired import DesiredStore, EnvKey
from handlers.hibernate import WakeRoute
from handlers.lifecycle import idle
from handlers.lifecycle.activity import Activity
from handlers.lifecycle.counters import LifecycleCounters, Tally
from handlers.lifecycle.emit import emit
from handlers.lifecycle.notices import Notice, Notices
from handlers.lifecycle.prometheus import ACTIVITY_READ_S, TrafficReader
from handlers.lifecycle.resync import Pass, Repo, repositories
from handlers.lifecycle.runs import Runs
from handlers.lifecycle.settings import LifecycleSettings
from handlers.lifecycle.shaping import Lifecycle
from handlers.lifecycle.sweep import Sweep
from handlers.lifecycle.wake_watch import WakeWatch
from handlers.preserve import PreserveIndex
from handlers.queue import Job
from handlers.status import EnvironmentStatus, StatusStore
from providers.events import EventSource, LifecycleEvent, Provider
from providers.hosts.base import Host, HostUnavailable

logger = logging.getLogger("k8s_ee.worker")

TICK_S = 1.0
# A pass stops starting repositories at this share of its job's timeout, and queues the rest.
BUDGET_SHARE = 0.8
NOTICE_MAX_TRIES = 100


@dataclass
class LifecycleDeps:
    settings: LifecycleSettings
    queue_name: str
    arq: Any
    desired: DesiredStore
    statuses: StatusStore
    cluster: Cluster
    hosts: Mapping[Provider, Host]
    activity: Activity
    counters: LifecycleCounters
    runs: Runs
    notices: Notices
    hooks: Lifecycle
    wake_watch: WakeWatch
    traffic: TrafficReader | None
    # The preserve index (handlers/preserve.py): an ended preservation leaves it.
    preserved: PreserveIndex | None = None
    # The periodic runs' job timeout (the reconcile's: arq waits that long for a lost job).
    run_timeout_s: float = 300.0

    async def emit(self, event: LifecycleEvent) -> bool:
        return await emit(self.arq, self.queue_name, event)

    def host_pass(self, interval_s: float, **options: Any) -> Pass:
        """A pass over the repositories' open changes (handlers/lifecycle/resync.py)."""
        return Pass(
            redis=self.desired.redis,
            keys=self.desired.keys,
            hosts=self.hosts,
            emit=self.emit,
            interval_s=interval_s,
            **options,
        )

    async def reconcile(self, key: EnvKey, name: str) -> None:
        """Reconcile `key` again although its desired state did not change (a preservation that
        ran out, an operator to look at again): a new generation, so it is not taken as applied.
        `name` keeps one sweep from queuing it twice."""
        if not await self.desired.redis.set(
            self.desired.keys.lifecycle_due(f"reconcile:{key}:{name}"), "1", nx=True, ex=3600
        ):
            return
        generation = await self.desired.invalidate(key)
        if generation:
            await self.arq.enqueue_job(
                Job.RECONCILE, str(key), _job_id=f"reconcile:{key}:{generation}", _queue_name=self.queue_name
            )


def build(
    *,
    arq: Any,
    settings: LifecycleSettings,
    queue_name: str,
    desired: DesiredStore,
    statuses: StatusStore,
    cluster: Cluster,
    hosts: Mapping[Provider, Host],
    on_change: Callable[[EnvironmentStatus, str | None], Awaitable[None]],
    run_timeout_s: float = 300.0,
    retention_ms: int = 30 * 86_400_000,
    preserved: PreserveIndex | None = None,
) -> LifecycleDeps:
    redis = desired.redis
    keys = desired.keys
    activity = Activity(redis, keys, settings.hibernate_after)
    counters = LifecycleCounters(redis, keys, retention_ms)
    route = (
        WakeRoute(settings.wake_service_host, settings.wake_service_port)
        if settings.wake_service_host
        else None
    )

    async def reconcile_generation(key: EnvKey, generation: int) -> None:
        await arq.enqueue_job(
            Job.RECONCILE, str(key), _job_id=f"reconcile:{key}:{generation}", _queue_name=queue_name
        )

    async def watch_again(key: EnvKey, generation: int, started: float) -> None:
        await arq.enqueue_job(
            Job.WAKE_WATCH,
            str(key),
            generation,
            started,
            _job_id=f"wake-watch:{key}:{generation}:{time.time():.3f}",
            _queue_name=queue_name,
        )

    async def watch_wake(key: EnvKey, generation: int) -> None:
        await arq.enqueue_job(
            Job.WAKE_WATCH,
            str(key),
            generation,
            time.time(),
            _job_id=f"wake-watch:{key}:{generation}",
            _queue_name=queue_name,
        )

    hooks = Lifecycle(activity=activity, route=route, watch_wake=watch_wake, counters=counters)
    return LifecycleDeps(
        settings=settings,
        queue_name=queue_name,
        arq=arq,
        desired=desired,
        statuses=statuses,
        cluster=cluster,
        hosts=hosts,
        activity=activity,
        counters=counters,
        runs=Runs(redis, keys, counters),
        notices=Notices(redis, keys, queue_name, hosts),
        hooks=hooks,
        wake_watch=WakeWatch(
            desired=desired,
            statuses=statuses,
            keys=keys,
            cluster=cluster,
            reconcile=reconcile_generation,
            again=watch_again,
            on_change=on_change,
        ),
        traffic=TrafficReader(redis, keys, settings.activity_prometheus_url)
        if settings.activity_prometheus_url
        else None,
        run_timeout_s=run_timeout_s,
        preserved=preserved,
    )


# -- the tick ----------------------------------------------------------------------------------


async def tick(deps: LifecycleDeps, now: float | None = None) -> None:
    moment = time.time() if now is None else now
    settings = deps.settings
    # One worker a second runs the idle check. When something is due and traffic is read from
    # Prometheus, it is read first: requests since the last read keep an environment awake.
    if await deps.runs.due("idle", TICK_S * 0.9, moment) and await deps.activity.due(moment, 1):
        read: str | None = "no Prometheus"
        if deps.traffic is not None:
            read = await deps.runs.locked("activity", lambda: refresh_activity(deps))
        if read is not None:  # not while another worker reads it (next second, then)
            await idle.check(deps.activity, deps.desired, deps.emit, moment)
    due = [
        (Job.SWEEP, "sweep", settings.sweep_interval),
        (Job.RESYNC, "resync", settings.resync_interval),
        (Job.ACTIVITY, "activity", ACTIVITY_READ_S if deps.traffic is not None else 0.0),
    ]
    for job, kind, interval in due:
        if await deps.runs.due(kind, interval, moment):
            await deps.arq.enqueue_job(job, _job_id=f"{kind}:{int(moment)}", _queue_name=deps.queue_name)


async def keep_ticking(deps: LifecycleDeps) -> None:
    """Runs for the worker's lifetime (cancelled on shutdown); a failed tick is tried next second."""
    while True:
        try:
            await tick(deps)
        except (RedisError, OSError) as exc:
            logger.warning("lifecycle tick failed: %s", type(exc).__name__)
        except Exception:
            logger.exception("lifecycle tick failed")
        await asyncio.sleep(TICK_S)


# -- the jobs ----------------------------------------------------------------------------------


def _deps(ctx: dict[str, Any]) -> LifecycleDeps:
    lifecycle: LifecycleDeps = ctx["lifecycle"]
    return lifecycle


async def _record(deps: LifecycleDeps, kind: str, tally: Tally) -> None:
    await deps.counters.add(kind, errors=tally.errors, changes=tally.changes)


async def run_sweep(ctx: dict[str, Any]) -> str:
    deps = _deps(ctx)
    settings = deps.settings

    async def body() -> str:
        sweep = Sweep(
            redis=deps.desired.redis,
            keys=deps.desired.keys,
            activity=deps.activity,
            cluster=deps.cluster,
            hosts=deps.hosts,
            emit=deps.emit,
            reconcile=deps.reconcile,
            warn=lambda env, kind, deadline, text: deps.notices.warn(deps.arq, env, kind, deadline, text),
            unpreserve=deps.preserved.release if deps.preserved is not None else None,
            ttl_s=settings.ttl,
            interval_s=settings.sweep_interval,
        )
        tally = await sweep.run()
        if not settings.resync_interval:
            # No resync: the sweep finds closed changes itself.
            found = await repositories(deps.desired.redis, deps.desired.keys, settings.resync_repositories)
            closed = deps.host_pass(
                settings.sweep_interval,
                source=EventSource.SWEEP,
                open_events=False,
                tally=tally,
            )
            await closed.run(found)
        await _record(deps, "sweep", tally)
        return _summary(tally)

    return await deps.runs.locked("sweep", body) or "skipped: another worker is sweeping"


async def run_resync(ctx: dict[str, Any], left: list[str] | None = None) -> str:
    """A pass over every repository; `left`: the rest of a pass that ran out of time."""
    deps = _deps(ctx)
    settings = deps.settings

    async def body() -> str:
        if left is None:
            found = await repositories(deps.desired.redis, deps.desired.keys, settings.resync_repositories)
        else:
            found = {Repo.parse(entry) for entry in left}
        resync = deps.host_pass(
            settings.resync_interval, deadline=time.monotonic() + deps.run_timeout_s * BUDGET_SHARE
        )
        tally = await resync.run(found)
        await _record(deps, "resync", tally)
        if resync.left:
            # Paced hosts and many repositories: the rest in a job of its own, right after.
            rest = [str(repo) for repo in resync.left]
            await deps.arq.enqueue_job(
                Job.RESYNC, rest, _job_id=f"resync:rest:{time.time():.3f}", _queue_name=deps.queue_name
            )
            return f"{_summary(tally)}; {len(rest)} repositories continue in the next job"
        return _summary(tally)

    return await deps.runs.locked("resync", body) or "skipped: another worker is resyncing"


async def refresh_activity(deps: LifecycleDeps) -> str:
    """Read the ingress controllers' traffic and record it as activity (hold the `activity` lock)."""
    traffic = deps.traffic
    if traffic is None:
        return "no Prometheus"
    redis, keys = deps.desired.redis, deps.desired.keys
    members: list[bytes] = await redis.zrange(keys.statuses(), 0, -1)
    envs = [m.decode() for m in members]
    by_namespace: dict[str, str] = {}
    for start in range(0, len(envs), 500):
        batch = envs[start : start + 500]
        for env, raw in zip(batch, await redis.mget([keys.status(e) for e in batch]), strict=True):
            if raw:
                status = EnvironmentStatus.model_validate_json(raw)
                if status.namespace:
                    by_namespace[status.namespace] = env
    active = await traffic.active(by_namespace)
    moment = time.time()
    for namespace in active:
        await deps.activity.touch(by_namespace[namespace], moment)
    return f"{len(active)} of {len(by_namespace)} environments had traffic"


async def read_activity(ctx: dict[str, Any]) -> str:
    deps = _deps(ctx)
    return await deps.runs.locked("activity", lambda: refresh_activity(deps)) or "skipped"


async def watch_wake(ctx: dict[str, Any], env: str, generation: int, started: float) -> str:
    return await _deps(ctx).wake_watch.watch(EnvKey.parse(env), generation, started)


async def post_notice(ctx: dict[str, Any], notice_json: str) -> str:
    deps = _deps(ctx)
    tries = int(ctx.get("job_try", 1))
    try:
        return await deps.notices.post(Notice.model_validate_json(notice_json))
    except HostUnavailable as exc:
        if tries >= NOTICE_MAX_TRIES:
            return "gave up"
        delay = max(exc.retry_after or 0.0, random.uniform(1.0, min(600.0, 2.0**tries)))
        raise Retry(defer=delay) from exc


def _summary(tally: Tally) -> str:
    changes = ", ".join(f"{action} {n}" for action, n in sorted(tally.changes.items())) or "no changes"
    errors = sum(tally.errors.values())
    return f"{changes}; {errors} errors" if errors else changes


def functions(timeout_s: float) -> list[Function]:
    """The lifecycle's jobs. `timeout_s` is the reconcile's: arq takes a job for lost only after the
    longest timeout, so none of these may be longer."""
    return [
        func(run_sweep, name=Job.SWEEP, max_tries=1, timeout=timeout_s, keep_result=0),
        func(run_resync, name=Job.RESYNC, max_tries=1, timeout=timeout_s, keep_result=0),
        func(read_activity, name=Job.ACTIVITY, max_tries=1, timeout=min(120, timeout_s), keep_result=0),
        func(watch_wake, name=Job.WAKE_WATCH, max_tries=3, timeout=min(60, timeout_s), keep_result=0),
        func(
            post_notice,
            name=Job.NOTICE,
            max_tries=NOTICE_MAX_TRIES + 1,
            timeout=min(60, timeout_s),
            keep_result=0,
        ),
    ]
