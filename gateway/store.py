"""The delivery log and the durable hand-off to the queue, in Redis.

Every delivery, whatever its verdict, leaves an entry; an accepted one also leaves
its (secret-stripped, compressed) headers and body and an arq job, all in the one
Lua script `deliver.lua`, so a delivery is stored and queued in a single round trip.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import lz4.frame
import orjson
from pydantic import BaseModel
from redis.asyncio import Redis

from gateway.batching import ScriptBatcher
from gateway.settings import GatewaySettings
from handlers.pages import Cursor
from handlers.queue import JOB_EXPIRES_MS, WAKE_LUA, encode_event_job, event_job_id, job_key, replay_job_id
from providers.events import LifecycleEvent, Provider
from providers.text import ascii_lower
from providers.verdicts import Verdict

# Headers that authenticate a delivery: never stored, never shown.
SECRET_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "x-gitlab-token",
        "x-hub-signature",
        "x-hub-signature-256",
        "webhook-signature",
    }
)

_SCRIPT = resources.files("gateway").joinpath("deliver.lua").read_text()


class DeliveryEntry(BaseModel):
    """One attempt at a delivery, as the admin API shows it."""

    provider: Provider
    delivery_id: str
    attempt: int = 0
    verdict: Verdict
    status: int
    reason: str | None = None
    repository: str | None = None
    event_type: str | None = None
    event: dict[str, Any] | None = None
    received_at: datetime


class StoredBody(BaseModel):
    headers: dict[str, str]
    body: str


@dataclass(frozen=True, slots=True)
class AcceptResult:
    accepted: bool
    attempt: int
    first_seen: datetime


def entry_json(
    *,
    provider: Provider,
    delivery_id: str,
    verdict: Verdict,
    status: int,
    received_at: datetime,
    reason: str | None = None,
    repository: str | None = None,
    event_type: str | None = None,
    event_json: bytes | None = None,
) -> bytes:
    # Built by hand rather than through DeliveryEntry: this runs for every delivery,
    # and the event is already serialised. Keep "verdict", "status", "reason" adjacent
    # and in this order: deliver.lua rewrites them to record a duplicate.
    return orjson.dumps(
        {
            "provider": provider.value,
            "delivery_id": delivery_id,
            "verdict": verdict,
            "status": status,
            "reason": reason,
            "repository": repository,
            "event_type": event_type,
            "event": orjson.Fragment(event_json) if event_json is not None else None,
            "received_at": received_at,
        }
    )


# LZ4 (frame format): about 10 us for GitHub's 30 KB payload at a ratio near 6; zstd costs
# twice that, zlib four times, on every delivery.


def body_blob(headers: Mapping[str, str], body: bytes) -> bytes:
    """Headers as JSON (which never holds a raw newline), a newline, the raw body; compressed."""
    kept = {k: v for k, v in headers.items() if k.lower() not in SECRET_HEADERS}
    blob: bytes = lz4.frame.compress(orjson.dumps(kept) + b"\n" + body)
    return blob


def read_blob(blob: bytes) -> StoredBody:
    headers, _, body = lz4.frame.decompress(blob).partition(b"\n")
    return StoredBody(headers=orjson.loads(headers), body=body.decode("utf-8", "replace"))


def housekeeping_period(settings: GatewaySettings) -> int:
    """How many writes apart deliver.lua trims its indexes: at most 32, and never so many that
    an index could exceed its bound by 1% or more."""
    web = settings.web
    bounds = [web.delivery_log_max_entries]
    if web.delivery_bodies_max > 0:
        bounds.append(web.delivery_bodies_max)
    return max(1, min(32, min(bounds) // 100))


def lua_string(value: str) -> str:
    """A Lua string literal of `value` (settings written into the script): plain bytes as they
    are, every other byte as a decimal escape, so no setting can end the literal."""
    plain = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:-_./"
    return '"' + "".join(chr(b) if b in plain else f"\\{b:03d}" for b in value.encode()) + '"'


def _us(moment: datetime) -> int:
    # The log's scores: microseconds, so that deliveries received one after the other in the
    # same millisecond still list in the order they came (a double holds them exactly).
    return int(moment.timestamp() * 1_000_000)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


class DeliveryStore:
    def __init__(self, redis: Redis, settings: GatewaySettings) -> None:
        self.redis = redis
        connection = settings.connection
        self.web = web = settings.web
        self.keys = settings.keys
        script = _SCRIPT
        for name, value in {
            **{stem: lua_string(key) for stem, key in self.keys.lua_stems().items()},
            "job_stem": lua_string(job_key("")),
            "retention": str(connection.retention_ms),
            "max_entries": str(web.delivery_log_max_entries),
            "queue": lua_string(connection.queue_name),
            "wake_key": lua_string(self.keys.queue_wake(connection.queue_name)),
            "wake_lua": WAKE_LUA,
            "job_expires": str(JOB_EXPIRES_MS),
            "max_bodies": str(web.delivery_bodies_max),
            "period": str(housekeeping_period(settings)),
        }.items():
            script = script.replace("{" + name + "}", value)
        # Each call's reply, or past the Redis deadline (kept by its batch) redis-py's
        # TimeoutError, as Redis being unavailable.
        self._deliver = ScriptBatcher(redis, script, connection.redis_timeout)

    @staticmethod
    def _common_args(
        provider: Provider, delivery_id: str, now: datetime, repository: str | None
    ) -> list[bytes]:
        # Encoded here, as the script's ARGV: the batcher writes bytes as they are.
        return [provider.value.encode(), delivery_id.encode(), b"%d" % _us(now), (repository or "").encode()]

    async def accept(
        self,
        event: LifecycleEvent,
        event_json: bytes,
        headers: Mapping[str, str],
        body: bytes,
    ) -> AcceptResult:
        """Store and queue an accepted event, unless its delivery id was seen before."""
        entry = entry_json(
            provider=event.provider,
            delivery_id=event.delivery_id,
            verdict="accepted",
            status=202,
            received_at=event.received_at,
            repository=event.repository,
            event_type=event.type.value,
            event_json=event_json,
        )
        job = encode_event_job(event_json, _ms(event.received_at))
        blob = body_blob(headers, body) if self.web.delivery_bodies_max > 0 else b""
        verdict, attempt, first = await self._deliver(
            [
                *self._common_args(event.provider, event.delivery_id, event.received_at, event.repository),
                b"accept",
                entry,
                event_job_id(event).encode(),
                job,
                blob,
            ]
        )
        return AcceptResult(verdict == 1, int(attempt), datetime.fromtimestamp(int(first) / 1000, tz=UTC))

    async def replay(self, event: LifecycleEvent, now: datetime, replay: str) -> int:
        """Queue an accepted delivery's event again, as a new attempt in its log; returns the attempt."""
        event_json = event.__pydantic_serializer__.to_json(event)
        entry = entry_json(
            provider=event.provider,
            delivery_id=event.delivery_id,
            verdict="accepted",
            status=202,
            received_at=now,
            reason="replayed through the admin API",
            repository=event.repository,
            event_type=event.type.value,
            event_json=event_json,
        )
        job = encode_event_job(event_json, _ms(now))
        _, attempt, _ = await self._deliver(
            [
                *self._common_args(event.provider, event.delivery_id, now, event.repository),
                b"replay",
                entry,
                replay_job_id(event, replay).encode(),
                job,
            ]
        )
        return int(attempt)

    async def log(
        self, provider: Provider, delivery_id: str, now: datetime, repository: str | None, entry: bytes
    ) -> int:
        """Record a delivery that was not accepted (ignored, pong, rejected)."""
        _, attempt, _ = await self._deliver(
            [*self._common_args(provider, delivery_id, now, repository), b"log", entry]
        )
        return int(attempt)

    # -- reading the log (admin API) --

    async def recent(
        self,
        *,
        provider: Provider | None = None,
        repository: str | None = None,
        verdict: Verdict | None = None,
        limit: int = 50,
        cursor: Cursor | None = None,
        scan_limit: int = 5000,
    ) -> tuple[list[DeliveryEntry], Cursor | None]:
        """Newest first. Returns the page and the cursor of the next one (None at the end)."""
        if repository:
            index = self.keys.deliveries_by_repository(repository)
        elif provider:
            index = self.keys.deliveries_by_provider(provider.value)
        else:
            index = self.keys.deliveries()
        top: str | float = "+inf"
        after_member: bytes | None = None
        if cursor is not None:
            top, after_member = cursor.score, cursor.member
        page: list[DeliveryEntry] = []
        scanned = 0
        batch = max(limit * 2, 50)
        while len(page) < limit and scanned < scan_limit:
            rows: list[tuple[bytes, float]] = await self.redis.zrevrangebyscore(
                index, top, "-inf", start=0, num=batch, withscores=True
            )
            # Members that share the top score with the cursor were returned on an earlier page.
            if after_member is not None:
                rows = [(m, s) for m, s in rows if not (s == top and m >= after_member)]
            if not rows:
                return page, None
            values = await self.redis.mget([self.keys.delivery(m.decode()) for m, _ in rows])
            for (member, score), raw in zip(rows, values, strict=True):
                scanned += 1
                top, after_member = score, member
                if raw is None:
                    continue
                entry = self._entry(member.decode(), raw)
                if (provider and entry.provider != provider) or (verdict and entry.verdict != verdict):
                    continue
                if repository and ascii_lower(entry.repository or "") != ascii_lower(repository):
                    continue
                page.append(entry)
                if len(page) == limit:
                    break
        if after_member is None or isinstance(top, str):
            return page, None
        return page, Cursor(top, after_member)

    async def get(self, delivery_id: str, provider: Provider | None = None) -> list[dict[str, Any]]:
        """Every attempt stored under this delivery id, oldest first, with the stored body if any."""
        providers = [provider] if provider else list(Provider)
        found: list[dict[str, Any]] = []
        for p in providers:
            ident = f"{p.value}:{delivery_id}"
            count = await self.redis.get(self.keys.attempts(ident))
            if not count:
                continue
            keys = [self.keys.delivery(f"{ident}:{n}") for n in range(1, int(count) + 1)]
            values = await self.redis.mget(keys)
            blob = await self.redis.get(self.keys.body(ident))
            stored = read_blob(blob) if blob else None
            for key, raw in zip(keys, values, strict=True):
                if raw is None:
                    continue
                entry = self._entry(key.removeprefix(self.keys.delivery("")), raw).model_dump(mode="json")
                if stored is not None and entry["verdict"] == "accepted":
                    entry["request"] = stored.model_dump()
                found.append(entry)
        return found

    @staticmethod
    def _entry(member: str, raw: bytes) -> DeliveryEntry:
        entry = DeliveryEntry.model_validate_json(raw)
        entry.attempt = int(member.rsplit(":", 1)[1])
        return entry
