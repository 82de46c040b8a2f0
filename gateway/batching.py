"""Concurrent calls of one Lua script, sent to Redis together.

Every webhook costs one script call. Sent one by one, each call takes a connection
from the pool, writes, and waits for its own reply: under load most of the web
process's time went there, not into Redis. Here the calls made during one turn of
the event loop leave as one pipeline (one write, one read) and each caller gets
its own reply. Nothing is delayed: a batch is sent on the next loop turn.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, ResponseError


class ScriptBatcher:
    def __init__(self, redis: Redis, source: str) -> None:
        self.redis = redis
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
        # `EVALSHA <sha> 0`, encoded once: every call's arguments follow it.
        self._head = [b"$%d\r\n%s\r\n" % (len(word), word) for word in (b"EVALSHA", self.sha.encode(), b"0")]
        self._pending: list[tuple[list[bytes], asyncio.Future[Any]]] = []
        self._scheduled = False
        # Sending tasks, kept referenced until done (asyncio holds only weak references).
        self._sending: set[asyncio.Task[None]] = set()

    async def __call__(self, args: list[bytes]) -> Any:
        """The script's reply to `args` (its ARGV, encoded), or the error it or the connection raised."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((args, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._scheduled = False
        batch, self._pending = self._pending, []
        task = asyncio.ensure_future(self._send(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[tuple[list[bytes], asyncio.Future[Any]]]) -> None:
        try:
            results = await self._execute([args for args, _ in batch])
        except BaseException as exc:  # the connection failed: every call of the batch fails with it
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
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

    async def _execute(self, calls: list[list[bytes]]) -> list[Any]:
        results = await self._pipeline(calls)
        missing = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
        if missing:
            # A restarted or flushed Redis forgot the script: load it once, send those again.
            await self.redis.script_load(self.source)
            for i, result in zip(missing, await self._pipeline([calls[i] for i in missing]), strict=True):
                results[i] = result
        return results

    async def _pipeline(self, calls: list[list[bytes]]) -> list[Any]:
        # redis-py's connection (auth, TLS, reconnects, Sentinel) with our own encoding: its
        # generic packer costs more than the script call itself. A reply that is an error is
        # read like any other, so the stream stays in step.
        pool = self.redis.connection_pool
        connection = await pool.get_connection("EVALSHA")  # type: ignore[no-untyped-call]
        try:
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
        except BaseException:
            # Replies left unread would answer the next user of this connection: drop it.
            await connection.disconnect()
            raise
        finally:
            await pool.release(connection)


def _command(parts: list[bytes], head: list[bytes], args: list[bytes]) -> None:
    """One command in RESP, an array of bulk strings, appended to `parts`: `head` (bulk strings
    already encoded), then `args`."""
    parts.append(b"*%d\r\n" % (len(head) + len(args)))
    parts += head
    for arg in args:
        parts += (b"$%d\r\n" % len(arg), arg, b"\r\n")
