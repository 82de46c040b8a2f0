"""arq's worker, lighter on Redis: it waits for work instead of polling for it.

arq's worker looks at the queue every `poll_delay` (a range read, then six commands to claim each
job it starts, five more to finish it), whether or not anything was queued. This one:

- polls with one script (`_POLL`) that claims the due jobs this worker has room for (the same
  `arq:in-progress:<id>` key, set only if absent, with arq's lifetime, so arq's other workers and
  this one exclude each other as before) and answers when the next deferred job is due;
- between polls, blocks on the queue's wake list (BLPOP, handlers/queue.py): every job written
  (by the gateway's deliver.lua, by a worker's handlers/enqueue.py, a retry's new time) pushes a
  token there, so a worker waiting for work polls at once. It also polls when the next deferred
  job comes due, when a slot frees after it was full, and anyway every `poll_delay` (what a
  token lost to a worker that filled up meanwhile, or a job a dead worker held, waits at most);
- finishes a job with one script (`_FINISH`, arq's same writes).

Everything else (running a job, its retries, timeouts, results, aborts) is arq's own code.
Written for arq 0.28 (pyproject pins it): it uses the worker's own fields and methods.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from arq.connections import create_pool, log_redis_info
from arq.constants import (
    abort_jobs_ss,
    in_progress_key_prefix,
    job_key_prefix,
    result_key_prefix,
    retry_key_prefix,
)
from arq.utils import timestamp_ms, to_ms
from arq.worker import Worker as ArqWorker
from redis.exceptions import RedisError

from handlers.queue import JOB_EXPIRES_MS, WAKE_LUA

logger = logging.getLogger("k8s_ee.worker")

# Claim up to ARGV[3] due jobs not in progress; answer {id, score, ...} and the next future score.
#   KEYS: queue    ARGV: now ms, how many to read, how many to claim, in-progress ttl ms,
#                        the in-progress key prefix
_POLL = """
local claimed = {}
local room = tonumber(ARGV[3])
if room > 0 then
  local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, ARGV[2])
  for i = 1, #due, 2 do
    if redis.call('SET', ARGV[5] .. due[i], '1', 'NX', 'PX', ARGV[4]) then
      claimed[#claimed + 1] = due[i]
      claimed[#claimed + 1] = due[i + 1]
      if #claimed >= room * 2 then break end
    end
  end
end
local later = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
return {claimed, later[2] or ''}
"""

# arq's finish_job and finish_failed_job in one script.
#   KEYS: queue, in-progress, retry, job, result, abort set, wake
#   ARGV: job id, finished (1/0), result ('' for none), result ttl ms (0: for good),
#         in-progress ttl ms to keep it for (0: delete it), score increment (0: none), wake expiry
_FINISH = """
local delete = {}
if ARGV[5] == '0' then delete[#delete + 1] = KEYS[2] else redis.call('PEXPIRE', KEYS[2], ARGV[5]) end
if ARGV[2] == '1' then
  if ARGV[3] ~= '' then
    if ARGV[4] == '0' then redis.call('SET', KEYS[5], ARGV[3])
    else redis.call('SET', KEYS[5], ARGV[3], 'PX', ARGV[4]) end
  end
  delete[#delete + 1] = KEYS[3]
  delete[#delete + 1] = KEYS[4]
  redis.call('ZREM', KEYS[6], ARGV[1])
  redis.call('ZREM', KEYS[1], ARGV[1])
elseif ARGV[6] ~= '0' then
  redis.call('ZINCRBY', KEYS[1], ARGV[6], ARGV[1])
  local wake, expires = KEYS[7], ARGV[7]
  {wake}
end
if #delete > 0 then redis.call('DEL', unpack(delete)) end
return 1
"""


class Worker(ArqWorker):
    """arq's Worker; `wake_key` is the queue's wake list (Keys.queue_wake)."""

    def __init__(self, *args: Any, wake_key: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.wake_key = wake_key
        self._woken = asyncio.Event()
        self._room = asyncio.Event()
        self._next_due_ms: float | None = None
        # The last poll filled every free slot, so due jobs may still wait in the queue: their
        # tokens were spent on that poll, and nothing else would wake this worker for them.
        self._backlog = False
        self._scripts: dict[str, Any] = {}

    # -- the loop ---------------------------------------------------------------------------------

    async def main(self) -> None:
        """arq's main, with its fixed-delay poll replaced by waiting for work."""
        if self._pool is None:
            self._pool = await create_pool(
                self.redis_settings,
                job_deserializer=self.job_deserializer,
                job_serializer=self.job_serializer,
                default_queue_name=self.queue_name,
                expires_extra_ms=self.expires_extra_ms,
            )
        logger.info("Starting worker for %d functions: %s", len(self.functions), ", ".join(self.functions))
        await log_redis_info(self.pool, logger.info)
        self.ctx["redis"] = self.pool
        for name, text in (("poll", _POLL), ("finish", _FINISH.replace("{wake}", WAKE_LUA))):
            self._scripts[name] = self.pool.register_script(text)
            await self.pool.script_load(text)
        if self.on_startup:
            await self.on_startup(self.ctx)
        listener = asyncio.create_task(self._listen(), name="k8s-ee-wake")
        try:
            while True:
                self._woken.clear()
                await self._poll_iteration()
                if self.burst:
                    if 0 <= self.max_burst_jobs <= self._jobs_started():
                        await asyncio.gather(*self.tasks.values())
                        return None
                    if await self.pool.zcard(self.queue_name) == 0:
                        await asyncio.gather(*self.tasks.values())
                        return None
                await self._wait()
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener

    async def _wait(self) -> None:
        """Until woken, the next deferred job's time, or `poll_delay`, whichever comes first."""
        delay = self.poll_delay_s
        if self._next_due_ms is not None:
            delay = min(delay, max(0.0, (self._next_due_ms - timestamp_ms()) / 1000))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._woken.wait(), timeout=delay)

    async def _listen(self) -> None:
        """Block on the wake list while this worker has room for a job; each token wakes the loop."""
        while True:
            if self.job_counter >= self.max_jobs:
                # A token now would be taken from a worker that has room: wait for a slot.
                self._room.clear()
                await self._room.wait()
                self._woken.set()
                continue
            try:
                # Redis takes a fraction of a second here (redis-py's hint says int).
                token = await self.pool.blpop(
                    [self.wake_key],
                    timeout=self.poll_delay_s,  # type: ignore[arg-type]
                )  # type: ignore[misc]
            except (RedisError, OSError) as exc:
                logger.warning("waiting for work failed (%s); polling instead", type(exc).__name__)
                await asyncio.sleep(self.poll_delay_s)
                continue
            if token is not None:
                self._woken.set()

    def _release_sem_dec_counter_on_complete(self) -> None:
        super()._release_sem_dec_counter_on_complete()
        self._room.set()
        if self.burst or self._backlog:
            # A freed slot takes the next job waiting (the listener may be blocked on the wake
            # list, not on a slot); a drain looks again as each job ends, to stop once all are done.
            self._woken.set()

    # -- claiming -----------------------------------------------------------------------------------

    async def _poll_iteration(self) -> None:
        """arq's poll: claim and start due jobs, tidy finished tasks, record health."""
        room = self.max_jobs - self.job_counter
        count = self.queue_read_limit
        if self.burst and self.max_burst_jobs >= 0:
            remaining = self.max_burst_jobs - self._jobs_started()
            if remaining < 1:
                return
            room, count = min(room, remaining), min(count, remaining)
        if self.allow_pick_jobs and room > 0:
            claimed, later = await self._scripts["poll"](
                keys=[self.queue_name],
                args=[
                    timestamp_ms(),
                    count,
                    room,
                    int(self.in_progress_timeout_s * 1000),
                    in_progress_key_prefix,
                ],
            )
            self._next_due_ms = float(later) if later else None
            self._backlog = len(claimed) >= room * 2
            for i in range(0, len(claimed), 2):
                await self.sem.acquire()
                self.job_counter += 1
                job_id = claimed[i].decode()
                task = self.loop.create_task(self.run_job(job_id, int(float(claimed[i + 1]))))
                task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
                self.tasks[job_id] = task
        if self.allow_abort_jobs:
            await self._cancel_aborted_jobs()
        for job_id, task in list(self.tasks.items()):
            if task.done():
                del self.tasks[job_id]
                task.result()  # an error in run_job itself surfaces here, as in arq
        await self.heart_beat()

    # -- finishing ----------------------------------------------------------------------------------

    async def finish_job(
        self,
        job_id: str,
        finish: bool,
        result_data: bytes | None,
        result_timeout_s: float | None,
        keep_result_forever: bool,
        incr_score: int | None,
        keep_in_progress: float | None,
    ) -> None:
        ttl = 0 if keep_result_forever else to_ms(result_timeout_s) or 0
        await self._finish(
            job_id,
            finish=finish,
            result=result_data if finish and result_data else b"",
            result_ttl_ms=ttl,
            keep_in_progress_ms=0 if keep_in_progress is None else to_ms(keep_in_progress) or 0,
            incr_score=0 if finish else incr_score or 0,
        )

    async def finish_failed_job(self, job_id: str, result_data: bytes | None) -> None:
        keep = self.keep_result_forever or self.keep_result_s > 0
        ttl = 0 if self.keep_result_forever else to_ms(self.keep_result_s) or 0
        await self._finish(
            job_id,
            finish=True,
            result=result_data if result_data is not None and keep else b"",
            result_ttl_ms=ttl,
            keep_in_progress_ms=0,
            incr_score=0,
        )

    async def _finish(
        self,
        job_id: str,
        *,
        finish: bool,
        result: bytes,
        result_ttl_ms: int,
        keep_in_progress_ms: int,
        incr_score: int,
    ) -> None:
        await self._scripts["finish"](
            keys=[
                self.queue_name,
                in_progress_key_prefix + job_id,
                retry_key_prefix + job_id,
                job_key_prefix + job_id,
                result_key_prefix + job_id,
                abort_jobs_ss,
                self.wake_key,
            ],
            args=[
                job_id,
                int(finish),
                result,
                result_ttl_ms,
                keep_in_progress_ms,
                incr_score,
                JOB_EXPIRES_MS,
            ],
        )
