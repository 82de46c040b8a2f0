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


def pr_delivery(
    action: str, number: int, head: str, minute: float, *, merged: bool = False
) -> tuple[bytes, dict[str, str]]:
    payload = json.loads((FIXTURES / "github" / "pull_request.opened.json").read_text())
    payload["action"] = action
    payload["number"] = number
    pr = payload["pull_request"]
    pr["number"] = number
    pr["head"]["sha"] = head
    pr["updated_at"] = (T0 + timedelta(minutes=minute)).isoformat().replace("+00:00", "Z")
    if action == "closed":
        pr["state"] = "closed"
        pr["merged"] = merged
        pr["closed_at"] = pr["updated_at"]
    body = json.dumps(payload).encode()
    headers = json.loads((FIXTURES / "github" / "pull_request.opened.headers.json").read_text())
    return body, {**headers, **auth_headers("github", body, str(uuid.uuid4()))}


def send(client: Any, action: str, number: int, head: str, minute: float, **kw: Any) -> dict[str, Any]:
    """POST the delivery to the gateway's GitHub endpoint; it must be accepted (202)."""
    body, headers = pr_delivery(action, number, head, minute, **kw)
    answer = client.post("/webhooks/github", content=body, headers=headers)
    assert answer.status_code == 202, answer.text
    return answer.json()
