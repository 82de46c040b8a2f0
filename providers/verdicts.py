"""What verifying and normalising a delivery can conclude.

The sans-I/O adapters in `providers/` return an `Outcome` (or raise `Refusal`);
the web layer turns it into an HTTP answer, the queue, and a `Verdict` in the
delivery log. Nothing here does I/O.

A payload of a shape the gateway cannot use (a missing field, a wrong type, a field
that contradicts the event key, a value the event model refuses) raises `Unusable`.
How that is answered is the endpoint's choice (gateway/endpoints.py): a code host gets
200 `unusable`, because a host disables a hook whose deliveries keep failing; the
generic trigger gets 400, because its caller is a script that should fail loudly.
A body that is not JSON (or form) at all is a plain 400 everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from providers.events import LifecycleEvent

# What the delivery log records of each delivery: what the gateway answered it with.
Verdict = Literal["accepted", "duplicate", "ignored", "pong", "rejected", "unusable"]


class Refusal(Exception):
    """The delivery is refused: a 4xx with a reason the sender can act on.

    The reason is shown to the sender and logged, so it must never contain a secret.
    """

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Unusable(Refusal):
    """The delivery is of a shape the gateway cannot act on (its reason names the field)."""

    def __init__(self, reason: str) -> None:
        super().__init__(400, reason)


def unauthorized(reason: str) -> Refusal:
    return Refusal(401, reason)


def bad_request(reason: str) -> Refusal:
    """A payload field is missing, of the wrong type, or contradicts another: `Unusable`."""
    return Unusable(reason)


def unreadable(reason: str) -> Refusal:
    """The body is not JSON (or form) at all: 400 whoever sent it."""
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
