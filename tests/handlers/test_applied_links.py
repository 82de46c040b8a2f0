"""Where a delivery ended up: the first reconcile that dealt with it stays its answer, in real Redis."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

from handlers.keys import Keys
from handlers.status import AppliedBy, StatusStore
from providers.events import Provider

NOW = datetime(2026, 11, 1, tzinfo=UTC)


def test_the_first_answer_stays_a_queued_one_is_replaced_and_a_replay_records_anew(
    redis_client: Any, redis_server: Any
) -> None:
    async def main() -> list[Any]:
        redis = Redis.from_url(redis_server.url)
        store = StatusStore(redis, Keys("k8s-ee:"), 3_600_000, 3_600_000)
        seen = []
        try:
            queued = AppliedBy(reconcile="g:a/b:1#1", state="queued", note="waiting for a slot", at=NOW)
            await store.link(Provider.GITHUB, ["d1", "d2"], queued)
            seen.append(await store.applied(Provider.GITHUB, "d1"))
            await store.link(
                Provider.GITHUB, ["d1"], AppliedBy(reconcile="g:a/b:1#2", state="deployed", at=NOW)
            )
            # A later reconcile lists the same deliveries again: their answer stays.
            await store.link(
                Provider.GITHUB, ["d1", "d2"], AppliedBy(reconcile="g:a/b:1#3", state="hibernated", at=NOW)
            )
            seen += [await store.applied(Provider.GITHUB, "d1"), await store.applied(Provider.GITHUB, "d2")]
            await store.forget_applied(Provider.GITHUB, "d1")
            await store.link(
                Provider.GITHUB, ["d1"], AppliedBy(reconcile="g:a/b:1#4", state="deployed", at=NOW)
            )
            seen.append(await store.applied(Provider.GITHUB, "d1"))
            # A chat command's answer comes first; the reconcile it asked for is the answer.
            await store.link(Provider.GITHUB, ["d3"], AppliedBy(note="`/preserve`: preserved", at=NOW))
            await store.link(Provider.GITHUB, ["d3"], AppliedBy(note="a second note", at=NOW))
            seen.append(await store.applied(Provider.GITHUB, "d3"))
            await store.link(
                Provider.GITHUB, ["d3"], AppliedBy(reconcile="g:a/b:1#5", state="deployed", at=NOW)
            )
            seen.append(await store.applied(Provider.GITHUB, "d3"))
        finally:
            await redis.aclose()
        return seen

    first, kept, replaced_queued, after_replay, noted, applied = asyncio.run(main())
    assert first["state"] == "queued"
    assert kept["reconcile"] == "g:a/b:1#2" and kept["state"] == "deployed"
    assert replaced_queued["reconcile"] == "g:a/b:1#3", "a queued record is not an answer yet"
    assert after_replay["reconcile"] == "g:a/b:1#4"
    assert noted["note"] == "`/preserve`: preserved", "a note never replaces a record"
    assert applied["reconcile"] == "g:a/b:1#5" and applied["state"] == "deployed"
