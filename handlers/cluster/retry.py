"""Bounded retries with exponential backoff and full jitter, for one API request at a time.

Full jitter (a delay drawn uniformly from zero to the exponential cap) spreads the retries
of many workers hitting one overloaded API server instead of having them return in step.
A Retry-After the server sends is a floor for the delay. The bound is both a number of
attempts and a time budget: past either, the last transient error is raised for the caller
(the worker's job) to retry much later.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from handlers.cluster import TransientClusterError

logger = logging.getLogger("k8s_ee.cluster")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    # Attempts in all, the first included.
    attempts: int = 5
    # Seconds from the first attempt after which no further attempt starts.
    budget: float = 30.0
    # The cap of the first retry's delay; it doubles for every retry after.
    base_delay: float = 0.25
    max_delay: float = 8.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("a retry policy needs at least one attempt")
        if self.budget < 0 or self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("retry delays and budget cannot be negative")

    def delay(self, retry: int, draw: Callable[[], float] = random.random) -> float:
        """The wait before retry number `retry` (0 for the first retry): full jitter."""
        cap = min(self.max_delay, self.base_delay * (2.0**retry))
        return cap * draw()


async def with_retries(
    operation: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Run `operation` until it succeeds, raises anything but a TransientClusterError, or the
    policy runs out; then its last TransientClusterError is raised, saying how many attempts."""
    started = clock()
    attempt = 0
    while True:
        attempt += 1
        try:
            return await operation()
        except TransientClusterError as error:
            if not error.request_retry:
                raise  # another request, later, may succeed; this one again will not
            delay = policy.delay(attempt - 1)
            if error.retry_after is not None:
                delay = max(delay, error.retry_after)
            spent = clock() - started
            if attempt >= policy.attempts or spent + delay > policy.budget:
                if attempt == 1:
                    raise
                raise _gave_up(error, attempt, spent) from error
            logger.info("%s; retrying in %.2fs (attempt %d of %d)", error, delay, attempt, policy.attempts)
            await sleep(delay)


def _gave_up(error: TransientClusterError, attempts: int, spent: float) -> TransientClusterError:
    return TransientClusterError(
        f"{error.message} (gave up after {attempts} attempts in {spent:.1f}s)",
        status=error.status,
        reason=error.reason,
        retry_after=error.retry_after,
        causes=error.causes,
    )
