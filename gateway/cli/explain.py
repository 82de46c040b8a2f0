"""`deliveries explain`: a delivery's story in words, from the delivery log and its environment's status.

Pure: what the admin API answered in, sentences out. Why each attempt was accepted, ignored or
refused (and, when refused, what to change), what the worker did with an accepted one, and where
its environment is now.
"""

from __future__ import annotations

from typing import Any

# What to change when a delivery is refused, by the status it was answered with.
REFUSAL_HINTS = {
    400: "the sender's request is malformed (the reason names the field); a redelivery of the same body fails the same way",
    401: "the signature or token did not match: the secret at the host must be one of the gateway's ({secrets}); "
    "fix it, then redeliver",
    403: "the repository is refused by the gateway's allowlist (K8S_EE_ALLOWLIST_MODE, K8S_EE_ALLOWLIST_ORGANIZATIONS, "
    "K8S_EE_ALLOWLIST_REPOSITORIES)",
    413: "the body is over K8S_EE_MAX_BODY_BYTES",
    415: "the host must send JSON (GitHub: content type application/json or form)",
}
REPLAYED = "replayed through the admin API"


def _change(event: dict[str, Any] | None, entry: dict[str, Any]) -> str:
    if not event:
        return str(entry.get("repository") or "its repository")
    number = event.get("number")
    where = f"{event.get('repository')}#{number}" if number is not None else str(event.get("repository"))
    if number is None and event.get("head_ref"):
        where += f" (branch {event['head_ref']})"
    return where


def attempt_lines(entry: dict[str, Any], secrets: str) -> list[str]:
    verdict = entry.get("verdict")
    status = entry.get("status")
    when = entry.get("received_at")
    head = f"Attempt {entry.get('attempt')} ({when})"
    event = entry.get("event")
    reason = entry.get("reason")
    if verdict == "accepted":
        if reason == REPLAYED:
            lines = [f"{head}: replayed through the admin API; its event was queued for the worker again."]
        else:
            lines = [
                f"{head}: accepted ({status}). The delivery was verified and read as {entry.get('event_type')} of "
                f"{_change(event, entry)}, then stored and queued for the worker, in that order."
            ]
        return lines
    if verdict == "duplicate":
        return [
            f"{head}: a duplicate ({status}). This delivery id was already accepted; nothing was done twice."
        ]
    if verdict == "ignored":
        return [f"{head}: ignored ({status}). A valid delivery that does not affect environments: {reason}."]
    if verdict == "pong":
        return [f"{head}: a ping ({status}), answered pong. The hook reaches the gateway and is verified."]
    hint = REFUSAL_HINTS.get(int(status or 0), "")
    return [
        f"{head}: refused ({status}): {reason}. Nothing was stored or queued."
        + (f" To fix: {hint.format(secrets=secrets)}." if hint else "")
    ]


def worker_lines(entry: dict[str, Any]) -> list[str]:
    """What the worker did with an accepted delivery (the last time it was queued)."""
    applied = entry.get("applied")
    event = entry.get("event")
    if applied and applied.get("reconcile"):
        note = f" ({applied['note']})" if applied.get("note") else ""
        return [
            f"The worker applied it in reconcile {applied['reconcile']}, which left environment "
            f"{applied.get('namespace') or '(no namespace)'} {applied.get('state')}{note}."
        ]
    if applied and applied.get("note"):
        return [f"The worker changed nothing for it: {applied['note']}."]
    if event and event.get("number") is None:
        return [
            "It names no change: the worker applies it to the repository's environments it concerns "
            "(by branch or commit); none recorded a result for it."
        ]
    return ["The worker has not finished with it yet (or its record has expired)."]


def explain(delivery: dict[str, Any], environment: dict[str, Any] | None, secrets: str) -> list[str]:
    attempts = delivery.get("attempts") or []
    lines = [
        f"Delivery {delivery.get('delivery_id')} from {attempts[0].get('provider')}, {len(attempts)} attempt(s)."
    ]
    for entry in attempts:
        lines += attempt_lines(entry, secrets)
    accepted = [entry for entry in attempts if entry.get("verdict") == "accepted"]
    if accepted:
        lines += worker_lines(accepted[-1])
    if environment is not None:
        state = environment.get("state")
        key = f"{environment.get('provider')}:{environment.get('repository')}:{environment.get('number')}"
        now = f"Its environment {key} is {state} now"
        if state == "deployed" and environment.get("preview_url"):
            now += f", at {environment['preview_url']}"
        if environment.get("last_error"):
            now += f"; last error: {environment['last_error']}"
        if environment.get("note"):
            now += f" ({environment['note']})"
        lines.append(now + ".")
    return lines
