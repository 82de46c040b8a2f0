"""The contract between the web process and the worker: the jobs there are, and how one is written.

The gateway hands each accepted delivery to the worker as an arq job, written by its
delivery script in the same round trip that stores the delivery (gateway/deliver.lua).
What it writes is decided here: the job's name, its id, its key, and its bytes, in
arq's own format (the dict `arq.jobs.serialize_job` pickles, under arq's `arq:job:`
prefix), so arq's worker reads the job as one it had queued itself; a test reads them
back with arq's own code. Written out rather than imported: importing arq would load
its whole worker into the web process. The worker registers its functions under these
same names.

Whoever writes a job to the queue (or gives a retry its new time) also pushes a wake-up token onto
the queue's wake list (`Keys.queue_wake`; `WAKE_LUA` below): a worker waiting for work blocks
on that list (BLPOP) rather than polling the queue, and polls at once when a token comes
(handlers/queue_worker.py). At most one token waits there: a burst of jobs wakes one worker
once, and its poll finds them all. The list expires like the jobs it announces.
"""

from __future__ import annotations

import pickle
from typing import Final

from providers.events import LifecycleEvent


class Job:
    """The names the worker's functions are registered under."""

    # One per accepted delivery: update the desired state of the environment(s) it concerns.
    PROCESS_EVENT: Final = "process_event"
    # Bring one environment to its desired state.
    RECONCILE: Final = "reconcile"
    # Look once at an applied environment's rollout: deployed, failed, or look again later.
    CHECK_READY: Final = "check_ready"
    # Tell the code host about one environment's state.
    REPORT: Final = "report"
    # Send one status-webhook delivery.
    STATUS_WEBHOOK: Final = "deliver_status_webhook"
    # Every second, on one worker: the idle check, and queueing the periodic runs that are due.
    TICK: Final = "lifecycle_tick"
    # The periodic runs (handlers/lifecycle): TTLs and orphans; the open changes of each repository;
    # the ingress controllers' traffic.
    SWEEP: Final = "sweep"
    RESYNC: Final = "resync"
    ACTIVITY: Final = "read_activity"
    # Follow a woken environment's app until it is ready, then route its host back to it.
    WAKE_WATCH: Final = "watch_wake"
    # Post a warning on a change (a TTL destroy ahead, a preservation ending).
    NOTICE: Final = "post_notice"


# arq drops a job not started within this long; a day is arq's own default.
JOB_EXPIRES_MS: Final = 86_400_000
# arq.constants.job_key_prefix
JOB_KEY_PREFIX: Final = "arq:job:"

# Lua, run after a script wrote a job to the queue: `wake` is the Lua variable holding the
# queue's wake list (Keys.queue_wake), `expires` its lifetime in ms (JOB_EXPIRES_MS).
WAKE_LUA: Final = """
redis.call('LPUSH', wake, '1')
redis.call('LTRIM', wake, 0, 0)
redis.call('PEXPIRE', wake, expires)
"""

# How a worker writes a job (handlers/enqueue.py): arq's own writes (the job, its place in the
# queue, only when no job or result of that id exists, as arq.connections.enqueue_job), then a
# wake-up, in one round trip.
#   KEYS: job, result, queue, wake    ARGV: job id, job (serialised), score ms, job expiry ms
ENQUEUE_LUA: Final = (
    """
if redis.call('EXISTS', KEYS[1], KEYS[2]) > 0 then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[4])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
local wake, expires = KEYS[4], ARGV[4]
"""
    + WAKE_LUA
    + "return 1\n"
)


def job_key(job_id: str) -> str:
    """Where arq keeps a queued job (`arq:job:<id>`); its id goes into the queue's sorted set."""
    return JOB_KEY_PREFIX + job_id


def event_job_id(event: LifecycleEvent) -> str:
    """One job per delivery: a redelivery that got past dedup could not queue a second one."""
    return f"event:{event.provider.value}:{event.delivery_id}"


def replay_job_id(event: LifecycleEvent, replay: str) -> str:
    """A job of its own for each replay of a delivery (`replay` names the replay)."""
    return f"replay:{event.provider.value}:{event.delivery_id}:{replay}"


def encode_event_job(event_json: bytes, enqueued_at_ms: int) -> bytes:
    """The `process_event` job of an event, as arq's worker reads it (arq.jobs.serialize_job)."""
    job: dict[str, object] = {
        "t": None,
        "f": Job.PROCESS_EVENT,
        "a": (event_json.decode(),),
        "k": {},
        "et": enqueued_at_ms,
    }
    return pickle.dumps(job)
