"""Admission against a real Redis: limits, the FIFO queue, its bound, and promotion exactly once."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from handlers.admission import Admission
from handlers.desired import EnvKey
from handlers.keys import Keys
from handlers.settings import AdmissionSettings
from providers.events import Provider

KEYS = Keys("test:")


def env(repository: str, number: int) -> EnvKey:
    return EnvKey(provider=Provider.GITHUB, repository=repository, number=number)


class Queued:
    """Stands in for the worker's queue: records the reconciles an admission asks for."""

    def __init__(self, fail: bool = False) -> None:
        self.keys: list[EnvKey] = []
        self.fail = fail

    async def __call__(self, key: EnvKey, job_id: str) -> None:
        if self.fail:
            raise ConnectionError("the worker stopped before queuing its reconcile")
        self.keys.append(key)


@pytest.fixture
def url(redis_client: Any, redis_server: Any) -> Iterator[str]:
    yield redis_server.url


def admission(url: str, reconcile: Queued | None = None, **limits: Any) -> tuple[Admission, Queued]:
    queued = reconcile or Queued()
    settings = AdmissionSettings(**limits)
    return Admission(aioredis.Redis.from_url(url), KEYS, settings, queued), queued


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_beyond_the_limit_environments_wait_in_order_and_are_promoted_when_a_slot_frees(url: str) -> None:
    async def scenario() -> None:
        gate, queued = admission(url, max_environments=2)
        a, b, c, d = (env("acme/web", n) for n in range(1, 5))
        assert (await gate.admit(a)).state == "admitted"
        assert (await gate.admit(b)).state == "admitted"
        third = await gate.admit(c)
        assert (third.state, third.position) == ("queued", 1)
        assert third.note() == "queued: position 1, 2 of 2 in use"
        assert (await gate.admit(d)).position == 2
        # Asking again keeps the place.
        assert (await gate.admit(c)).position == 1
        assert await gate.release(a) == [c]
        assert queued.keys == [c]
        assert (await gate.admit(c)).state == "admitted"
        assert (await gate.admit(d)).position == 1
        assert await gate.in_use() == 2

    run(scenario())


def test_a_repositorys_limit_holds_back_only_its_own(url: str) -> None:
    async def scenario() -> None:
        gate, _ = admission(url, max_environments=3, max_environments_per_repository=1)
        x1, x2, y1 = env("acme/x", 1), env("acme/x", 2), env("acme/y", 1)
        assert (await gate.admit(x1)).state == "admitted"
        waiting = await gate.admit(x2)
        assert waiting.note() == "queued: position 1, 1 of 1 in use by acme/x"
        # y1 arrives after x2 but is not held back by x's limit.
        assert (await gate.admit(y1)).state == "admitted"
        assert await gate.release(y1) == []
        assert await gate.release(x1) == [x2]

    run(scenario())


def test_a_running_environment_is_never_queued(url: str) -> None:
    async def scenario() -> None:
        gate, _ = admission(url, max_environments=1)
        assert (await gate.admit(env("acme/web", 1))).state == "admitted"
        # Deployed before the limit was set: it keeps running, and counts.
        assert (await gate.admit(env("acme/web", 2), running=True)).state == "admitted"
        assert await gate.in_use() == 2
        assert (await gate.admit(env("acme/web", 3))).state == "queued"

    run(scenario())


def test_past_its_bound_the_queue_refuses(url: str) -> None:
    async def scenario() -> None:
        gate, _ = admission(url, max_environments=1, admission_queue_size=1)
        await gate.admit(env("acme/web", 1))
        assert (await gate.admit(env("acme/web", 2))).state == "queued"
        refused = await gate.admit(env("acme/web", 3))
        assert refused.state == "refused" and "1 environments already wait" in refused.note()
        assert [k.number for k in await gate.waiting()] == [2]

    run(scenario())


def test_the_last_slot_goes_to_exactly_one_of_many_at_once(url: str) -> None:
    async def scenario() -> None:
        gates = [admission(url, max_environments=3)[0] for _ in range(8)]
        await gates[0].admit(env("acme/web", 100))
        await gates[0].admit(env("acme/web", 101))
        tickets = await asyncio.gather(*(g.admit(env("acme/web", n)) for n, g in enumerate(gates)))
        assert sorted(t.state for t in tickets) == ["admitted"] + ["queued"] * 7
        assert sorted(t.position for t in tickets if t.state == "queued") == list(range(1, 8))
        # Two slots free at once, released by two workers: each waiting one is promoted once.
        promoted = await asyncio.gather(
            gates[1].release(env("acme/web", 100)), gates[2].release(env("acme/web", 101))
        )
        flat = [key for group in promoted for key in group]
        assert len(flat) == 2 and len(set(flat)) == 2
        assert await gates[0].in_use() == 3

    run(scenario())


def test_a_promotion_whose_reconcile_was_not_queued_is_recovered(url: str) -> None:
    async def scenario() -> None:
        crashing, _ = admission(url, Queued(fail=True), max_environments=1)
        first, second = env("acme/web", 1), env("acme/web", 2)
        await crashing.admit(first)
        await crashing.admit(second)
        with pytest.raises(ConnectionError):
            await crashing.release(first)
        # The slot was given (once); the reconcile was not queued. A worker starting up queues it.
        restarted, queued = admission(url, max_environments=1)
        assert await restarted.in_use() == 1
        assert await restarted.recover(older_than=0) == [second]
        assert queued.keys == [second]
        assert await restarted.recover(older_than=0) == []

    run(scenario())


def test_without_limits_everything_is_admitted_and_counted(url: str) -> None:
    async def scenario() -> None:
        gate, _ = admission(url)
        for n in range(5):
            assert (await gate.admit(env("acme/web", n))).state == "admitted"
        assert await gate.in_use() == 5
        await gate.release(env("acme/web", 0))
        assert await gate.in_use() == 4

    run(scenario())
