"""The HTTP policy every SDK client follows, and the host errors built from what requests and urllib3 raise."""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, cast
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import ConnectionPool
from urllib3.exceptions import MaxRetryError, ResponseError
from urllib3.response import BaseHTTPResponse
from urllib3.util.retry import Retry

from providers.hosts.base import HostError, HostUnavailable, NotFound

if TYPE_CHECKING:
    from providers.hosts.settings import HostSettings

USER_AGENT = "k8s-ee-gateway"
# Answers worth another try: rate limited, or the host (or a proxy before it) failed.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})

# -- HTTP policy -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpPolicy:
    """How long one request may take and how often a failed one is tried again, for every SDK."""

    timeout: float = 10.0
    retries: int = 2
    backoff: float = 0.5
    max_wait: float = 10.0
    # After a write whose outcome is unknown (no answer, or a 5xx), the caller is asked to run the
    # whole call again after this many seconds, rather than having the write repeated blindly.
    rerun_after: float = 30.0

    @classmethod
    def from_settings(cls, settings: HostSettings) -> HttpPolicy:
        return cls(
            timeout=settings.host_timeout,
            retries=settings.host_retries,
            backoff=settings.host_retry_backoff,
            max_wait=settings.host_max_retry_wait,
            rerun_after=settings.host_rerun_after,
        )

    @property
    def timeout_seconds(self) -> int:
        # PyGithub and atlassian-python-api take whole seconds.
        return max(1, math.ceil(self.timeout))

    def retry_options(self) -> dict[str, Any]:
        return {
            "total": self.retries,
            "connect": self.retries,
            "read": self.retries,
            "status": self.retries,
            "other": 0,
            "backoff_factor": self.backoff,
            "backoff_max": self.max_wait,
            "status_forcelist": sorted(RETRY_STATUSES),
            # The last answer goes back to the SDK, which turns it into its own error with the
            # status and body: more useful than urllib3's "too many retries".
            "raise_on_status": False,
            "max_wait": self.max_wait,
        }

    def retry(self) -> Retry:
        # Only idempotent methods are retried after a 5xx or a broken read (urllib3's default set):
        # a comment posted twice is worse than one reported late.
        return WaitCapped(**self.retry_options())

    def session(self) -> requests.Session:
        """A requests session whose connections follow this policy's retries."""
        session = requests.Session()
        adapter = HTTPAdapter(max_retries=self.retry())
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        session.headers["User-Agent"] = USER_AGENT
        return session


class WaitCappedMixin:
    """Give up at once when a host asks to wait (Retry-After) longer than `max_wait` seconds.

    urllib3 would otherwise sleep for as long as the host says (an hour, for a spent rate limit),
    holding a worker. Giving up hands the answer back to the SDK, and so `HostUnavailable` with
    the wait to the worker, which can schedule the retry itself."""

    max_wait: float

    def __init__(self, *, max_wait: float = 10.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_wait = max_wait

    def new(self, **kwargs: Any) -> Self:
        kwargs.setdefault("max_wait", self.max_wait)
        return cast(Self, super().new(**kwargs))  # type: ignore[misc]

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: BaseHTTPResponse | None = None,
        error: Exception | None = None,
        _pool: ConnectionPool | None = None,
        _stacktrace: TracebackType | None = None,
    ) -> Self:
        if response is not None:
            wait = retry_after(response.headers, header_only=True)
            if wait is not None and wait > self.max_wait:
                reason = ResponseError(f"the host asked to wait {wait:.0f}s")
                raise MaxRetryError(cast(ConnectionPool, _pool), url, reason)
        return cast(
            Self,
            super().increment(method, url, response, error, _pool, _stacktrace),  # type: ignore[misc]
        )


class WaitCapped(WaitCappedMixin, Retry):
    pass


def retry_after(headers: Mapping[str, str], *, header_only: bool = False) -> float | None:
    """Seconds the host asked us to wait: `Retry-After` (seconds or an HTTP date), else a spent rate
    limit's reset time (GitHub's `X-RateLimit-Reset`, GitLab's `RateLimit-Reset`, epoch seconds)."""
    headers = {name.lower(): value for name, value in headers.items()}
    value = headers.get("retry-after")
    if value:
        value = value.strip()
        if value.isdigit():
            return float(value)
        parsed = email.utils.parsedate_tz(value)
        if parsed is not None:
            return max(0.0, email.utils.mktime_tz(parsed) - time.time())
        return None
    if header_only:
        return None
    for remaining, reset in (
        ("x-ratelimit-remaining", "x-ratelimit-reset"),
        ("ratelimit-remaining", "ratelimit-reset"),
    ):
        if headers.get(remaining) == "0" and (headers.get(reset) or "").isdigit():
            return max(0.0, float(headers[reset]) - time.time())
    return None


# -- errors ----------------------------------------------------------------------------------------


def origin(url: str) -> str:
    """`scheme://host[:port]` of a URL: enough to name a host in a message, and never a credential."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}"


def redact(text: str, secrets: Iterable[str], limit: int = 300) -> str:
    """A host's own error text, cut short, with any of our secrets blanked out should it echo one."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def status_error(
    host: str,
    status: int,
    detail: str,
    what: str,
    *,
    headers: Mapping[str, str] | None = None,
    credentials: str = "",
    action: str = "reading",
) -> HostError:
    """The `HostError` for an HTTP error answer from `host` about `what` (`action` says what we
    were doing with it: "reading", "writing")."""
    answer = f"{status} {detail}".strip()
    if status == 404:
        return NotFound(f"{host}: {what} not found ({answer})")
    if status in (401, 403) and not (headers and retry_after(headers) is not None):
        hint = f"; check {credentials}" if credentials else ""
        refused = "rejected the credentials" if status == 401 else "refused access"
        return HostUnavailable(f"{host} {refused} {action} {what} ({answer}){hint}", status=status)
    if status in (403, 429) or status >= 500:
        wait = retry_after(headers or {})
        return HostUnavailable(
            f"{host} could not answer for {what} ({answer})",
            status=status,
            retry_after=wait,
            # A 403 gets here only with a wait attached: GitHub's way of saying "rate limited".
            rate_limited=status in (403, 429),
        )
    return HostError(f"{host}: {action} {what} failed ({answer})")


def unreachable(host: str, url: str, error: BaseException) -> HostUnavailable:
    return HostUnavailable(f"cannot reach {host} at {origin(url)}: {type(error).__name__}")


def requests_error(
    host: str,
    url: str,
    exc: requests.RequestException,
    what: str,
    secrets: Iterable[str],
    credentials: str,
    action: str = "reading",
) -> HostError:
    """The `HostError` for what requests raised: an error answer (`HTTPError`) or no answer at all."""
    response = exc.response if isinstance(exc, requests.HTTPError) else None
    if response is None:
        return unreachable(host, url, exc)
    detail = redact(str(exc), secrets)
    return status_error(
        host,
        response.status_code,
        detail,
        what,
        headers=response.headers,
        credentials=credentials,
        action=action,
    )


def decode_text(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise HostError(f"{what} is not UTF-8 text") from None


def owner_and_name(repository: str, kind: str = "owner/repo") -> tuple[str, str]:
    parts = repository.split("/")
    if len(parts) != 2 or not all(parts):
        raise HostError(f"{repository!r} is not {kind}")
    return parts[0], parts[1]
