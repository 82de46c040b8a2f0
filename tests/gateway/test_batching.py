"""The script batcher against a real Redis: every caller gets its own reply, whatever the batching."""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from gateway.batching import MAX_IDLE, ScriptBatcher

SCRIPT = "if ARGV[1] == 'fail' then return redis.error_reply('asked to fail') end return redis.call('INCR', 'n:' .. ARGV[1])"


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_concurrent_calls_each_get_their_own_reply(redis_client: Any, redis_server: Any) -> None:
    # The session's Redis counts every test's calls: count this test's only.
    redis_client.config_resetstat()

    async def main() -> list[Any]:
        redis = Redis.from_url(redis_server.url)
        batcher = ScriptBatcher(redis, SCRIPT)
        try:
            return list(await asyncio.gather(*(batcher([f"k{i % 5}".encode()]) for i in range(100))))
        finally:
            await redis.aclose()

    # The server is shared with every other test of the session: count this test's calls only.
    redis_client.config_resetstat()
    replies = run(main())
    # Each key was incremented 20 times; each caller saw a distinct count of its key.
    for k in range(5):
        assert sorted(replies[k::5]) == list(range(1, 21))
    # Each call ran the script once: none lost, none sent twice.
    stats = redis_client.info("commandstats")["cmdstat_evalsha"]
    # (The first batch found the script not loaded yet: those calls failed and were sent again.)
    assert stats["calls"] - stats["failed_calls"] == 100


def test_one_failing_call_does_not_fail_its_batch(redis_client: Any, redis_server: Any) -> None:
    async def main() -> list[Any]:
        redis = Redis.from_url(redis_server.url)
        batcher = ScriptBatcher(redis, SCRIPT)
        try:
            return list(
                await asyncio.gather(
                    batcher([b"a"]), batcher([b"fail"]), batcher([b"a"]), return_exceptions=True
                )
            )
        finally:
            await redis.aclose()

    first, failed, third = run(main())
    assert (first, third) == (1, 2)
    assert isinstance(failed, ResponseError) and "asked to fail" in str(failed)


def test_a_forgotten_script_is_loaded_again(redis_client: Any, redis_server: Any) -> None:
    async def main() -> tuple[Any, Any]:
        redis = Redis.from_url(redis_server.url)
        batcher = ScriptBatcher(redis, SCRIPT)
        try:
            before = await batcher([b"x"])
            await redis.script_flush()
            return before, await batcher([b"x"])
        finally:
            await redis.aclose()

    assert run(main()) == (1, 2)


def test_an_unreachable_redis_fails_every_caller() -> None:
    async def main() -> list[Any]:
        redis = Redis(port=1, socket_connect_timeout=0.5)
        batcher = ScriptBatcher(redis, SCRIPT)
        try:
            return list(
                await asyncio.gather(*(batcher([str(i).encode()]) for i in range(3)), return_exceptions=True)
            )
        finally:
            await redis.aclose()

    results = run(main())
    assert all(isinstance(r, RedisConnectionError) for r in results)


def test_full_batches_leave_on_kept_connections(redis_client: Any, redis_server: Any) -> None:
    # Bursts of 100 calls in batches of 8: each full batch takes a kept connection, so the first
    # bursts open connections until enough are kept (at most MAX_IDLE, the rest go back to the
    # pool); after that none is opened, however many bursts follow, and every call is answered once.
    async def main() -> tuple[list[int], list[int]]:
        redis = Redis.from_url(redis_server.url)
        batcher = ScriptBatcher(redis, SCRIPT, batch_size=8)
        try:
            opened = []
            replies: list[int] = []
            for _ in range(20):
                replies += await asyncio.gather(*(batcher([b"burst"]) for _ in range(100)))
                opened.append(int(redis_client.info("stats")["total_connections_received"]))
            return opened, replies
        finally:
            await redis.aclose()

    opened, replies = run(main())
    assert sorted(replies) == list(range(1, 2001))
    assert opened[-10:] == [opened[-10]] * 10
    assert opened[-1] - opened[0] <= MAX_IDLE + 1
    # Each call ran the script once: the first burst's forgotten script aside, nothing sent twice.
    stats = redis_client.info("commandstats")["cmdstat_evalsha"]
    assert stats["calls"] - stats["failed_calls"] == 2000


def test_a_kept_connection_the_server_closed_is_replaced(redis_client: Any, redis_server: Any) -> None:
    # Redis closing the batcher's idle connections (a restart, its `timeout`) costs no call an error.
    async def main() -> list[Any]:
        redis = Redis.from_url(redis_server.url)
        batcher = ScriptBatcher(redis, SCRIPT, batch_size=2)
        try:
            first = await asyncio.gather(*(batcher([b"kill"]) for _ in range(4)))
            redis_client.client_kill_filter(_type="normal", skipme=True)
            await asyncio.sleep(0.2)  # the loop sees the connections close
            second = await asyncio.gather(*(batcher([b"kill"]) for _ in range(4)), return_exceptions=True)
            return [*first, *second]
        finally:
            await redis.aclose()

    assert sorted(run(main())) == list(range(1, 9))


def test_a_cancelled_sender_fails_its_batch_with_a_connection_error(redis_server: Any) -> None:
    # The call that filled a batch sends it, in its own task; cancelled while waiting for the
    # replies, it fails the batch's other calls as a lost connection would, never as cancelled.
    async def main() -> list[Any]:
        redis = Redis.from_url(redis_server.url)
        # Busy for 0.3 s in Redis, so that the replies are still awaited when the sender is cancelled.
        slow = "redis.call('INCR', 'n:' .. ARGV[1]) local t = redis.call('TIME') while true do local n = redis.call('TIME') if (n[1] - t[1]) * 1e6 + n[2] - t[2] > 300000 then break end end return 1"
        try:
            sleeper = ScriptBatcher(redis, slow, batch_size=2)
            await sleeper([b"load"])  # the script loaded, and a connection kept
            # Started in one loop turn: the second call fills the batch and sends it.
            follower = asyncio.ensure_future(sleeper([b"f"]))
            leader = asyncio.ensure_future(sleeper([b"l"]))
            await asyncio.sleep(0.05)
            leader.cancel()
            return list(await asyncio.gather(follower, leader, return_exceptions=True))
        finally:
            await redis.aclose()

    follower, leader = run(main())
    assert isinstance(leader, asyncio.CancelledError)
    assert isinstance(follower, RedisConnectionError)
