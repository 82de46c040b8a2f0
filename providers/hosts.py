"""What the worker reads from and writes to the code hosts: one interface over four official SDKs.

The worker asks a host three things: what state a change is in, what a file holds at a commit, and
whether a repository still exists; and it reports back on the change: one comment, edited in place,
and the host's native status for the environment. Each `*_api` module does this through its host's
SDK (PyGithub, python-gitlab, atlassian-python-api). This module holds what they share: the answer
and error types, the HTTP policy that bounds every SDK's retries and timeouts, the `Pacer` that
keeps each host's rate-limit answers, and `build_hosts`.

Only the worker imports this module and the `*_api` modules: the web process never loads an SDK.
The calls are synchronous, as the SDKs are; the worker runs them in a thread.
"""

from __future__ import annotations

import email.utils
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Protocol, Self, TypeVar, cast
from urllib.parse import urlsplit

import requests
from pydantic import BaseModel, ConfigDict
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import ConnectionPool
from urllib3.exceptions import MaxRetryError, ResponseError
from urllib3.response import BaseHTTPResponse
from urllib3.util.retry import Retry

from gateway.events import Provider

if TYPE_CHECKING:
    from providers.host_settings import HostSettings
    from providers.reporting import StatusReport

T = TypeVar("T")

USER_AGENT = "k8s-ee-gateway"
# Answers worth another try: rate limited, or the host (or a proxy before it) failed.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class ChangeState(BaseModel):
    """A pull / merge request as the host reports it now."""

    model_config = ConfigDict(frozen=True)

    state: Literal["open", "closed", "merged"]
    head_sha: str  # always the full SHA
    head_ref: str
    base_ref: str | None
    draft: bool
    updated_at: datetime | None
    title: str | None
    url: str | None


class HostError(Exception):
    """A call to a code host failed. The message is safe to show: it never holds a secret."""


class NotFound(HostError):
    """The change, file or repository does not exist (or is not visible with these credentials)."""


class HostUnavailable(HostError):
    """The host cannot answer now (unreachable, 5xx, rate limited, credentials refused).

    Nothing is known about the change: keep its environment and try again later, no sooner than
    `retry_after` seconds when the host said so (or, after a write whose outcome is unknown, when
    the host module says so: re-run the whole call then, it finds what was already written).
    `rate_limited` is set when the host refused because of a rate limit: it did nothing."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        rate_limited: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.rate_limited = rate_limited


class Host(Protocol):
    provider: Provider

    def change(self, repository: str, number: int) -> ChangeState: ...

    def read_file(self, repository: str, path: str, ref: str) -> str | None:
        """The file's text at `ref`; None when there is no such file there."""
        ...

    def repository_exists(self, repository: str) -> bool:
        """False when the host answers 404; `HostUnavailable` when it cannot answer."""
        ...

    def upsert_comment(
        self, repository: str, number: int, body: str, marker: str, known_id: str | None = None
    ) -> str:
        """Edit the change's comment that holds `marker`, or create it; return the comment's id.

        `known_id` (an id this method returned for the same change) is edited directly; when it is
        gone, every page of comments is searched for the marker, and a comment is created only when
        none holds it. A create is never repeated after an answer that leaves its outcome unknown:
        `HostUnavailable(retry_after=...)` asks for the whole call to be run again later."""
        ...

    def report_status(self, repository: str, number: int, report: StatusReport) -> None:
        """Show the environment's state with the host's own status (deployment, environment,
        commit or build status) at the report's head commit."""
        ...

    def rate_limits(self) -> dict[str, float]:
        """The request budget each credential had left when the host last said so, keyed
        `"{provider}:{credential}"` (never a secret: "token", or a GitHub App installation id)."""
        ...

    def close(self) -> None: ...


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
        self._remaining: dict[str, float] = {}
        self._until: dict[str, float] = {}  # credential key -> time.monotonic() the hold ends

    def budgets(self) -> dict[str, float]:
        with self._lock:
            return {f"{self.provider}:{key}": value for key, value in self._remaining.items()}

    def record(self, key: str, remaining: float, reset_at: float | None = None) -> None:
        """The host's last word on the budget; a spent one holds calls until `reset_at` (epoch s)."""
        with self._lock:
            self._remaining[key] = float(remaining)
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
                self.record(key, remaining, reset)
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


# -- building --------------------------------------------------------------------------------------


def build_hosts(settings: HostSettings) -> dict[Provider, Host]:
    """One client per provider whose credentials are set. An SDK is imported only when it is used."""
    policy = HttpPolicy.from_settings(settings)
    hosts: dict[Provider, Host] = {}
    if settings.github_token or settings.github_app:
        from providers.github_api import GitHubHost

        hosts[Provider.GITHUB] = GitHubHost.from_settings(settings, policy)
    if settings.gitlab_api_token:
        from providers.gitlab_api import GitLabHost

        hosts[Provider.GITLAB] = GitLabHost(settings.gitlab_url, settings.gitlab_api_token, policy)
    if settings.bitbucket_cloud_token:
        from providers.bitbucket_cloud_api import BitbucketCloudHost

        hosts[Provider.BITBUCKET_CLOUD] = BitbucketCloudHost(
            settings.bitbucket_cloud_url,
            settings.bitbucket_cloud_token,
            policy,
            username=settings.bitbucket_cloud_username,
        )
    if settings.bitbucket_server_url and settings.bitbucket_server_token:
        from providers.bitbucket_server_api import BitbucketServerHost

        hosts[Provider.BITBUCKET_SERVER] = BitbucketServerHost(
            settings.bitbucket_server_url, settings.bitbucket_server_token, policy
        )
    return hosts
