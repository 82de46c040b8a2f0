"""Status webhook delivery records in Redis: one per (event, subscriber), newest first.

Keys (under the configured prefix):
  status-webhook:<id>             the record (JSON), expiring RETENTION_MS after its last write
  status-webhooks                 sorted set of every id, scored by creation time (ms)
  status-webhooks:<state>         the same, per delivery state (pending, delivered, dead)
Bounded twice: index entries older than the retention are dropped, and past
MAX_RECORDS the oldest records go. A record holds the body it signs and a
redacted URL; never a secret (the secret is looked up in the configuration at
each attempt, by the subscriber key).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel
from redis.asyncio import Redis

from handlers.keys import Keys
from handlers.pages import Cursor
from providers.states import State

DeliveryState = Literal["pending", "delivered", "dead"]

RETENTION_MS = 7 * 86_400_000
MAX_RECORDS = 10_000


class StatusDelivery(BaseModel):
    id: str
    event_id: str
    # Subscriber.key: which configured subscriber, without its URL or secret.
    subscriber: str
    # Without its query string (see config.redact_url).
    url: str
    repository: str
    environment: str
    environment_state: State
    state: DeliveryState = "pending"
    attempts: int = 0
    created_at: datetime
    first_attempt_at: datetime | None = None
    last_attempt_at: datetime | None = None
    next_attempt_at: datetime | None = None
    finished_at: datetime | None = None
    last_status: int | None = None
    last_error: str | None = None
    # The start of the receiver's last answer (see deliver.EXCERPT_BYTES).
    last_response: str | None = None
    # The exact JSON that is signed and sent, the same on every attempt.
    body: str

    def shown(self) -> dict[str, Any]:
        """As the admin API shows it: the body as JSON rather than as a string."""
        shown = self.model_dump(mode="json", exclude={"body"})
        shown["payload"] = json.loads(self.body)
        return shown


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


class DeliveryRecords:
    def __init__(
        self, redis: Redis, keys: Keys, *, retention_ms: int = RETENTION_MS, max_records: int = MAX_RECORDS
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.retention_ms = retention_ms
        self.max_records = max_records

    def _key(self, delivery_id: str) -> str:
        return self.keys.status_delivery(delivery_id)

    def _index(self, state: DeliveryState | None = None) -> str:
        return self.keys.status_deliveries(state)

    async def get(self, delivery_id: str) -> StatusDelivery | None:
        raw = await self.redis.get(self._key(delivery_id))
        return StatusDelivery.model_validate_json(raw) if raw else None

    async def create(self, record: StatusDelivery) -> bool:
        """Store a new record; False (and nothing written) when one with this id exists."""
        if not await self.redis.set(
            self._key(record.id), record.model_dump_json(), nx=True, px=self.retention_ms
        ):
            return False
        score = _ms(record.created_at)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zadd(self._index(), {record.id: score})
            pipe.zadd(self._index(record.state), {record.id: score})
            for state in (None, "pending", "delivered", "dead"):
                pipe.zremrangebyscore(self._index(state), "-inf", score - self.retention_ms)
            await pipe.execute()
        await self._bound()
        return True

    async def save(self, record: StatusDelivery, was: DeliveryState) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self._key(record.id), record.model_dump_json(), px=self.retention_ms)
            if record.state != was:
                pipe.zrem(self._index(was), record.id)
                pipe.zadd(self._index(record.state), {record.id: _ms(record.created_at)})
            await pipe.execute()

    async def _bound(self) -> None:
        excess = int(await self.redis.zcard(self._index())) - self.max_records
        if excess <= 0:
            return
        dropped = [member for member, _ in await self.redis.zpopmin(self._index(), excess)]
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.delete(*[self._key(m.decode()) for m in dropped])
            for state in ("pending", "delivered", "dead"):
                pipe.zrem(self._index(state), *dropped)
            await pipe.execute()

    async def page(
        self, *, state: DeliveryState | None = None, limit: int = 50, cursor: Cursor | None = None
    ) -> tuple[list[StatusDelivery], Cursor | None]:
        """Newest first. Returns the page and the cursor of the next one (None at the end)."""
        top: str | float = "+inf"
        after: bytes | None = None
        if cursor is not None:
            top, after = cursor.score, cursor.member
        found: list[StatusDelivery] = []
        while len(found) < limit:
            rows: list[tuple[bytes, float]] = await self.redis.zrevrangebyscore(
                self._index(state), top, "-inf", start=0, num=max(limit * 2, 50), withscores=True
            )
            # Members that share the top score with the cursor were on an earlier page.
            if after is not None:
                rows = [(m, s) for m, s in rows if not (s == top and m >= after)]
            if not rows:
                return found, None
            values = await self.redis.mget([self._key(m.decode()) for m, _ in rows])
            for (member, score), raw in zip(rows, values, strict=True):
                top, after = score, member
                if raw is None:
                    continue  # expired; its index entry goes with the next trim
                record = StatusDelivery.model_validate_json(raw)
                # An index entry can trail its record's state by a moment (written in one transaction,
                # read in two steps): the record's own state decides.
                if state is not None and record.state != state:
                    continue
                found.append(record)
                if len(found) == limit:
                    break
        return found, (Cursor(top, after) if after is not None and not isinstance(top, str) else None)
