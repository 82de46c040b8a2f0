"""arq's Redis client, writing each job in one round trip and waking a worker for it.

arq's own `enqueue_job` costs six commands (WATCH, EXISTS, MULTI, PSETEX, ZADD, EXEC); this one
sends one script (handlers/queue.py, ENQUEUE_LUA) that writes the same bytes under the same keys,
with the same rule (nothing is written when a job or a result of that id exists), and pushes
the queue's wake-up token, so a worker blocked waiting for work polls at once
(handlers/queue_worker.py). Jobs so written are read by arq's own worker as any other.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import uuid4

from arq.connections import ArqRedis
from arq.constants import job_key_prefix, result_key_prefix
from arq.jobs import Job as ArqJob
from arq.jobs import serialize_job
from arq.utils import timestamp_ms, to_ms, to_unix_ms
from redis.commands.core import AsyncScript

from handlers.keys import Keys
from handlers.queue import ENQUEUE_LUA


class QueueRedis(ArqRedis):
    """Set `key_schema` before the first job is written (handlers/worker.py, arq_pool)."""

    key_schema: Keys
    _enqueue: AsyncScript | None = None
    _registered: list[AsyncScript] | None = None

    def register_script(self, script: Any) -> AsyncScript:  # type: ignore[override]
        """redis-py's, remembering the script so that `prepare` loads it."""
        registered = super().register_script(script)
        if self._registered is None:
            self._registered = []
        self._registered.append(registered)
        return registered

    @property
    def enqueue_script(self) -> AsyncScript:
        if self._enqueue is None:
            self._enqueue = self.register_script(ENQUEUE_LUA)
        return self._enqueue

    async def prepare(self) -> None:
        """Load every script registered so far into Redis, in one round trip: else the first call
        of each (the first deploy after a start, say) costs a NOSCRIPT answer, a load and a retry."""
        self.enqueue_script  # noqa: B018 (registered, so loaded below)
        async with self.pipeline(transaction=False) as pipe:
            for script in self._registered or []:
                pipe.script_load(script.script)
            await pipe.execute()

    async def enqueue_job(
        self,
        function: str,
        *args: Any,
        _job_id: str | None = None,
        _queue_name: str | None = None,
        _defer_until: datetime | None = None,
        _defer_by: int | float | timedelta | None = None,
        _expires: int | float | timedelta | None = None,
        _job_try: int | None = None,
        **kwargs: Any,
    ) -> ArqJob | None:
        """As arq's: the job, or None when a job (or a result) of that id exists already."""
        queue = _queue_name or self.default_queue_name
        job_id = _job_id or uuid4().hex
        if _defer_until and _defer_by:
            raise RuntimeError("use either 'defer_until' or 'defer_by' or neither, not both")
        enqueued_ms = timestamp_ms()
        if _defer_until is not None:
            score = to_unix_ms(_defer_until)
        elif _defer_by:
            score = enqueued_ms + (to_ms(_defer_by) or 0)
        else:
            score = enqueued_ms
        expires_ms = to_ms(_expires) or score - enqueued_ms + self.expires_extra_ms
        job = serialize_job(function, args, kwargs, _job_try, enqueued_ms, serializer=self.job_serializer)
        written = await self.enqueue_script(
            keys=[
                job_key_prefix + job_id,
                result_key_prefix + job_id,
                queue,
                self.key_schema.queue_wake(queue),
            ],
            args=[job_id, job, score, expires_ms],
        )
        if not int(written):
            return None
        return ArqJob(job_id, redis=self, _queue_name=queue, _deserializer=self.job_deserializer)
