"""What the admin API answers about status webhook deliveries (gateway/api.py adds the guard).

GET /api/v1/status-deliveries?state=pending|delivered|dead&limit=50&cursor=...  newest first
GET /api/v1/status-deliveries/{id}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast, get_args

from redis.asyncio import Redis

from handlers.keys import Keys
from handlers.pages import BadParameter, cursor_param, limit_param
from handlers.status_webhooks.store import RETENTION_MS, DeliveryRecords, DeliveryState

Answer = tuple[int, dict[str, Any]]
STATES: tuple[str, ...] = get_args(DeliveryState)


async def list_deliveries(redis: Redis, keys: Keys, query: Mapping[str, str]) -> Answer:
    state = query.get("state") or None
    if state is not None and state not in STATES:
        return 400, {"error": f"state must be one of {', '.join(STATES)}"}
    try:
        limit, cursor = limit_param(query), cursor_param(query)
    except BadParameter as exc:
        return 400, {"error": str(exc)}
    page, after = await DeliveryRecords(redis, keys).page(
        state=cast(DeliveryState | None, state),  # checked against STATES above
        limit=limit,
        cursor=cursor,
    )
    return 200, {
        "items": [record.shown() for record in page],
        "next_cursor": str(after) if after is not None else None,
    }


async def get_delivery(redis: Redis, keys: Keys, delivery_id: str) -> Answer:
    record = await DeliveryRecords(redis, keys).get(delivery_id)
    if record is None:
        return 404, {
            "error": f"no status webhook delivery {delivery_id} (records are kept for {RETENTION_MS // 86_400_000} days)"
        }
    return 200, record.shown()
