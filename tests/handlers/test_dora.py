"""The DORA records in a real Redis: counted once, streaks, recovery, lead time, bucket edges."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from redis.asyncio import Redis

from handlers.dora import DAY, DORA_BUCKETS, HOUR, MONTH, WEEK, DoraFigures, DoraStore, Series, read_figures
from handlers.keys import Keys

T = TypeVar("T")
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
SERIES = Series("github", "acme/web")
ENV = "github:acme/web:7"
RETENTION_MS = 3_600_000


def run(url: str, work: Any) -> Any:
    async def main() -> Any:
        redis = Redis.from_url(url)
        try:
            return await work(DoraStore(redis, Keys("k8s-ee:"), RETENTION_MS))
        finally:
            await redis.aclose()

    return asyncio.run(main())


def coro(value: Coroutine[Any, Any, T]) -> Coroutine[Any, Any, T]:
    return value


def test_bucket_edges_fall_on_the_dora_bands() -> None:
    for edge in (HOUR, DAY, WEEK, MONTH, 6 * MONTH):
        assert edge in DORA_BUCKETS
    assert (HOUR, DAY, WEEK) == (3600, 86400, 604800)
    assert MONTH == 365.2425 / 12 * DAY


def test_a_deployment_counts_once_and_streaks_give_failures_and_recovery(
    redis_client: Any, redis_server: Any
) -> None:
    async def work(store: DoraStore) -> DoraFigures:
        first = T0 - timedelta(days=2)
        assert await store.lead_time_pending(ENV)
        # The first deploy succeeds: a deployment, and the change's lead time (2 days).
        assert await store.record(ENV, SERIES, "a::success", "success", T0, first)
        # The same deployment again (a retried job, another worker): nothing more.
        assert not await store.record(ENV, SERIES, "a::success", "success", T0, first)
        assert not await store.lead_time_pending(ENV)
        # A new head fails twice (a retry of it, then a give-up): one change failure.
        assert await store.record(ENV, SERIES, "b::failure", "failure", T0 + timedelta(hours=1))
        assert not await store.record(ENV, SERIES, "b::failure", "failure", T0 + timedelta(hours=2))
        assert await store.record(ENV, SERIES, "c::failure", "failure", T0 + timedelta(hours=3))
        # Fixed: recovered 5 hours after the streak began; the lead time is not taken again.
        assert await store.record(ENV, SERIES, "d::success", "success", T0 + timedelta(hours=6), first)
        return await read_figures(store.redis, store.keys)

    figures = run(redis_server.url, work)
    assert figures.deployments == {(SERIES, "success"): 2, (SERIES, "failure"): 2}
    assert figures.change_failures == {SERIES: 1}
    lead = figures.lead_time[SERIES]
    assert lead.count == 1 and lead.total == 2 * DAY
    # 2 days: above 1 day, within the week.
    assert dict(lead.cumulative())["86400.0"] == 0 and dict(lead.cumulative())["604800.0"] == 1
    recovery = figures.recovery[SERIES]
    assert recovery.count == 1 and recovery.total == 5 * HOUR
    assert dict(recovery.cumulative())["21600.0"] == 1 and dict(recovery.cumulative())["3600.0"] == 0


def test_a_value_on_an_edge_is_in_that_bucket(redis_client: Any, redis_server: Any) -> None:
    async def work(store: DoraStore) -> DoraFigures:
        for n, seconds in enumerate((HOUR, DAY, 6 * MONTH, 7 * MONTH)):
            env = f"github:acme/web:{n}"
            at = T0 + timedelta(seconds=seconds)
            await store.record(env, SERIES, "x::success", "success", at, T0)
        return await read_figures(store.redis, store.keys)

    cumulative = dict(run(redis_server.url, work).lead_time[SERIES].cumulative())
    assert cumulative["3600.0"] == 1
    assert cumulative["86400.0"] == 2
    assert cumulative["1.5778476e+07"] == 3
    assert cumulative["+Inf"] == 4


def test_series_are_kept_apart_and_survive_a_new_client(redis_client: Any, redis_server: Any) -> None:
    other = Series("gitlab", "group/sub/app")

    async def write(store: DoraStore) -> None:
        await store.record("github:acme/web:1", SERIES, "a::success", "success", T0)
        await store.record("gitlab:group/sub/app:1", other, "a::failure", "failure", T0)

    run(redis_server.url, write)
    # Another process (a restarted gateway) reads the same counts from Redis.
    figures = run(redis_server.url, lambda store: coro(read_figures(store.redis, store.keys)))
    assert figures.deployments == {(SERIES, "success"): 1, (other, "failure"): 1}
    assert figures.change_failures == {other: 1}
    assert figures.lead_time == {}  # no first commit was known


def test_every_record_expires(redis_client: Any, redis_server: Any) -> None:
    async def work(store: DoraStore) -> None:
        await store.record(ENV, SERIES, "a::failure", "failure", T0)
        await store.record(ENV, SERIES, "b::success", "success", T0 + timedelta(hours=1), T0)

    run(redis_server.url, work)
    keys = redis_client.keys("k8s-ee:dora:*")
    assert len(keys) == 5
    assert all(0 < redis_client.pttl(key) <= RETENTION_MS for key in keys)
