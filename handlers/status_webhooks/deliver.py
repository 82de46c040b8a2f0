"""One status webhook POST: sign, resolve and check once, connect to the checked address.

httpcore (under httpx) opens connections through a "network backend". Ours is
given the addresses destination.py checked and connects only to them, while
everything above it still uses the URL's host: the Host header, TLS SNI and the
certificate's hostname check. So a DNS answer that changes between the check and
the connection (rebinding) cannot steer the request anywhere else. httpcore is
used directly, with no proxy (nothing is read from HTTP_PROXY), no redirects, and
no retries of its own: the queue decides about retries.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import httpcore
import httpx

from handlers.status_webhooks.destination import Address, Refused, Resolver, Unresolvable, checked_addresses
from providers.signing import standard_webhook_signature

# The providers' own budget for a webhook answer (SPEC 7); ours for the whole attempt.
TIMEOUT_S = 10.0
# What a record keeps of the receiver's answer, to show why it refused.
EXCERPT_BYTES = 512
USER_AGENT = "k8s-ee-gateway (status webhooks)"


@dataclass(frozen=True, slots=True)
class SendResult:
    status: int | None = None
    error: str | None = None
    excerpt: str | None = None
    # Retrying cannot help: the destination is refused, or the receiver answered 410 Gone.
    permanent: bool = False

    @property
    def delivered(self) -> bool:
        return self.error is None


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """Connects `host` to the given addresses (in order, until one answers), and nothing else."""

    def __init__(self, host: str, addresses: Sequence[Address]) -> None:
        self.host = host
        self.addresses = list(addresses)
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if host != self.host:
            raise httpcore.ConnectError(f"{host} is not the checked destination")
        failure: httpcore.ConnectError | httpcore.ConnectTimeout | None = None
        for address in self.addresses:
            try:
                return await self._inner.connect_tcp(
                    str(address),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None  # checked_addresses never returns an empty list
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("status webhooks go over TCP only")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def signed_headers(
    url: httpx.URL, key: bytes, msg_id: str, timestamp: int, body: bytes
) -> list[tuple[str, str]]:
    return [
        # Set here rather than by httpcore, which writes an IPv6 host without its brackets.
        ("Host", url.netloc.decode("ascii")),
        ("User-Agent", USER_AGENT),
        ("Content-Type", "application/json"),
        ("webhook-id", msg_id),
        ("webhook-timestamp", str(timestamp)),
        ("webhook-signature", standard_webhook_signature(key, msg_id, str(timestamp), body)),
    ]


def _judge(status: int, excerpt: str) -> SendResult:
    if 200 <= status < 300:
        return SendResult(status=status, excerpt=excerpt)
    if status == 410:
        return SendResult(
            status, "answered 410 Gone: the receiver asks for no more deliveries", excerpt, True
        )
    if 300 <= status < 400:
        return SendResult(
            status, f"answered {status}; redirects are not followed: configure the final URL", excerpt
        )
    return SendResult(status, f"answered {status}", excerpt)


async def _post(
    url: httpx.URL,
    addresses: list[Address],
    headers: list[tuple[str, str]],
    body: bytes,
    timeout: float,
    tls: ssl.SSLContext,
) -> tuple[int, str]:
    host = url.raw_host.decode("ascii")
    target = httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path)
    limits = {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}
    async with (
        httpcore.AsyncConnectionPool(
            ssl_context=tls, network_backend=PinnedBackend(host, addresses), max_connections=1, retries=0
        ) as pool,
        pool.stream(
            "POST", target, headers=headers, content=body, extensions={"timeout": limits}
        ) as response,
    ):
        kept = b""
        # Only the start of the answer: a receiver may send a page, or never stop.
        async for chunk in response.aiter_stream():
            kept += chunk
            if len(kept) >= EXCERPT_BYTES:
                break
        return response.status, kept[:EXCERPT_BYTES].decode("utf-8", "replace")


async def send(
    url: str,
    key: bytes,
    msg_id: str,
    timestamp: int,
    body: bytes,
    *,
    allow_private: bool,
    resolver: Resolver,
    timeout: float = TIMEOUT_S,
    tls: ssl.SSLContext | None = None,
) -> SendResult:
    """POST `body` signed with `key` (the subscriber's secret, as configured). Never raises for the network."""
    parsed = httpx.URL(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    headers = signed_headers(parsed, key, msg_id, timestamp, body)
    try:
        # One budget for lookup, connect, send and answer, as a receiver's timeout would be.
        async with asyncio.timeout(timeout):
            addresses = await checked_addresses(
                parsed.raw_host.decode("ascii"), port, allow_private=allow_private, resolver=resolver
            )
            status, excerpt = await _post(
                parsed, addresses, headers, body, timeout, tls or httpcore.default_ssl_context()
            )
    except Refused as exc:
        return SendResult(error=f"refused: {exc}", permanent=True)
    except Unresolvable as exc:
        return SendResult(error=str(exc))
    except (TimeoutError, httpcore.TimeoutException):
        return SendResult(error=f"no answer within {timeout:g} s")
    except httpcore.ConnectError as exc:
        return SendResult(error=f"cannot connect: {exc or type(exc).__name__}")
    except (httpcore.NetworkError, httpcore.ProtocolError) as exc:
        return SendResult(error=f"{type(exc).__name__}: {exc}")
    return _judge(status, excerpt)
