"""The arq worker: turns queued lifecycle events into desired states, and reconciles them.

Three job functions for environments. `process_event` (one per accepted delivery) updates the
desired state of the environment(s) the event concerns and queues a reconcile;
`reconcile` (one per new desired generation; most find nothing left to do)
brings the cluster there; `check_ready` (deferred, again and again while a rollout runs)
looks at an applied environment until it is up or failed (handlers/readiness.py). See
handlers/desired.py for why this is safe under duplicates, reordering and bursts.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, get_args

from arq import Retry, func
from prometheus_client import start_http_server
from redis.exceptions import RedisError

from handlers.admission import Admission
from handlers.chat import Chat, Guard
from handlers.cluster import Cluster, ClusterError, detect_cluster
from handlers.connection import ConnectionSettings
from handlers.desired import Desired, DesiredStore, EnvKey, LockLost
from handlers.dora import DoraStore
from handlers.enqueue import QueueRedis
from handlers.heartbeat import keep_beating
from handlers.keys import Keys
from handlers.lifecycle import jobs as lifecycle_jobs
from handlers.lifecycle.jobs import LifecycleDeps
from handlers.metrics import WorkerMetrics
from handlers.permissions import PermissionCache
from handlers.policy import Decision, Rules, decide, is_activity, same_commit
from handlers.preserve import PreserveIndex
from handlers.queue import Job
from handlers.queue_worker import Worker
from handlers.readiness import Readiness
from handlers.reconcile import TRANSIENT, Reconciler
from handlers.redis_client import redis_client
from handlers.render import RenderSettings
from handlers.report import Reporter
from handlers.settings import WorkerConfig
from handlers.status import AppliedBy, EnvironmentStatus, StatusStore
from handlers.status_webhooks.queue import enqueue_status_event, status_webhook_function
from handlers.write_gate import RedisWriteGate
from providers.events import EventType, LifecycleEvent, Provider
from providers.hosts.base import Host, HostError, HostUnavailable
from providers.hosts.build import build_hosts
from providers.hosts.settings import HostSettings, load_host_settings
from providers.logs import delivery_id_var
from providers.states import State

logger = logging.getLogger("k8s_ee.worker")

# A compare-and-set that keeps losing means something is badly wrong; give up loudly.
MAX_CAS_ATTEMPTS = 50
# Reports retry with backoff up to ten minutes apart: about a day in all.
REPORT_MAX_TRIES = 150
# A comment's answer is tried this often (its job's tries) before it is given up.
COMMAND_MAX_TRIES = 5


@dataclass
class Deps:
    settings: WorkerConfig
    desired: DesiredStore
    statuses: StatusStore
    reconciler: Reconciler
    readiness: Readiness
    reporter: Reporter
    rules: Rules
    metrics: WorkerMetrics
    chat: Chat
    admission: Admission
    lifecycle: LifecycleDeps


def _concerns(current: Desired | None, event: LifecycleEvent) -> bool:
    """For events without a change number (pushes, builds): does this environment's head match?
    (The indexes found the candidates; this rules out an abbreviated hash's namesakes.)"""
    if current is None:
        return False
    if event.type == EventType.PUSH:
        return current.head_ref == event.head_ref
    return same_commit(event.head_sha, current.head_sha)


async def _numbers(deps: Deps, event: LifecycleEvent) -> list[int]:
    """The changes an event concerns: its own, or for a push or a build without a number, those
    whose head branch or commit it is (an index lookup: its cost does not grow with the repository)."""
    if event.number is not None:
        return [event.number]
    provider = event.environment_provider
    if event.type == EventType.PUSH and event.head_ref:
        return await deps.desired.numbers_on_branch(provider, event.repository, event.head_ref)
    if event.type == EventType.BUILD_COMPLETED and event.head_sha:
        return await deps.desired.numbers_at_commit(provider, event.repository, event.head_sha)
    return []


async def process_event(ctx: dict[str, Any], event_json: str) -> str:
    deps: Deps = ctx["deps"]
    event = LifecycleEvent.model_validate_json(event_json)
    token = delivery_id_var.set(event.delivery_id)
    try:
        if event.type == EventType.COMMENT_CREATED:
            handled = await _commands(ctx, deps, event)
            if handled is not None:
                if event.number is not None:
                    # A command is activity too (of an environment that exists).
                    key = EnvKey(
                        provider=event.environment_provider, repository=event.repository, number=event.number
                    )
                    if await deps.statuses.get(str(key)) is not None:
                        await _used(deps, key, event)
                return handled
        numbers = await _numbers(deps, event)
        outcomes = [await _apply(ctx, deps, event, number) for number in numbers]
        summary = _summary(event, outcomes)
        logger.info("event %s: %s", event.type.value, summary, extra={"repository": event.repository})
        return summary
    finally:
        delivery_id_var.reset(token)


def _summary(event: LifecycleEvent, outcomes: list[str]) -> str:
    """One line whatever the number of environments: the outcome of a change's own event, or
    for a push or a build, how many environments had each outcome."""
    if event.number is not None:
        return f"{event.key}: {outcomes[0]}"
    if not outcomes:
        return "no environment of this repository is concerned"
    counts = Counter(outcomes)
    return "; ".join(
        f"{n} environment{'s' if n > 1 else ''}: {outcome}" for outcome, n in counts.most_common()
    )


async def _commands(ctx: dict[str, Any], deps: Deps, event: LifecycleEvent) -> str | None:
    """A comment's commands (handlers.chat); None when it holds none."""
    try:
        handled = await deps.chat.handle(event)
    except HostUnavailable as exc:
        # The answer could not be written: run the comment again (its commands are idempotent,
        # and an answer that got through is not written twice).
        tries = int(ctx.get("job_try", 1))
        if tries >= COMMAND_MAX_TRIES:
            logger.warning("giving up answering the commands of %s: %s", event.key, exc)
            return f"commands not answered: {exc}"
        delay = max(exc.retry_after or 0.0, random.uniform(0.5, 2.0**tries))
        raise Retry(defer=min(delay, 60.0)) from exc
    except HostError as exc:
        logger.warning("could not answer the commands of %s: %s", event.key, exc)
        return f"commands not answered: {exc}"
    if handled is not None:
        await deps.statuses.link(
            event.provider, [event.delivery_id], AppliedBy(note=handled[:1000], at=event.received_at)
        )
        logger.info("comment %s: %s", event.key, handled, extra={"repository": event.repository})
    return handled


async def _apply(ctx: dict[str, Any], deps: Deps, event: LifecycleEvent, number: int) -> str:
    key = EnvKey(provider=event.environment_provider, repository=event.repository, number=number)

    known = False

    def decide_next(current: Desired | None) -> Decision | None:
        nonlocal known
        if event.number is None and not _concerns(current, event):
            return None
        known = current is not None
        return decide(current, event, deps.rules)

    decision = await apply_decision(ctx, key, event, decide_next)
    if known and is_activity(event):
        await _used(deps, key, event)
    return decision.reason if decision else "not concerned"


async def _used(deps: Deps, key: EnvKey, event: LifecycleEvent) -> None:
    """Someone used the environment: its idle and TTL clocks start again (at the payload's time,
    when that is earlier than its receipt: a resync finding a push made minutes ago)."""
    moment = min(event.received_at, event.occurred_at or event.received_at)
    await deps.lifecycle.activity.touch(str(key), moment.timestamp())


async def apply_decision(
    ctx: dict[str, Any],
    key: EnvKey,
    event: LifecycleEvent,
    decide_next: Callable[[Desired | None], Decision | None],
    guard: Guard | None = None,
) -> Decision | None:
    """Save what `decide_next` makes of the environment's current desired state (compare-and-set,
    decided again on a race) and queue its reconcile; answers the decision that was applied (its
    `desired` None when nothing changed), or None when `decide_next` said the event does not
    concern the environment. `guard` may refuse a decision before it is saved."""
    deps: Deps = ctx["deps"]
    for _ in range(MAX_CAS_ATTEMPTS):
        generation, current = await deps.desired.load(key)
        decision = decide_next(current)
        if decision is None:
            return None
        if decision.desired is not None and guard is not None:
            refusal = await guard(decision.desired)
            if refusal is not None:
                decision = Decision(None, False, refusal)
        if decision.desired is None:
            await deps.statuses.link(
                event.provider, [event.delivery_id], AppliedBy(note=decision.reason, at=event.received_at)
            )
            return decision
        new_generation = await deps.desired.save(decision.desired, generation, current)
        if new_generation is None:
            continue  # another event of this environment won the race: decide again on its result
        if decision.reconcile:
            queued = EnvironmentStatus(
                provider=key.provider,
                repository=key.repository,
                number=key.number,
                state="queued",
                head_sha=decision.desired.head_sha,
                head_ref=decision.desired.head_ref,
                host_comments=decision.desired.host_comments,
                updated_at=event.received_at,
            )
            if await deps.statuses.create(queued):
                await state_changed(ctx, queued, None)
            await enqueue_reconcile(ctx, key, f"reconcile:{key}:{new_generation}")
        else:
            await deps.statuses.link(
                event.provider, [event.delivery_id], AppliedBy(note=decision.reason, at=event.received_at)
            )
        return decision
    raise RuntimeError(f"{key}: the desired state kept changing under {MAX_CAS_ATTEMPTS} attempts")


async def enqueue_reconcile(ctx: dict[str, Any], key: EnvKey, job_id: str) -> None:
    deps: Deps = ctx["deps"]
    await ctx["redis"].enqueue_job(
        Job.RECONCILE, str(key), _job_id=job_id, _queue_name=deps.settings.connection.queue_name
    )


async def reconcile(ctx: dict[str, Any], key_text: str) -> str:
    deps: Deps = ctx["deps"]
    key = EnvKey.parse(key_text)
    started = time.perf_counter()
    outcome = "error"
    try:
        outcome = await deps.reconciler.reconcile(key)
        return outcome
    except LockLost:
        # Another reconcile took over while this one was paused: it stopped writing, and made a
        # new generation, which this job (or the lock's holder, before it lets go) applies.
        generation, _ = await deps.desired.load(key)
        if generation:
            await enqueue_reconcile(ctx, key, f"reconcile:{key}:{generation}")
        outcome = "lost lock"
        return "lost the lock; queued again"
    except TRANSIENT as exc:
        tries = int(ctx.get("job_try", 1))
        if tries >= deps.settings.worker.reconcile_max_tries:
            await deps.reconciler.give_up(key, f"gave up after {tries} attempts: {exc}")
            outcome = "gave_up"
            return "failed"
        # Exponential backoff with full jitter, capped at five minutes.
        delay = random.uniform(0, min(300.0, 2.0**tries))
        logger.warning("reconcile of %s will be retried in %.1f s: %s", key, delay, exc)
        outcome = "retried"
        raise Retry(defer=delay) from exc
    finally:
        deps.metrics.reconciles.labels(_outcome_label(outcome)).inc()
        deps.metrics.reconcile_duration.observe(time.perf_counter() - started)


# The outcomes a reconcile reports (the states it settles in, and what else it can say), so the
# metric's label stays within a known set whatever a message says.
_OUTCOMES = frozenset(
    {*get_args(State), "busy", "nothing_desired", "lost_lock", "retried", "gave_up", "error"}
)


def _outcome_label(outcome: str) -> str:
    label = outcome.replace(" ", "_")
    return label if label in _OUTCOMES else "other"


async def check_ready(ctx: dict[str, Any], key_text: str, token: str) -> str:
    deps: Deps = ctx["deps"]
    key = EnvKey.parse(key_text)
    outcome = await deps.readiness.check(key, token)
    if outcome == "again":
        # An event arrived while the check held the lock; its reconcile left the work to us.
        return await reconcile(ctx, key_text)
    return outcome


async def state_changed(ctx: dict[str, Any], status: EnvironmentStatus, previous: str | None) -> None:
    """Every state change is reported on the change and sent to the status webhooks' subscribers."""
    deps: Deps = ctx["deps"]
    await _enqueue_report(ctx, status)
    await enqueue_status_event(ctx["redis"], deps.settings, status, previous)  # type: ignore[arg-type]


async def progress_changed(ctx: dict[str, Any], status: EnvironmentStatus) -> None:
    """A deploying environment's progress moved: its comment follows (status webhooks do not)."""
    await _enqueue_report(ctx, status)


async def _enqueue_report(ctx: dict[str, Any], status: EnvironmentStatus) -> None:
    """Mark the environment dirty; queue its report job unless one is pending (it drains)."""
    deps: Deps = ctx["deps"]
    generation = await deps.reporter.mark(status.key)
    if generation is not None:
        await _queue_report(ctx, status.key, generation, deps.settings.worker.report_delay or None)


async def _queue_report(ctx: dict[str, Any], env: str, generation: int, delay: float | None = None) -> None:
    deps: Deps = ctx["deps"]
    await ctx["redis"].enqueue_job(
        Job.REPORT,
        env,
        _job_id=f"report:{env}:{generation}",
        _defer_by=delay,
        _queue_name=deps.settings.connection.queue_name,
    )


async def report(ctx: dict[str, Any], env: str) -> str:
    deps: Deps = ctx["deps"]
    tries = int(ctx.get("job_try", 1))
    try:
        result = await deps.reporter.report(env, datetime.now(UTC))
        if result.startswith("not reported"):  # refused for good (handlers/report.py)
            deps.metrics.report_failures.labels(EnvKey.parse(env).provider.value).inc()
        if result == "again":
            # Still changing after a job's passes: a new job (its marker stays set) carries on.
            await _queue_report(ctx, env, int(ctx.get("job_id", "0").rpartition(":")[2] or 0) + 1, 1.0)
        return result
    except HostUnavailable as exc:
        deps.metrics.report_failures.labels(EnvKey.parse(env).provider.value).inc()
        if tries >= REPORT_MAX_TRIES:
            logger.warning("giving up reporting %s after %d attempts: %s", env, tries, exc)
            await deps.reporter.release(env)
            return "gave up"
        # Back off as the host asked, or exponentially; never at once.
        delay = max(exc.retry_after or 0.0, random.uniform(1.0, min(600.0, 2.0**tries)))
        logger.warning("reporting %s will be retried in %.1f s: %s", env, delay, exc)
        await deps.reporter.hold(env, delay)
        raise Retry(defer=delay) from exc


async def startup(ctx: dict[str, Any]) -> None:
    settings: WorkerConfig = ctx["settings"]
    worker = settings.worker
    cluster: Cluster | None = ctx.get("cluster")
    if cluster is None:
        cluster, explanation = detect_cluster(
            worker.cluster, worker.directory, worker.kubeconfig, reapply_after=worker.reapply_after
        )
        logger.info(explanation)
    redis = ctx["redis"]
    hosts: Mapping[Provider, Host] | None = ctx.get("hosts")
    if hosts is None:
        # Every worker process paces each credential's writes through the same bucket in Redis.
        gate = RedisWriteGate(redis, settings.keys)
        hosts = build_hosts(ctx.get("host_settings") or load_host_settings(), write_gate=gate)
        for provider in Provider:
            if provider not in hosts and provider != Provider.GENERIC:
                logger.info(
                    "no credentials for %s: its changes are not re-read from the host", provider.value
                )
    connection = settings.connection
    # worker_settings puts this worker's metrics in ctx (run_worker serves them); a caller that
    # builds its own ctx gets a registry of its own.
    metrics: WorkerMetrics = ctx.setdefault("metrics", WorkerMetrics())
    desired = DesiredStore(redis, settings.keys, connection.environment_retention_ms)
    statuses = StatusStore(redis, settings.keys, connection.retention_ms, connection.environment_retention_ms)
    render = await _render_settings(settings.render, cluster)

    async def on_change(status: EnvironmentStatus, previous: str | None) -> None:
        await state_changed(ctx, status, previous)

    async def on_progress(status: EnvironmentStatus) -> None:
        await progress_changed(ctx, status)

    async def schedule(env: str, token: str, delay: float) -> None:
        await redis.enqueue_job(
            Job.CHECK_READY,
            env,
            token,
            _job_id=f"ready:{env}:{token}:{uuid.uuid4().hex[:8]}",
            _defer_by=delay,
            _queue_name=settings.connection.queue_name,
        )

    readiness = Readiness(
        redis=redis,
        keys=settings.keys,
        desired=desired,
        statuses=statuses,
        cluster=cluster,
        schedule=schedule,
        timeout_s=worker.ready_timeout,
        progress_interval_s=worker.ready_progress_interval,
        lock_ttl_s=worker.lock_ttl,
        on_change=on_change,
        on_progress=on_progress,
    )

    async def promoted(key: EnvKey, job_id: str) -> None:
        await enqueue_reconcile(ctx, key, job_id)

    rules = Rules(deploy_drafts=worker.deploy_drafts, preserve_hours=settings.commands.preserve_hours)
    admission = Admission(redis, settings.keys, settings.admission, promoted)
    preserved = PreserveIndex(redis, settings.keys, settings.commands.max_preserved_per_repository)
    lifecycle = lifecycle_jobs.build(
        arq=redis,
        settings=settings.lifecycle,
        queue_name=settings.connection.queue_name,
        desired=desired,
        statuses=statuses,
        cluster=cluster,
        hosts=hosts,
        on_change=on_change,
        run_timeout_s=worker.reconcile_timeout,
        retention_ms=connection.environment_retention_ms,
        preserved=preserved,
    )
    ctx["lifecycle"] = lifecycle
    ctx["deps"] = Deps(
        settings=settings,
        desired=desired,
        statuses=statuses,
        reporter=Reporter(redis, settings.keys, statuses, hosts, settings.render.dashboard_url),
        reconciler=Reconciler(
            desired=desired,
            statuses=statuses,
            cluster=cluster,
            hosts=hosts,
            render_settings=render,
            readiness=readiness,
            default_config=worker.default_config,
            lock_ttl_s=worker.lock_ttl,
            on_change=on_change,
            admission=admission,
            preserved=preserved,
            lifecycle=lifecycle.hooks,
            metrics=metrics,
            dora=DoraStore(redis, settings.keys, connection.environment_retention_ms),
        ),
        readiness=readiness,
        rules=rules,
        chat=Chat(
            redis=redis,
            keys=settings.keys,
            hosts=hosts,
            settings=settings.commands,
            rules=rules,
            permissions=PermissionCache(redis, settings.keys, settings.commands.permission_cache_seconds),
            preserved=preserved,
            apply=functools.partial(apply_decision, ctx),
        ),
        admission=admission,
        metrics=metrics,
        lifecycle=lifecycle,
    )
    readiness.on_settled = ctx["deps"].reconciler.settled
    # Loaded once now: the first activity an event records needs no second round trip.
    await lifecycle.activity.prepare()
    if isinstance(redis, QueueRedis):
        await redis.prepare()  # every other script, likewise
    if ctx.get("periodic"):
        # Idle hibernation, the sweep, the resync: one worker does each, whichever claims it.
        ctx["ticker"] = asyncio.create_task(lifecycle_jobs.keep_ticking(lifecycle), name="k8s-ee-tick")
    # A worker that stopped between promoting an environment and queuing its reconcile left it in
    # the outbox; limits may have been raised since the last worker ran.
    await admission.recover(older_than=0)
    await admission.promote()
    connection = settings.connection
    # The gateway's /readyz says "not ready" when no worker has been seen for the timeout.
    ctx["heartbeat"] = asyncio.create_task(
        keep_beating(redis, settings.keys, connection.retention_ms, connection.worker_heartbeat_timeout),
        name="k8s-ee-heartbeat",
    )


async def _render_settings(render: RenderSettings, cluster: Cluster) -> RenderSettings:
    """The render settings with what the cluster says filling what was left unset: the API
    server's addresses (for the operators' egress) and its version (for the preStop hook)."""
    try:
        facts = await cluster.facts()
    except ClusterError as error:
        # Reconciles work without them (narrower egress, the newest hook): say so, carry on.
        logger.warning("could not ask the cluster for its version and addresses: %s", error)
        return render
    resolved = render.for_cluster(
        api_server_addresses=facts.api_server_addresses, kubernetes_version=facts.kubernetes_version
    )
    if resolved.api_server_cidrs is None:
        logger.warning(
            "K8S_EE_API_SERVER_CIDRS is unset and the %s back-end cannot read the kubernetes Service's "
            "endpoints: namespaces get no egress to the API server, which the database operators' pods "
            "need (set K8S_EE_API_SERVER_CIDRS)",
            cluster.name,
        )
    else:
        logger.info(
            "API server egress to %s; Kubernetes %s",
            ", ".join(resolved.api_server_cidrs) or "nothing",
            resolved.kubernetes_version or "version not known",
        )
    return resolved


async def shutdown(ctx: dict[str, Any]) -> None:
    """Release the connections this worker opened (tests pass their own cluster and hosts, and keep them)."""
    for name in ("heartbeat", "ticker"):
        task: asyncio.Task[None] | None = ctx.pop(name, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    deps: Deps | None = ctx.get("deps")
    if deps is None:
        return
    if deps.lifecycle.traffic is not None:
        await deps.lifecycle.traffic.close()
    if ctx.get("cluster") is None:
        deps.reconciler.cluster.close()
    if ctx.get("hosts") is None:
        for host in deps.reconciler.hosts.values():
            host.close()


def worker_settings(
    settings: WorkerConfig,
    *,
    cluster: Cluster | None = None,
    hosts: Mapping[Provider, Host] | None = None,
    host_settings: HostSettings | None = None,
    periodic: bool = True,
) -> dict[str, Any]:
    """Keyword arguments for arq's Worker; tests pass their own cluster and hosts."""
    worker = settings.worker
    return {
        "functions": [
            # arq takes a job for lost (its worker died) after the longest timeout + 10 s:
            # keep this one no longer than the reconcile's.
            # Its result (one line of counts) is kept an hour, or the delivery log's retention if shorter.
            func(
                process_event,
                name=Job.PROCESS_EVENT,
                max_tries=5,
                timeout=min(30, worker.reconcile_timeout),
                keep_result=min(3600, settings.connection.retention_ms // 1000),
            ),
            # keep_result=0: a finished reconcile leaves nothing behind in Redis.
            func(
                reconcile,
                name=Job.RECONCILE,
                max_tries=worker.reconcile_max_tries + 1,
                timeout=worker.reconcile_timeout,
                keep_result=0,
            ),
            # A few reads and a write, unless an event came meanwhile: then it reconciles.
            func(
                check_ready,
                name=Job.CHECK_READY,
                max_tries=worker.reconcile_max_tries + 1,
                timeout=worker.reconcile_timeout,
                keep_result=0,
            ),
            func(
                report,
                name=Job.REPORT,
                max_tries=REPORT_MAX_TRIES + 1,
                timeout=min(60, worker.reconcile_timeout),
                keep_result=0,
            ),
            status_webhook_function(),
            *lifecycle_jobs.functions(worker.reconcile_timeout),
        ],
        "on_startup": startup,
        "on_shutdown": shutdown,
        "ctx": {
            "settings": settings,
            "cluster": cluster,
            "hosts": hosts,
            "host_settings": host_settings,
            "metrics": WorkerMetrics(),
            # This worker takes part in the lifecycle's tick (idle check, sweep, resync); tests
            # that drain the queue leave it out, and run those jobs on purpose.
            "periodic": periodic,
        },
        "redis_pool": arq_pool(settings.connection, settings.keys),
        "queue_name": settings.connection.queue_name,
        # Where the jobs' writers wake a waiting worker (handlers/queue_worker.py).
        "wake_key": settings.keys.queue_wake(settings.connection.queue_name),
        "max_jobs": worker.max_jobs,
        "poll_delay": worker.poll_delay,
        "keep_result": 3600,
        "handle_signals": True,
    }


def arq_pool(connection: ConnectionSettings, keys: Keys) -> QueueRedis:
    """arq's Redis, at one address or wherever Sentinel says the master is (handlers/redis_client.py)."""
    pool = redis_client(connection, QueueRedis, socket_connect_timeout=connection.redis_timeout)
    pool.default_queue_name = connection.queue_name
    pool.key_schema = keys
    return pool


def run_worker(settings: WorkerConfig, host_settings: HostSettings) -> int:
    """The worker process. Its cluster back-end is set up first, so a cluster that cannot be
    reached by its configuration stops start-up with one line (`ClusterSetupError`)."""
    worker = settings.worker
    cluster, explanation = detect_cluster(
        worker.cluster, worker.directory, worker.kubeconfig, reapply_after=worker.reapply_after
    )
    logger.info(explanation)
    try:
        options = worker_settings(settings, cluster=cluster, host_settings=host_settings)
        if worker.worker_metrics_port:
            # Its own thread, so a scrape never waits for the event loop (or a long job on it).
            start_http_server(
                worker.worker_metrics_port,
                worker.worker_metrics_host,
                registry=options["ctx"]["metrics"].registry,
            )
            logger.info(
                "metrics on http://%s:%d/metrics", worker.worker_metrics_host, worker.worker_metrics_port
            )
        # arq's worker takes the loop current when it is built: wait for Redis on that one.
        asyncio.set_event_loop(loop := asyncio.new_event_loop())
        loop.run_until_complete(wait_for_redis(options["redis_pool"]))
        Worker(**options).run()
    finally:
        cluster.close()
    return 0


# A worker that starts with its Redis (a first install, a node restart) waits for it this long
# before giving up, rather than exiting at once into the kubelet's growing restart back-off.
REDIS_START_WAIT_S = 60.0


async def wait_for_redis(redis: QueueRedis, budget: float = REDIS_START_WAIT_S) -> None:
    deadline = time.monotonic() + budget
    delay = 0.5
    while True:
        try:
            await redis.ping()
            return
        except (RedisError, OSError) as exc:
            if time.monotonic() + delay > deadline:
                raise
            logger.warning(
                "Redis does not answer yet (%s); trying again in %.1f s", type(exc).__name__, delay
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
