"""One Kubernetes API request through the official client: timed out, classified, retried.

The client is synchronous, so each request runs in a thread. Its own urllib3 retries are
switched off: a retry is then always ours, bounded by our policy, and visible as one more
request to whoever counts them. Every failure becomes a TransientClusterError or a
PermanentClusterError whose message is the API's own (`Status.message`), prefixed with
what was being done, and stripped of any secret value it might quote.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import urllib3
from kubernetes.client import ApiClient, ApiException, rest

from handlers.cluster import (
    Cause,
    ClusterError,
    NamespaceTerminating,
    PermanentClusterError,
    TransientClusterError,
)
from handlers.cluster.resources import redact
from handlers.cluster.retry import RetryPolicy, with_retries
from providers.hosts.http import USER_AGENT

JSON = "application/json"
APPLY_PATCH = "application/apply-patch+yaml"
# (connect, read) seconds; the odd connect timeout is the usual advice (just over a TCP
# retransmission window of 3 s).
DEFAULT_TIMEOUT: tuple[float, float] = (3.05, 10.0)

# Answers a second try can change: the server was overloaded, restarting, or raced us.
_TRANSIENT_STATUSES = frozenset({408, 409, 429})


# Concurrent requests to the API server, and connections kept open to it.
POOL_SIZE = 32


class Answer(NamedTuple):
    status: int
    body: dict[str, Any]


class Transport:
    def __init__(
        self,
        api_client: ApiClient,
        *,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._api = api_client
        self._timeout = timeout
        self._retry = retry or RetryPolicy()
        # The API server's audit log names the gateway (and the tests tell its requests apart).
        api_client.user_agent = USER_AGENT
        _own_pool(api_client)
        # The client is synchronous: its calls run on threads of their own, as many as the
        # connection pool holds, so that many environments and objects go out at once.
        self._threads = ThreadPoolExecutor(max_workers=POOL_SIZE, thread_name_prefix="k8s-api")

    async def request(
        self,
        method: str,
        path: str,
        *,
        action: str,
        query: Sequence[tuple[str, str]] = (),
        body: Any = None,
        content_type: str = JSON,
        accept: Collection[int] = (),
        secrets: list[str] | None = None,
    ) -> Answer:
        """Send one request, retrying transient failures under the policy.

        `action` names what is being done ("apply Deployment/x") for error messages. Statuses in
        `accept` are answered rather than raised (a 404 that means "already gone").
        """

        async def attempt() -> Answer:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(
                self._threads,
                self._send,
                method,
                path,
                action,
                query,
                body,
                content_type,
                accept,
                secrets or [],
            )

        return await with_retries(attempt, self._retry)

    def close(self) -> None:
        self._threads.shutdown(wait=False)
        self._api.close()  # type: ignore[no-untyped-call]

    def _send(
        self,
        method: str,
        path: str,
        action: str,
        query: Sequence[tuple[str, str]],
        body: Any,
        content_type: str,
        accept: Collection[int],
        secrets: list[str],
    ) -> Answer:
        request = self._api.param_serialize(
            method,
            path,
            query_params=list(query),
            header_params={"Content-Type": content_type, "Accept": JSON},
            body=body,
            # Without it the client sends no bearer token: the generated API methods name it.
            auth_settings=["BearerToken"],
        )
        try:
            response = self._api.call_api(*request, _request_timeout=self._timeout)
            raw: bytes = response.read()  # type: ignore[no-untyped-call]
        except ApiException as error:
            # Raised by the client itself (status 0): a TLS failure, or a request it cannot build.
            reason = str(error.reason or type(error).__name__).splitlines()[0]
            raise PermanentClusterError(f"{action}: cannot talk to the Kubernetes API: {reason}") from error
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise TransientClusterError(
                f"{action}: the Kubernetes API did not answer ({_describe(error)})"
            ) from error
        status = int(response.status)
        payload = _decode(raw)
        if 200 <= status < 300 or status in accept:
            return Answer(status, payload)
        raise _failure(status, payload, raw, response.headers.get("Retry-After"), action, secrets)


def _own_pool(api_client: ApiClient) -> None:
    """Rebuild the client's transport with urllib3's retries off and a pool of POOL_SIZE.

    By default urllib3 repeats a GET or DELETE that timed out or lost its connection, unseen
    and unbounded by our policy. And the client's pool holds cpu_count * 5 connections by
    default, fewer than our threads: past it urllib3 opens a connection per request and throws
    it away ("Connection pool is full, discarding connection"). The pool manager reads both
    once, when it is built, so the transport is rebuilt from the (now changed) configuration
    unless the built one already has both; this cluster owns its client. The two are checked
    apart: a configuration with retries already off (as `from_environment` makes it) still
    needs its pool sized.
    """
    configuration = api_client.configuration
    built = api_client.rest_client.pool_manager.connection_pool_kw
    if _retries_off(built.get("retries")) and built.get("maxsize") == POOL_SIZE:
        return
    configuration.retries = False
    configuration.connection_pool_maxsize = POOL_SIZE
    api_client.rest_client.pool_manager.clear()
    api_client.rest_client = rest.RESTClientObject(configuration)


def _retries_off(retries: object) -> bool:
    # urllib3 keeps `False` as a Retry that allows none.
    return retries is False or (isinstance(retries, urllib3.Retry) and retries.total is False)


def _decode(raw: bytes) -> dict[str, Any]:
    try:
        decoded = json.loads(raw) if raw else {}
    except (ValueError, UnicodeDecodeError):
        return {}
    return decoded if isinstance(decoded, dict) else {}


def _failure(
    status: int,
    payload: dict[str, Any],
    raw: bytes,
    retry_after: str | None,
    action: str,
    secrets: list[str],
) -> ClusterError:
    message = payload.get("message") if payload.get("kind") == "Status" else None
    if not isinstance(message, str) or not message:
        # Not a Status (a proxy in front of the API, say): the start of the body, if text.
        text = raw.decode("utf-8", errors="replace").strip()[:200]
        message = f"HTTP {status}" + (f": {text}" if text else "")
    reason = payload.get("reason") if isinstance(payload.get("reason"), str) else None
    shown = redact(f"{action}: {message}", secrets)
    causes = _causes(payload, secrets)
    if status == 403 and any(cause.reason == "NamespaceTerminating" for cause in causes):
        # NamespaceLifecycle admission: matched by its cause, never by the message's words.
        return NamespaceTerminating(shown, status=status, reason=reason, causes=causes)
    if status >= 500 or status in _TRANSIENT_STATUSES:
        return TransientClusterError(
            shown, status=status, reason=reason, retry_after=_seconds(retry_after), causes=causes
        )
    return PermanentClusterError(shown, status=status, reason=reason, causes=causes)


def _causes(payload: dict[str, Any], secrets: list[str]) -> tuple[Cause, ...]:
    details = payload.get("details") if payload.get("kind") == "Status" else None
    listed = details.get("causes") if isinstance(details, dict) else None
    if not isinstance(listed, list):
        return ()
    return tuple(
        Cause(
            reason=str(cause.get("reason") or ""),
            message=redact(str(cause.get("message") or ""), secrets),
            field=str(cause.get("field") or ""),
        )
        for cause in listed
        if isinstance(cause, dict)
    )


def _seconds(value: str | None) -> float | None:
    """Retry-After in seconds; the HTTP-date form is not used by the API server."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def _describe(error: BaseException) -> str:
    # NewConnectionError is a ConnectTimeoutError too, for compatibility: ask about it first.
    if isinstance(error, urllib3.exceptions.NewConnectionError):
        return "connection refused or unreachable"
    if isinstance(error, urllib3.exceptions.TimeoutError):
        return f"timed out: {type(error).__name__}"
    return type(error).__name__
