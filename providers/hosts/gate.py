"""The write gate: every write a host client sends first takes a slot from its credential's bucket.

GitHub asks for about one write a second per credential, and its secondary rate limits punish
bursts. Pacing each client on its own is not enough: concurrent reports, and other worker
processes, write with the same credential. So each write reserves a slot in one token bucket per
credential (GCRA: a burst of `burst` writes goes at once, then one every `interval` seconds), and
sleeps until its slot. The worker shares one bucket across its processes through Redis (injected by
handlers/worker.py); `LocalWriteGate` is the bucket of a single process.

The gate is called from the threads that run the synchronous SDK calls.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from typing import Protocol

from providers.hosts.base import HostUnavailable


class WriteGate(Protocol):
    def reserve(self, credential: str, interval: float, burst: int, max_wait: float) -> float | None:
        """Reserve the next write slot of `credential` (never a secret: see `fingerprint`): the
        seconds until it, 0 when the bucket has room now; None when it is further away than
        `max_wait` (then nothing is reserved)."""
        ...


class LocalWriteGate:
    """The bucket of one process, held under a lock across its threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tat: dict[str, float] = {}  # credential -> theoretical arrival time (monotonic)

    def reserve(self, credential: str, interval: float, burst: int, max_wait: float) -> float | None:
        with self._lock:
            now = time.monotonic()
            tat = max(self._tat.get(credential, now), now) + interval
            wait = max(0.0, tat - max(1, burst) * interval - now)
            if wait > max_wait:
                return None
            self._tat[credential] = tat
            return wait


def fingerprint(provider: str, secret: str, key: str) -> str:
    """A credential's bucket name: the provider, a digest of its secret and whose budget it is
    (the token's, or an app installation's). The secret itself never leaves the client."""
    digest = hashlib.sha256(secret.encode()).hexdigest()[:16]
    return f"{provider}:{digest}:{key}"


def pass_gate(
    gate: WriteGate, credential: str, interval: float, burst: int, max_wait: float, name: str
) -> None:
    """Wait for the write's slot; a slot further than `max_wait` fails the call at once (the report
    is retried through the queue), sending nothing."""
    if interval <= 0:
        return
    wait = gate.reserve(credential, interval, burst, max_wait)
    if wait is None:
        raise HostUnavailable(
            f"{name}: too many writes are waiting for this credential; more than "
            f"{math.ceil(max_wait)}s until the next one may go",
            retry_after=max_wait,
            rate_limited=True,
        )
    if wait > 0:
        time.sleep(wait)
