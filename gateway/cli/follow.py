"""`--wait`: follow what the worker does with one accepted delivery, through the admin API.

The delivery log says when the worker is done with a delivery: its `applied` record names the
reconcile that applied it and the state it left the environment in, or why nothing was needed.
Until then the environment's state is shown as progress. A transient failure that outlasts every
retry leaves the environment `failed` without that record; it ends the wait too.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any
from urllib.parse import quote

from gateway.cli.client import Gateway, environment_path
from gateway.cli.output import Progress

# The state each kind of request means to reach.
GOALS = {
    "env.deploy": {"deployed"},
    "env.wake": {"deployed"},
    "env.hibernate": {"hibernated"},
    "env.destroy": {"destroyed"},
    "change.updated": {"deployed", "skipped"},
    "change.opened": {"deployed", "skipped"},
    "change.reopened": {"deployed", "skipped"},
    "change.ready": {"deployed", "skipped"},
    "change.closed": {"destroyed", "preserved"},
}
POLL_SECONDS = 1.0
# States a reconcile can leave an environment in that are not where it ends up.
UNDER_WAY = {"queued", "deploying"}


class FollowResult:
    """Where following one environment after a request ended: whether it reached the goal, its
    last state and what to print (not an adapter's `providers.verdicts.Outcome`)."""

    def __init__(
        self,
        ok: bool,
        state: str | None,
        message: str,
        environment: dict[str, Any] | None,
        applied: dict[str, Any] | None = None,
    ) -> None:
        self.ok, self.state, self.message, self.environment = ok, state, message, environment
        # What the delivery log says the worker did with it.
        self.applied = applied

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "state": self.state, "message": self.message, "environment": self.environment}


def _applied(gateway: Gateway, provider: str, delivery_id: str) -> dict[str, Any] | None:
    found = gateway.find(f"/api/v1/deliveries/{quote(delivery_id, safe='')}", provider=provider)
    for attempt in (found or {}).get("attempts") or []:
        if attempt.get("verdict") == "accepted" and attempt.get("applied"):
            return dict(attempt["applied"])
    return None


def _time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")) if value else None
    except ValueError:
        return None


def follow(
    gateway: Gateway,
    key: str,
    provider: str,
    delivery_id: str,
    event_type: str,
    accepted_at: datetime,
    *,
    timeout: float,
    progress: Progress,
    goal: set[str] | None = None,
    reconcile_grace: float = 0.0,
) -> FollowResult:
    """Wait until the worker is done with the delivery (or `timeout` seconds pass); `goal` the
    states that mean it went as asked (by default, what the event's type asks for).

    A chat command's delivery is first recorded with the command's answer, and then, when the
    command asked for one, with the reconcile that applied it: `reconcile_grace` is how long an
    answer alone is waited past for that reconcile (a refused command has none)."""
    goal = goal or GOALS.get(event_type, {"deployed"})
    path = environment_path(key)
    deadline = time.monotonic() + timeout
    last_state = None
    noted_at: float | None = None
    while True:
        applied = _applied(gateway, provider, delivery_id)
        environment = gateway.find(path)
        state = (environment or {}).get("state")
        if applied is not None and applied.get("reconcile") is None and reconcile_grace > 0:
            noted_at = noted_at if noted_at is not None else time.monotonic()
            if time.monotonic() - noted_at < reconcile_grace and time.monotonic() < deadline:
                progress.update(f"waiting for {key}: {applied.get('note')}")
                time.sleep(POLL_SECONDS)
                continue
        if applied is not None and applied.get("state") in UNDER_WAY:
            # The reconcile left it on its way (a rollout being watched, a wake starting the app):
            # the environment's own state says when it got there (or that it failed, below).
            if state in goal:
                return FollowResult(True, state, _done(key, state, environment), environment, applied)
            applied = None
        if applied is not None:
            state = applied.get("state") or state
            if state in goal:
                return FollowResult(True, state, _done(key, state, environment), environment, applied)
            why = (
                applied.get("note")
                or (environment or {}).get("last_error")
                or (environment or {}).get("note")
            )
            said = "failed" if state == "failed" else f"is {state or 'unknown'}"
            message = f"{key} {said}" + (f": {why}" if why else "")
            return FollowResult(False, state, message, environment, applied)
        updated = _time((environment or {}).get("updated_at"))
        if state == "failed" and updated is not None and updated >= accepted_at:
            why = (environment or {}).get("last_error") or "no reason recorded"
            return FollowResult(False, state, f"{key} failed: {why}", environment)
        if state != last_state:
            progress.say(f"{key}: {state or 'queued'}")
            last_state = state
        progress.update(f"waiting for {key} ({state or 'queued'})")
        if time.monotonic() >= deadline:
            return FollowResult(
                False, state, f"{key} is still {state or 'queued'} after {timeout:.0f} s", environment
            )
        time.sleep(POLL_SECONDS)


def show(outcome: FollowResult, answer: dict[str, Any], as_json: bool) -> int:
    """Print a followed request's outcome; its exit code."""
    from gateway.cli.output import FAILED, OK, paint, print_json

    if as_json:
        print_json({**answer, "outcome": outcome.as_json()})
    else:
        print(paint(outcome.message, "green" if outcome.ok else "red"))
    return OK if outcome.ok else FAILED


def _done(key: str, state: str, environment: dict[str, Any] | None) -> str:
    url = (environment or {}).get("preview_url")
    until = (environment or {}).get("preserved_until")
    return (
        f"{key} is {state}"
        + (f": {url}" if url and state == "deployed" else "")
        + (f", preserved until {until}" if until else "")
    )
