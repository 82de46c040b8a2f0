"""The Redis client of either process, from the connection settings.

One address (`K8S_EE_REDIS_URL`), or the master that Redis Sentinel names
(`K8S_EE_REDIS_SENTINELS`, `K8S_EE_REDIS_SENTINEL_MASTER`). With Sentinel, every new
connection asks the sentinels where the master is, and a connection to a server that
is no longer the master (after a failover it answers READONLY) is dropped, so the next
command goes to the new one. The gateway's client, its batched delivery script
(gateway/batching.py, on the pool's own connections) and arq's pool all come from here.
"""

from __future__ import annotations

from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.asyncio.connection import ConnectionPool, SSLConnection, parse_url
from redis.asyncio.sentinel import Sentinel

from handlers.connection import ConnectionSettings

R = TypeVar("R", bound=Redis)


def redis_client(connection: ConnectionSettings, redis_class: type[R] = Redis, **options: Any) -> R:  # type: ignore[assignment]
    """A client of `redis_class` (arq's `ArqRedis` for the worker); `options` go to every connection."""
    url = parse_url(connection.redis_url)
    if connection.redis_password is not None:
        url["password"] = connection.redis_password.get_secret_value()
    if not connection.redis_sentinels:
        # Not `from_url`: its URL would win over the password given apart.
        return redis_class.from_pool(ConnectionPool(**{**url, **options}))  # type: ignore[return-value]
    tls = url.pop("connection_class", None) is SSLConnection
    url.pop("host", None)
    url.pop("port", None)
    sentinel_options: dict[str, Any] = {k: v for k, v in options.items() if k.startswith("socket_")}
    if connection.redis_sentinel_password is not None:
        sentinel_options["password"] = connection.redis_sentinel_password.get_secret_value()
    if tls:
        sentinel_options["ssl"] = True
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        connection.sentinel_addresses, sentinel_kwargs=sentinel_options, ssl=tls, **url, **options
    )
    client: R = sentinel.master_for(connection.redis_sentinel_master, redis_class=redis_class)
    return client
