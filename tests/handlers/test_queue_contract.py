"""The hand-off from the web process to the worker, read back with arq's own code.

The gateway writes each event's job inside its delivery script (gateway/deliver.lua); these
tests check that what it wrote is a job arq's reader and arq's worker take as their own.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import orjson
from arq.connections import RedisSettings, create_pool
from arq.constants import job_key_prefix
from arq.jobs import Job as ArqJob
from arq.jobs import JobStatus, deserialize_job
from arq.worker import Worker, func
from redis.asyncio import Redis

from gateway.settings import load_gateway_settings
from gateway.store import DeliveryStore
from handlers.queue import Job, encode_event_job, event_job_id, job_key
from providers.events import EventType, LifecycleEvent, Provider
from tests.support.redis_server import RedisServer

EVENT = LifecycleEvent(
    provider=Provider.GITHUB,
    delivery_id="72d3162e-cc78-11e3-81ab-4c9367dc0958",
    type=EventType.CHANGE_OPENED,
    repository="acme/shop",
    number=42,
    head_sha="0123456789abcdef0123456789abcdef01234567",
    received_at=datetime(2026, 12, 1, 9, 0, tzinfo=UTC),
)


def test_the_job_key_is_arqs() -> None:
    assert job_key("x") == job_key_prefix + "x"


def test_the_encoded_job_is_what_arq_decodes() -> None:
    event_json = EVENT.model_dump_json().encode()
    enqueued_ms = 1_764_579_600_000

    decoded = deserialize_job(encode_event_job(event_json, enqueued_ms))

    assert decoded.function == Job.PROCESS_EVENT
    assert decoded.args == (event_json.decode(),)
    assert decoded.kwargs == {}
    assert decoded.job_try is None
    assert decoded.enqueue_time == datetime.fromtimestamp(enqueued_ms / 1000, tz=UTC)
    # A plain string, not the name's class: arq's worker looks functions up by it.
    assert type(decoded.function) is str


def test_a_stored_delivery_is_a_queued_job_arqs_worker_runs(
    redis_client: Any, redis_server: RedisServer
) -> None:
    settings = load_gateway_settings(redis_url=redis_server.url)
    queue = settings.connection.queue_name
    event_json = EVENT.model_dump_json().encode()
    ran: list[LifecycleEvent] = []

    async def process_event(ctx: dict[str, Any], payload: str) -> str:
        ran.append(LifecycleEvent.model_validate(orjson.loads(payload)))
        return "done"

    async def scenario() -> tuple[Any, JobStatus]:
        redis = Redis.from_url(redis_server.url)
        arq_redis = await create_pool(RedisSettings.from_dsn(redis_server.url))
        try:
            accepted = await DeliveryStore(redis, settings).accept(EVENT, event_json, {}, b"{}")
            assert accepted.accepted
            job = ArqJob(event_job_id(EVENT), arq_redis, _queue_name=queue)
            info, status = await job.info(), await job.status()
            worker = Worker(
                functions=[func(process_event, name=Job.PROCESS_EVENT)],
                redis_pool=arq_redis,
                queue_name=queue,
                burst=True,
                poll_delay=0.01,
                handle_signals=False,
            )
            await worker.main()
            await worker.close()
            return info, status
        finally:
            await redis.aclose()
            await arq_redis.aclose()

    info, status = asyncio.run(scenario())

    assert status == JobStatus.queued
    assert info is not None and info.function == Job.PROCESS_EVENT
    assert info.args == (event_json.decode(),)
    assert ran == [EVENT]
    # The job key is arq's, under its own prefix (the queue contract names it, the script uses it).
    assert redis_client.exists(job_key(event_job_id(EVENT))) == 0
