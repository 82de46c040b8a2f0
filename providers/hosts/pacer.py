"""Each host's rate-limit answers, per credential, held across every call of the process."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from typing import TypeVar

from providers.hosts.base import Budget, HostUnavailable
from providers.hosts.http import HttpPolicy

T = TypeVar("T")

# -- rate limits -----------------------------------------------------------------------------------


class Pacer:
    """One host's rate-limit answers, per credential: the budget it last reported, and how long
    every call must hold back after it said "too many".

    Every call to the host goes through `run`. While a hold runs, a call sleeps out the rest when
    it is short (at most the policy's `max_wait`), and otherwise fails at once with
    `HostUnavailable(retry_after=rest)`, sending nothing: a host that asked for a pause is not
    asked again before it ends, by this call or any other.

    Writes follow one rule: a rate-limit answer means the host did nothing, so after the wait the
    whole call runs again (it searches before it creates, so nothing is written twice). Any other
    failure of a write (no answer, a timeout, a 5xx) leaves its outcome unknown: it is never
    repeated here; the caller gets `HostUnavailable(retry_after=rerun_after)` and runs the whole
    call again later. Reads are repeated by the HTTP policy itself (idempotent methods only)."""

    def __init__(self, provider: str, name: str, policy: HttpPolicy) -> None:
        self.provider = provider
        self.name = name
        self.policy = policy
        self._lock = threading.Lock()
        self._remaining: dict[str, Budget] = {}
        self._resets: dict[str, float] = {}  # credential key -> epoch s its window renews
        self._until: dict[str, float] = {}  # credential key -> time.monotonic() the hold ends

    def budgets(self, now: float | None = None) -> dict[str, Budget]:
        """The budgets the host last reported, but for those whose window has renewed since: what
        they have left is not known until the next answer. (Else a caller that waits for the
        budget before it calls, as the resync does, would wait for ever.)"""
        moment = time.time() if now is None else now
        with self._lock:
            return {
                f"{self.provider}:{key}": value
                for key, value in self._remaining.items()
                if self._resets.get(key, math.inf) > moment
            }

    def record(
        self, key: str, remaining: float, reset_at: float | None = None, limit: float | None = None
    ) -> None:
        """The host's last word on the budget; a spent one holds calls until `reset_at` (epoch s)."""
        with self._lock:
            self._remaining[key] = Budget(float(remaining), float(limit) if limit and limit > 0 else None)
            if reset_at is None:
                self._resets.pop(key, None)
            else:
                self._resets[key] = reset_at
        if remaining <= 0 and reset_at is not None:
            self.hold(key, reset_at - time.time())

    def record_headers(self, key: str, headers: Mapping[str, str]) -> None:
        """Read `RateLimit-Remaining` (GitLab) or `X-RateLimit-Remaining` (GitHub, Bitbucket), and
        the matching reset time, when the answer carries them."""
        lowered = {name.lower(): value for name, value in headers.items()}
        for prefix in ("ratelimit-", "x-ratelimit-"):
            remaining = _number(lowered.get(prefix + "remaining"))
            if remaining is not None:
                reset = _number(lowered.get(prefix + "reset"))
                # GitLab and GitHub send epoch seconds; the IETF draft's form is seconds from now.
                if reset is not None and reset < 1_000_000_000:
                    reset += time.time()
                self.record(key, remaining, reset, _number(lowered.get(prefix + "limit")))
                return

    def hold(self, key: str, seconds: float) -> None:
        if seconds <= 0:
            return
        until = time.monotonic() + seconds
        with self._lock:
            self._until[key] = max(until, self._until.get(key, 0.0))

    def wait(self, key: str) -> None:
        with self._lock:
            rest = self._until.get(key, 0.0) - time.monotonic()
        if rest <= 0:
            return
        if rest > self.policy.max_wait:
            raise HostUnavailable(
                f"{self.name} asked for a pause in calls; {math.ceil(rest)}s of it are left",
                retry_after=rest,
                rate_limited=True,
            )
        time.sleep(rest)

    def run(self, key: str, call: Callable[[], T], *, write: bool = False) -> T:
        attempt = 0
        while True:
            self.wait(key)
            try:
                return call()
            except HostUnavailable as exc:
                if not exc.rate_limited:
                    if write and exc.retry_after is None and (exc.status is None or exc.status >= 500):
                        raise HostUnavailable(
                            f"{exc}; the call is not repeated now (a write in it may have been "
                            "applied): run it again later",
                            status=exc.status,
                            retry_after=self.policy.rerun_after,
                        ) from exc
                    raise
                wait = exc.retry_after if exc.retry_after is not None else self._backoff(attempt)
                self.hold(key, wait)
                if write and attempt < self.policy.retries and wait <= self.policy.max_wait:
                    attempt += 1
                    continue
                if exc.retry_after is None:
                    raise HostUnavailable(
                        str(exc), status=exc.status, retry_after=wait, rate_limited=True
                    ) from exc
                raise

    def _backoff(self, attempt: int) -> float:
        return min(self.policy.max_wait, self.policy.backoff * 2.0**attempt)


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
