"""The script batcher against a real Redis: every caller gets its own reply, whatever the batching."""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from gateway.batching import ScriptBatcher

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
