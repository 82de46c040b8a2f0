"""The contract between the web process and the worker: the jobs there are, and how one is written.

The gateway hands each accepted delivery to the worker as an arq job, written by its
delivery script in the same round trip that stores the delivery (gateway/deliver.lua).
What it writes is decided here: the job's name, its id, its key, and its bytes,
encoded with arq's own `serialize_job`, so arq's worker reads the job as one it had
queued itself. The worker registers its functions under these same names.
"""

from __future__ import annotations

from typing import Final

from arq.constants import job_key_prefix
from arq.jobs import serialize_job

from providers.events import LifecycleEvent


class Job:
    """The names the worker's functions are registered under."""

    # One per accepted delivery: update the desired state of the environment(s) it concerns.
    PROCESS_EVENT: Final = "process_event"
    # Bring one environment to its desired state.
    RECONCILE: Final = "reconcile"
    # Tell the code host about one environment's state.
    REPORT: Final = "report"
    # Send one status-webhook delivery.
    STATUS_WEBHOOK: Final = "deliver_status_webhook"


# arq drops a job not started within this long; a day is arq's own default.
JOB_EXPIRES_MS: Final = 86_400_000


def job_key(job_id: str) -> str:
    """Where arq keeps a queued job (`arq:job:<id>`); its id goes into the queue's sorted set."""
    return job_key_prefix + job_id


def event_job_id(event: LifecycleEvent) -> str:
    """One job per delivery: a redelivery that got past dedup could not queue a second one."""
    return f"event:{event.provider.value}:{event.delivery_id}"


def replay_job_id(event: LifecycleEvent, replay: str) -> str:
    """A job of its own for each replay of a delivery (`replay` names the replay)."""
    return f"replay:{event.provider.value}:{event.delivery_id}:{replay}"


def encode_event_job(event_json: bytes, enqueued_at_ms: int) -> bytes:
    """The `process_event` job of an event, as arq's worker reads it."""
    return serialize_job(Job.PROCESS_EVENT, (event_json.decode(),), {}, None, enqueued_at_ms)
