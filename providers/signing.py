"""Signature and token checks shared by the adapters. All comparisons run in constant time."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable, Mapping

from providers.verdicts import unauthorized

# Standard Webhooks (and GitLab's signing token) accept a timestamp this far
# from our clock, either way; outside it the delivery is refused as a replay.
TIMESTAMP_TOLERANCE_S = 300
# Epoch seconds have 10 digits until the year 2286; 12 reach far past any clock.
MAX_TIMESTAMP_DIGITS = 12


def epoch_seconds(text: str, name: str) -> int:
    """A signed timestamp header: ASCII digits only, of a sane length; anything else is a 401.

    `int()` alone would take a sign, underscores, spaces, other scripts' digits, and
    hundreds of digits (whose arithmetic then overflows): none of those is a timestamp.
    """
    if not (0 < len(text) <= MAX_TIMESTAMP_DIGITS and text.isascii() and text.isdigit()):
        raise unauthorized(
            f"{name} must be whole seconds since the epoch (at most {MAX_TIMESTAMP_DIGITS} digits)"
        )
    return int(text)


def verify_hub_signature(header: str | None, body: bytes, secrets: Iterable[bytes], name: str) -> None:
    """Check a `sha256=<hex>` header (GitHub, Bitbucket) against any of the secrets.

    Several secrets are accepted so that a secret can be rotated without downtime.
    """
    if not header:
        raise unauthorized(f"missing {name} header")
    algorithm, _, given = header.strip().partition("=")
    if algorithm.lower() != "sha256" or not given:
        raise unauthorized(f"{name} must be 'sha256=<hex digest>'")
    try:
        given_digest = bytes.fromhex(given.strip())
    except ValueError:
        raise unauthorized(f"{name} is not a hex digest") from None
    matched = False
    # Check every secret, not only up to the first match, so timing does not tell which one matched.
    for secret in secrets:
        matched |= hmac.compare_digest(hmac.digest(secret, body, "sha256"), given_digest)
    if not matched:
        raise unauthorized(f"{name} does not match the payload for any configured secret")


def verify_token(given: str | None, tokens: Iterable[bytes], name: str) -> None:
    """Check a shared-secret header (GitLab `X-Gitlab-Token`, a bearer token)."""
    if not given:
        raise unauthorized(f"missing {name}")
    given_bytes = given.encode("utf-8", "replace")
    matched = False
    for token in tokens:
        matched |= hmac.compare_digest(token, given_bytes)
    if not matched:
        raise unauthorized(f"{name} does not match any configured token")


def standard_webhook_key(secret: bytes) -> bytes:
    """The HMAC key of a Standard Webhooks secret: `whsec_<base64>` decodes; anything else is used as is."""
    if secret.startswith(b"whsec_"):
        try:
            return base64.b64decode(secret[len(b"whsec_") :], validate=True)
        except binascii.Error:
            return secret
    return secret


def standard_webhook_signature(secret: bytes, msg_id: str, timestamp: str, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, as a sender computes it."""
    signed = msg_id.encode() + b"." + timestamp.encode() + b"." + body
    digest = hmac.new(standard_webhook_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify_standard_webhook(
    headers: Mapping[str, str], body: bytes, secrets: Iterable[bytes], now: float
) -> str:
    """Verify `webhook-id`, `webhook-timestamp`, `webhook-signature`; return the id (the replay key)."""
    msg_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp")
    signature = headers.get("webhook-signature")
    for name, value in (
        ("webhook-id", msg_id),
        ("webhook-timestamp", timestamp),
        ("webhook-signature", signature),
    ):
        if not value:
            raise unauthorized(f"missing {name} header")
    assert msg_id is not None and timestamp is not None and signature is not None
    sent_at = epoch_seconds(timestamp, "webhook-timestamp")
    if abs(now - sent_at) > TIMESTAMP_TOLERANCE_S:
        raise unauthorized(
            f"webhook-timestamp is more than {TIMESTAMP_TOLERANCE_S} s from the gateway's clock"
        )
    # The header may carry several space-separated signatures (the sender rotating its secret).
    given = [part.partition(",")[2].encode() for part in signature.split() if part.startswith("v1,")]
    if not given:
        raise unauthorized("webhook-signature has no 'v1,<base64>' signature")
    matched = False
    for secret in secrets:
        expected = standard_webhook_signature(secret, msg_id, timestamp, body).partition(",")[2].encode()
        for candidate in given:
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise unauthorized("webhook-signature does not match the payload for any configured secret")
    return msg_id
