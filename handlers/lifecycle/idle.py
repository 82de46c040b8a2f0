"""The idle check: hibernate every awake environment whose idle deadline has passed.

Run at every tick (each second). One range read of the deadlines (handlers/lifecycle/activity.py)
finds what is due; each due environment gets an `env.hibernate` event from source `idle`, named
by its deadline, so a second tick before the hibernation is applied queues nothing new. The
policy refuses it if the environment was used after the deadline (a push that raced the check).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from handlers.desired import DesiredStore, EnvKey
from handlers.lifecycle.activity import Activity
from handlers.lifecycle.emit import delivery_id
from providers.events import EventSource, EventType, LifecycleEvent

ACTOR = "k8s-ee idle check"


async def check(
    activity: Activity,
    desired: DesiredStore,
    emit: Callable[[LifecycleEvent], Awaitable[bool]],
    now: float,
    limit: int = 100,
) -> int:
    """Queue the hibernation of what is past its deadline; how many were queued."""
    queued = 0
    for env, deadline in await activity.due(now, limit):
        key = EnvKey.parse(env)
        _, want = await desired.load(key)
        if want is None or want.action != "deploy" or want.hibernated:
            await activity.asleep(env)  # nothing awake to hibernate: no deadline
            continue
        event = LifecycleEvent(
            provider=key.provider,
            delivery_id=delivery_id(f"idle:{env}:{int(deadline)}"),
            type=EventType.ENV_HIBERNATE,
            repository=key.repository,
            number=key.number,
            actor=ACTOR,
            occurred_at=datetime.fromtimestamp(deadline, UTC),
            received_at=datetime.fromtimestamp(now, UTC),
            source=EventSource.IDLE,
        )
        queued += int(await emit(event))
    return queued
