"""What Bitbucket Cloud and Bitbucket Data Center share: one endpoint, one signature.

Both products post to `/webhooks/bitbucket` with the event in `X-Event-Key` and an
`X-Hub-Signature: sha256=<hex HMAC>` header, but their payloads have nothing else in
common. `flavour()` says which product sent a delivery, so that the web layer can hand
it to `providers.bitbucket_cloud` or `providers.bitbucket_server`.

Like every inbound adapter this is sans-I/O: pure functions of headers and body.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, TypeVar

from providers.events import Provider
from providers.payload import field, optional, parse_time
from providers.signing import verify_hub_signature
from providers.verdicts import Refusal, bad_request

T = TypeVar("T")

EVENT_HEADER = "X-Event-Key"
SIGNATURE_HEADER = "X-Hub-Signature"

# Event keys only one of the products sends. Prefixes cover whole families; the
# `repo:` family exists in both, so its members are listed one by one.
CLOUD_EVENT_PREFIXES = ("pullrequest:", "issue:", "pipeline:")
CLOUD_EVENTS = frozenset(
    {
        "repo:push",
        "repo:fork",
        "repo:updated",
        "repo:created",
        "repo:deleted",
        "repo:imported",
        "repo:transfer",
        "repo:commit_comment_created",
        "repo:commit_status_created",
        "repo:commit_status_updated",
        "project:updated",
    }
)
SERVER_EVENT_PREFIXES = ("pr:", "diagnostics:", "mirror:")
SERVER_EVENTS = frozenset(
    {
        "repo:refs_changed",
        "repo:modified",
        "repo:forked",
        "repo:comment:added",
        "repo:comment:edited",
        "repo:comment:deleted",
        "repo:secret_detected",
        "project:modified",
    }
)

# Headers only Bitbucket Cloud sends (Data Center sends X-Request-Id and nothing else of its own).
CLOUD_HEADERS = ("X-Request-UUID", "X-Hook-UUID", "X-Attempt-Number")
CLOUD_USER_AGENT = "bitbucket-webhooks/"
SERVER_DELIVERY_HEADER = "X-Request-Id"


def event_key(headers: Mapping[str, str]) -> str:
    """The `X-Event-Key` header, which both products always send."""
    key = headers.get(EVENT_HEADER, "").strip()
    if not key:
        raise bad_request(f"missing {EVENT_HEADER} header")
    return key


def flavour(headers: Mapping[str, str]) -> Provider:
    """Which product sent this delivery: BITBUCKET_CLOUD or BITBUCKET_SERVER (Data Center)."""
    key = event_key(headers)
    if key in CLOUD_EVENTS or key.startswith(CLOUD_EVENT_PREFIXES):
        return Provider.BITBUCKET_CLOUD
    if key in SERVER_EVENTS or key.startswith(SERVER_EVENT_PREFIXES):
        return Provider.BITBUCKET_SERVER
    # An event key neither list knows (a newer event): the headers decide. Cloud's own
    # headers are asked first because a reverse proxy in front of the gateway
    # (ingress-nginx, for one) may add an X-Request-Id to any request.
    user_agent = headers.get("User-Agent", "").strip().lower()
    if any(headers.get(name, "").strip() for name in CLOUD_HEADERS) or user_agent.startswith(
        CLOUD_USER_AGENT
    ):
        return Provider.BITBUCKET_CLOUD
    if headers.get(SERVER_DELIVERY_HEADER, "").strip():
        return Provider.BITBUCKET_SERVER
    raise bad_request(
        f"cannot tell Bitbucket Cloud from Bitbucket Data Center: {EVENT_HEADER} {key[:64]!r} is "
        f"not a known event and neither X-Request-UUID nor {SERVER_DELIVERY_HEADER} is present"
    )


def verify(headers: Mapping[str, str], body: bytes, secrets: Iterable[bytes]) -> None:
    """Check `X-Hub-Signature: sha256=<hex HMAC-SHA256(secret, body)>` against any of the secrets."""
    verify_hub_signature(headers.get(SIGNATURE_HEADER), body, secrets, SIGNATURE_HEADER)


def header_value(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name, "").strip()
    return value or None


def timestamp(value: object, path: str) -> datetime | None:
    """`payload.parse_time`, also refusing times no calendar holds (epoch ms far out of range)."""
    try:
        return parse_time(value, path)
    except (OverflowError, ValueError, OSError):
        raise bad_request(f"field {path} is out of the range of times") from None


def field_in(data: Mapping[str, Any], prefix: str, path: str, kind: type[T]) -> T:
    """`payload.field` on an object found inside a list, naming the full path when it fails."""
    try:
        return field(data, path, kind)
    except Refusal as exc:
        raise bad_request(exc.reason.replace("field ", f"field {prefix}.", 1)) from None


def optional_in(data: Mapping[str, Any], prefix: str, path: str, kind: type[T]) -> T | None:
    """`payload.optional` on an object found inside a list, naming the full path when it fails."""
    try:
        return optional(data, path, kind)
    except Refusal as exc:
        raise bad_request(exc.reason.replace("field ", f"field {prefix}.", 1)) from None


def object_at(items: list[Any], index: int, path: str) -> dict[str, Any]:
    item = items[index]
    if not isinstance(item, dict):
        raise bad_request(f"field {path}.{index} must be of type object")
    return item


def hint(data: Mapping[str, Any], path: str) -> str | None:
    """A string for a log line (an ignored event's repository): never refuses the delivery."""
    try:
        return optional(data, path, str)
    except Refusal:
        return None
