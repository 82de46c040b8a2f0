"""GitHub pull-request deliveries, as the end-to-end tests send them to the gateway over HTTP."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.support.senders import FIXTURES, auth_headers

REPO = "northwind-labs/storefront"
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def sha(n: int) -> str:
    return f"{n:040x}"


def pull_request(
    action: str, number: int, head: str, minute: float, *, branch: str = "feature", merged: bool = False
) -> dict[str, Any]:
    """A `pull_request` delivery's payload of `action`, happening at `minute`, on `branch`."""
    payload: dict[str, Any] = json.loads((FIXTURES / "github" / "pull_request.opened.json").read_text())
    payload["action"] = action
    payload["number"] = number
    pr = payload["pull_request"]
    pr["number"] = number
    pr["head"]["sha"] = head
    pr["head"]["ref"] = branch
    pr["updated_at"] = at(minute)
    if action == "closed":
        pr["state"] = "closed"
        pr["merged"] = merged
        pr["closed_at"] = pr["updated_at"]
    return payload


def at(minute: float) -> str:
    """T0 plus `minute`, as the payloads spell a time."""
    return (T0 + timedelta(minutes=minute)).isoformat().replace("+00:00", "Z")


def signed(payload: dict[str, Any], event: str = "pull_request") -> tuple[bytes, dict[str, str]]:
    """The body and headers GitHub would send for `payload`, with a new delivery id."""
    body = json.dumps(payload).encode()
    headers = json.loads((FIXTURES / "github" / "pull_request.opened.headers.json").read_text())
    return body, {**headers, "X-GitHub-Event": event, **auth_headers("github", body, str(uuid.uuid4()))}


def pr_delivery(
    action: str, number: int, head: str, minute: float, *, merged: bool = False
) -> tuple[bytes, dict[str, str]]:
    return signed(pull_request(action, number, head, minute, merged=merged))


def send_github(client: Any, payload: dict[str, Any], event: str = "pull_request") -> dict[str, Any]:
    """POST `payload` to the gateway's GitHub endpoint; it must be accepted (202)."""
    body, headers = signed(payload, event)
    answer = client.post("/webhooks/github", content=body, headers=headers)
    assert answer.status_code == 202, answer.text
    result: dict[str, Any] = answer.json()
    return result


def send(client: Any, action: str, number: int, head: str, minute: float, **kw: Any) -> dict[str, Any]:
    """POST the delivery to the gateway's GitHub endpoint; it must be accepted (202)."""
    return send_github(client, pull_request(action, number, head, minute, **kw))
