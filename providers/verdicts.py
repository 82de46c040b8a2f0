"""What verifying and normalising a delivery can conclude.

The sans-I/O adapters in `providers/` return an `Outcome` (or raise `Refusal`);
the web layer turns it into an HTTP answer, the queue, and a `Verdict` in the
delivery log. Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from providers.events import LifecycleEvent

# What the delivery log records of each delivery: what the gateway answered it with.
Verdict = Literal["accepted", "duplicate", "ignored", "pong", "rejected"]


class Refusal(Exception):
    """The delivery is refused: a 4xx with a reason the sender can act on.

    The reason is shown to the sender and logged, so it must never contain a secret.
    """

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def unauthorized(reason: str) -> Refusal:
    return Refusal(401, reason)


def bad_request(reason: str) -> Refusal:
    return Refusal(400, reason)


def unsupported_media_type(reason: str) -> Refusal:
    return Refusal(415, reason)


@dataclass(frozen=True, slots=True)
class Accepted:
    event: LifecycleEvent


@dataclass(frozen=True, slots=True)
class Ignored:
    reason: str
    # Set when the payload names a repository, so that the log can be filtered by it.
    repository: str | None = None
    type: str | None = None


@dataclass(frozen=True, slots=True)
class Pong:
    pass


Outcome = Accepted | Ignored | Pong
