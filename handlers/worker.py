"""The arq worker: consumes the lifecycle events the gateway queues."""

from __future__ import annotations

import logging
from typing import Any

from arq import run_worker as arq_run_worker
from arq.connections import RedisSettings

from gateway.events import LifecycleEvent
from gateway.logs import delivery_id_var
from gateway.settings import Settings

logger = logging.getLogger("k8s_ee.worker")


async def process_event(ctx: dict[str, Any], event_json: str) -> str:
    event = LifecycleEvent.model_validate_json(event_json)
    token = delivery_id_var.set(event.delivery_id)
    try:
        logger.info("event %s for %s", event.type.value, event.key, extra={"provider": event.provider.value})
        return event.type.value
    finally:
        delivery_id_var.reset(token)


def worker_settings(settings: Settings) -> dict[str, Any]:
    return {
        "functions": [process_event],
        "redis_settings": RedisSettings.from_dsn(settings.redis_url),
        "queue_name": settings.queue_name,
        "max_tries": 10,
        "keep_result": 3600,
    }


def run_worker(settings: Settings) -> int:
    arq_run_worker(None, **worker_settings(settings))  # type: ignore[arg-type]
    return 0
