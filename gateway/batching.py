"""Concurrent calls of one Lua script, sent to Redis together.

Every webhook costs one script call. Sent one by one, each call takes a connection
from the pool, writes, and waits for its own reply: under load most of the web
process's time went there, not into Redis. Here calls leave in batches, one pipeline
(one write, one read) each, and each caller gets its own reply. Nothing is delayed:

- a batch leaves as soon as it holds `BATCH_SIZE` calls, written by the call that filled
  it, on a connection the batcher kept from an earlier batch;
- what is left leaves at the end of the loop turn.

Why the first rule: under load a turn of the loop starts every request that arrived at once
(uvicorn reads them together). Sent only at the end of the turn, all of them formed one batch,
and the web process waited idle while Redis ran it; then Redis waited while the web process
answered them and read the next ones. The two took turns, not overlapping
(bench/ingest.py: 5,500 deliveries/s; with batches leaving as they fill, 7,000).

A batch has one deadline, not each call: past `timeout` seconds every call of the batch
fails with redis-py's `TimeoutError`, as a call to an unreachable Redis would.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

# A batch leaves as soon as it holds this many calls; fewer wait for the end of the loop turn.
BATCH_SIZE = 8
# Connections kept between batches: as many as batches are in flight at once under load.
MAX_IDLE = 8


class ScriptBatcher:
    def __init__(
        self, redis: Redis, source: str, timeout: float | None = None, batch_size: int = BATCH_SIZE
    ) -> None:
        self.redis = redis
        self.source = source
        self.timeout = timeout
        self.batch_size = batch_size
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
        # `EVALSHA <sha> 0`, encoded once: every call's arguments follow it.
        self._head = [b"$%d\r\n%s\r\n" % (len(word), word) for word in (b"EVALSHA", self.sha.encode(), b"0")]
        self._pending: list[tuple[list[bytes], asyncio.Future[Any]]] = []
        self._scheduled = False
        # Sending tasks, kept referenced until done (asyncio holds only weak references).
        self._sending: set[asyncio.Task[None]] = set()
        # Connections kept between batches, each with no batch in flight: a full batch leaves at
        # once on one of them, where a checkout from the pool would wait for the next loop turn.
        self._idle: list[AbstractConnection] = []

    async def __call__(self, args: list[bytes]) -> Any:
        """The script's reply to `args` (its ARGV, encoded), or the error it or the connection raised."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((args, future))
        if len(self._pending) >= self.batch_size and self._idle:
            # A full batch goes now, sent by the call that filled it: Redis runs it while this
            # loop turn goes on with the requests behind it, rather than after them all.
            batch, self._pending = self._pending, []
            await self._send(batch, self._idle.pop())
        elif not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._scheduled = False
        batch, self._pending = self._pending, []
        if not batch:  # sent already, full
            return
        task = asyncio.ensure_future(self._send(batch, self._idle.pop() if self._idle else None))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(
        self, batch: list[tuple[list[bytes], asyncio.Future[Any]]], connection: AbstractConnection | None
    ) -> None:
        try:
            try:
                async with asyncio.timeout(self.timeout):
                    results = await self._execute([args for args, _ in batch], connection)
            except TimeoutError:
                raise RedisTimeoutError(f"Redis did not answer within {self.timeout} s") from None
        except BaseException as exc:  # the connection failed: every call of the batch fails with it
            failure = exc if isinstance(exc, Exception) else RedisConnectionError("the batch was cancelled")
            for _, future in batch:
                if not future.done():
                    future.set_exception(failure)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():  # its caller gave up (a deadline): the reply is dropped
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def _execute(self, calls: list[list[bytes]], connection: AbstractConnection | None) -> list[Any]:
        pool = self.redis.connection_pool
        if connection is None:
            connection = await pool.get_connection("EVALSHA")  # type: ignore[no-untyped-call]
        elif connection._reader is not None and connection._reader.at_eof():
            # Closed by the server while it was kept (a restart, its idle timeout): connect again.
            await connection.disconnect()
        try:
            results = await self._pipeline(calls, connection)
            missing = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
            if missing:
                # A restarted or flushed Redis forgot the script: load it once, send those again.
                await self.redis.script_load(self.source)
                again = await self._pipeline([calls[i] for i in missing], connection)
                for i, result in zip(missing, again, strict=True):
                    results[i] = result
        except BaseException:
            # Replies left unread would answer the next user of this connection: drop it.
            await connection.disconnect()
            await pool.release(connection)
            raise
        if len(self._idle) < MAX_IDLE:
            self._idle.append(connection)
        else:
            await pool.release(connection)
        return results

    async def _pipeline(self, calls: list[list[bytes]], connection: AbstractConnection) -> list[Any]:
        # redis-py's connection (auth, TLS, reconnects, Sentinel) with our own encoding: its
        # generic packer costs more than the script call itself. A reply that is an error is
        # read like any other, so the stream stays in step.
        parts: list[bytes] = []
        for args in calls:
            _command(parts, self._head, args)
        # A list: written as it is, without first copying the stored bodies into one string.
        await connection.send_packed_command(parts)
        results: list[Any] = []
        for _ in calls:
            try:
                results.append(await connection.read_response())
            except ResponseError as error:
                results.append(error)
        return results


def _command(parts: list[bytes], head: list[bytes], args: list[bytes]) -> None:
    """One command in RESP, an array of bulk strings, appended to `parts`: `head` (bulk strings
    already encoded), then `args`."""
    parts.append(b"*%d\r\n" % (len(head) + len(args)))
    parts += head
    for arg in args:
        parts += (b"$%d\r\n" % len(arg), arg, b"\r\n")
