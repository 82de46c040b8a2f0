"""Creating status webhook deliveries, and the arq job that sends and retries each one.

`enqueue_status_event` (called by the worker on every environment state change)
makes one record and one job per subscriber that wants the change. The job
`deliver_status_webhook` makes one attempt: 2xx is delivered; anything else is
retried with exponential backoff and jitter until the retry window (24 h from the
first attempt by default) has passed, then the delivery is dead, its last error,
answer and attempt count kept for the admin API. A refused destination and 410
Gone are dead at once: retrying cannot change either.

Delivery is at least once (a worker dying after the POST and before the record is
saved sends again): receivers deduplicate on `webhook-id`, the same on every retry.
"""

from __future__ import annotations

import hashlib
import logging
import random
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from arq import Retry
from arq.connections import ArqRedis
from arq.worker import Function, func
from redis.exceptions import RedisError

from handlers.queue import Job
from handlers.status import EnvironmentStatus
from handlers.status_webhooks.config import Subscriber, WebhookConfig
from handlers.status_webhooks.deliver import TIMEOUT_S, SendResult, send
from handlers.status_webhooks.destination import Resolver, system_resolver
from handlers.status_webhooks.payload import StatusEvent
from handlers.status_webhooks.store import DeliveryRecords, StatusDelivery
from providers.states import State

logger = logging.getLogger("k8s_ee.status_webhooks")

# The worker's ctx key of the Runtime below; tests put their own there (clock, resolver, backoff).
CTX_KEY = "status_webhooks"
# arq gives up on a job after max_tries runs, whatever the job says: set far beyond what
# the retry window allows (a week of one-second retries), so the window alone decides.
MAX_TRIES = 1_000_000
# One attempt is a 10 s POST plus two Redis writes; arq takes a job for lost after its timeout.
# Above the 10 s send budget; arq takes a job for lost after the longest timeout of any
# function + 10 s, so keep this short.
JOB_TIMEOUT_S = 15


@dataclass(frozen=True, slots=True)
class Backoff:
    first_s: float = 10.0
    cap_s: float = 3600.0

    def delay(self, attempts: int, draw: Callable[[], float] = random.random) -> float:
        """After `attempts` failures: double each time up to the cap, then "equal jitter".

        Half the delay is kept and half is random, so retries of many deliveries to one
        receiver spread out, and none comes back sooner than half the planned delay.
        """
        planned = min(self.cap_s, self.first_s * 2.0 ** min(attempts - 1, 60))
        return planned / 2 + draw() * planned / 2


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Runtime:
    settings: WebhookConfig
    records: DeliveryRecords
    clock: Callable[[], datetime] = utc_now
    resolver: Resolver = system_resolver
    # None: the system's trusted certificates (httpcore.default_ssl_context()).
    tls: ssl.SSLContext | None = None
    backoff: Backoff = field(default_factory=Backoff)
    timeout_s: float = TIMEOUT_S


def runtime(ctx: dict[str, Any]) -> Runtime:
    """The job's dependencies, built on first use from the worker's settings and Redis."""
    found: Runtime | None = ctx.get(CTX_KEY)
    if found is None:
        settings: WebhookConfig = ctx["settings"]
        found = Runtime(settings=settings, records=DeliveryRecords(ctx["redis"], settings.keys))
        ctx[CTX_KEY] = found
    return found


def job_expiry_s(settings: WebhookConfig, backoff: Backoff | None = None) -> float:
    """arq drops a job whose key has expired, and sets that expiry once, at enqueue: outlive the window."""
    cap = (backoff or Backoff()).cap_s
    return settings.worker.status_webhooks_retry_hours * 3600 + 2 * cap + 3600


def status_webhook_function() -> Function:
    """The entry for arq's `functions` list."""
    return func(
        deliver_status_webhook,
        name=Job.STATUS_WEBHOOK,
        max_tries=MAX_TRIES,
        timeout=JOB_TIMEOUT_S,
        keep_result=0,
    )


def delivery_id(event_id: str, subscriber: Subscriber) -> str:
    return "swd_" + hashlib.sha256(f"{event_id}|{subscriber.key}".encode()).hexdigest()[:32]


async def enqueue_status_event(
    redis: ArqRedis,
    settings: WebhookConfig,
    status: EnvironmentStatus,
    previous_state: State | None,
    *,
    now: datetime | None = None,
) -> list[str]:
    """One delivery per subscriber that wants this change; returns their ids.

    Safe to call twice for one change (a retried job): the event id derives from the
    change, so the second call finds the deliveries made and queues nothing new.
    """
    if previous_state == status.state:
        return []
    wanted = [s for s in settings.worker.status_webhooks if s.wants(status.repository, status.state)]
    if not wanted:
        return []
    created_at = now or utc_now()
    event = StatusEvent.from_status(status, previous_state, status.updated_at or created_at)
    body = event.model_dump_json()
    records = DeliveryRecords(redis, settings.keys)
    ids: list[str] = []
    for subscriber in wanted:
        record = StatusDelivery(
            id=delivery_id(event.id, subscriber),
            event_id=event.id,
            subscriber=subscriber.key,
            url=subscriber.shown_url,
            repository=status.repository,
            environment=status.key,
            environment_state=status.state,
            created_at=created_at,
            body=body,
        )
        if not await records.create(record):
            existing = await records.get(record.id)
            if existing is None or existing.state != "pending":
                ids.append(record.id)
                continue
        # Queued again when it exists and is pending: the first call may have died in between.
        # arq ignores a job id it already holds.
        await redis.enqueue_job(
            Job.STATUS_WEBHOOK,
            record.id,
            _job_id=f"status-webhook:{record.id}",
            _queue_name=settings.connection.queue_name,
            _expires=job_expiry_s(settings),
        )
        ids.append(record.id)
    return ids


def _subscriber(settings: WebhookConfig, key: str) -> Subscriber | None:
    return next((s for s in settings.worker.status_webhooks if s.key == key), None)


async def deliver_status_webhook(ctx: dict[str, Any], delivery_id: str) -> str:
    rt = runtime(ctx)
    try:
        return await _attempt(rt, delivery_id)
    except RedisError as exc:
        # Not a failure of the delivery: without Redis there is no record to update. Run again later
        # (arq would otherwise fail the job for good, leaving the record pending with nothing queued).
        delay = rt.backoff.delay(int(ctx.get("job_try", 1)))
        logger.warning("status webhook %s: Redis unavailable, again in %.0f s: %s", delivery_id, delay, exc)
        raise Retry(defer=delay) from exc


async def _attempt(rt: Runtime, delivery_id: str) -> str:
    record = await rt.records.get(delivery_id)
    if record is None:
        logger.warning("status webhook %s: no record (expired or trimmed), nothing sent", delivery_id)
        return "no record"
    if record.state != "pending":
        return f"already {record.state}"
    now = rt.clock()
    subscriber = _subscriber(rt.settings, record.subscriber)
    if subscriber is None:
        outcome = SendResult(error="the subscriber is no longer in K8S_EE_STATUS_WEBHOOKS", permanent=True)
    else:
        outcome = await send(
            subscriber.url,
            subscriber.secret.get_secret_value().encode(),
            record.event_id,
            int(now.timestamp()),
            record.body.encode(),
            allow_private=rt.settings.worker.status_webhooks_allow_private,
            resolver=rt.resolver,
            timeout=rt.timeout_s,
            tls=rt.tls,
        )
    return await _record(rt, record, outcome, now)


async def _record(rt: Runtime, record: StatusDelivery, outcome: SendResult, now: datetime) -> str:
    was = record.state
    first = record.first_attempt_at or now
    record = record.model_copy(
        update={
            "attempts": record.attempts + 1,
            "first_attempt_at": first,
            "last_attempt_at": now,
            "next_attempt_at": None,
            "last_status": outcome.status,
            "last_error": outcome.error,
            "last_response": outcome.excerpt,
        }
    )
    where = {"status_webhook": record.id, "url": record.url, "attempts": record.attempts}
    if outcome.delivered:
        record = record.model_copy(update={"state": "delivered", "finished_at": now})
        await rt.records.save(record, was)
        logger.info("status webhook delivered (%s)", outcome.status, extra=where)
        return "delivered"
    window = timedelta(hours=rt.settings.worker.status_webhooks_retry_hours)
    if outcome.permanent or now >= first + window:
        record = record.model_copy(update={"state": "dead", "finished_at": now})
        await rt.records.save(record, was)
        logger.warning(
            "status webhook dead after %d attempts: %s", record.attempts, outcome.error, extra=where
        )
        return "dead"
    delay = rt.backoff.delay(record.attempts)
    record = record.model_copy(update={"next_attempt_at": now + timedelta(seconds=delay)})
    await rt.records.save(record, was)
    logger.info("status webhook failed, retried in %.0f s: %s", delay, outcome.error, extra=where)
    raise Retry(defer=delay)
