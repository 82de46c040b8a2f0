"""Events the worker makes itself (resync, sweep, idle), queued as a webhook's are.

They become the same `process_event` job a delivery becomes (handlers/queue.py): the same
policy, the same ordering (by `occurred_at`), and the same dedup, by job id: an event is named
by what it says (`resync:{env}:updated:{sha}`, `idle:{env}:{deadline}`), so a run that sees the
same thing twice queues it once.
"""

from __future__ import annotations

import hashlib
from typing import Any

from handlers.queue import Job, event_job_id
from providers.events import LifecycleEvent
from providers.fields import MAX_DELIVERY_ID


def delivery_id(text: str) -> str:
    """`text` as a delivery id: as it is when short enough, else its head and a digest of it all."""
    if len(text) <= MAX_DELIVERY_ID:
        return text
    return f"{text[:100]}~{hashlib.sha256(text.encode()).hexdigest()}"


async def emit(redis: Any, queue_name: str, event: LifecycleEvent) -> bool:
    """Queue `event`; False when a job for it is queued, running, or finished within the hour."""
    job = await redis.enqueue_job(
        Job.PROCESS_EVENT,
        event.model_dump_json(),
        _job_id=event_job_id(event),
        _queue_name=queue_name,
    )
    return job is not None
