"""Reading request bodies without letting anyone pin the process's memory.

Three limits, each answered before the body can cost more:

- a body larger than `K8S_EE_MAX_BODY_BYTES` is refused (413) as soon as it is declared or read;
- a body not received within `K8S_EE_BODY_READ_TIMEOUT` seconds is refused (408): a sender
  that stalls mid-upload holds nothing for longer (code hosts give up after 10 s anyway);
- the bytes of all bodies held at once, across every request of the process, stay under
  `K8S_EE_MAX_BODY_BYTES_IN_FLIGHT`; a request that would go beyond is answered 503 with
  `Retry-After`, and the sender's retry finds room.

A request without any credential header is refused before its body is read at all
(gateway/endpoints.py, `Receiver.precheck`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from starlette.requests import ClientDisconnect
from starlette.types import Receive


class TooLarge(Exception):
    pass


class TooSlow(Exception):
    pass


class Overloaded(Exception):
    pass


class BodyBudget:
    """The body bytes the process holds, and the most it may hold.

    Only the event loop's thread touches it, between awaits: no lock is needed.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.in_flight = 0

    def hold(self) -> Held:
        return Held(self)


class Held:
    """One request's share of the budget, given back when the request is answered."""

    def __init__(self, budget: BodyBudget) -> None:
        self.budget = budget
        self.size = 0

    def grow(self, size: int) -> None:
        budget = self.budget
        if budget.in_flight + size > budget.capacity:
            raise Overloaded
        budget.in_flight += size
        self.size += size

    def release(self) -> None:
        self.budget.in_flight -= self.size
        self.size = 0


async def read_body(
    headers: Mapping[str, str], receive: Receive, limit: int, timeout: float, held: Held
) -> bytes:
    """The whole body, within `limit` bytes and `timeout` seconds, counted in `held` as it arrives.

    Read from the ASGI `receive` (raises `ClientDisconnect` if the sender goes away), once: a
    request's body is read by nothing else."""
    declared = headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise TooLarge
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ClientDisconnect
                chunk: bytes = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise TooLarge
                held.grow(len(chunk))
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
    except TimeoutError:
        raise TooSlow from None
    return b"".join(chunks)
