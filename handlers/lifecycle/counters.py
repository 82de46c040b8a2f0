"""What the sweeps did, counted in Redis, and the installation's figures they last took.

The runs happen in whichever worker holds their lock, so their counts are kept in Redis, not in
a process: the gateway's `/metrics` exports them (gateway/lifecycle_metrics.py), once for the
installation however many workers there are, and they survive restarts.

- runs:      `k8s_ee_sweep_runs_total{kind, result}`: kind `sweep` or `resync`, result `ok`,
             `error` (it stopped on a failure), `skipped` (another worker held the lock);
- errors:    `k8s_ee_sweep_errors_total{kind, provider}`: a host that could not be read (the
             environment is kept), a cluster call that failed;
- changes:   `k8s_ee_sweep_changes_total{kind, action}`: what the run changed (`created`,
             `deployed`, `destroyed`, `ttl_destroyed`, `hibernated`, `warned`, `preserve_expired`,
             `orphan_deleted`, ...);
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from redis.asyncio import Redis

from handlers.keys import Keys

KINDS = ("sweep", "resync", "activity")
RESULTS = ("ok", "error", "skipped")


def _field(*parts: str) -> str:
    return "|".join(parts)


# Like every key, these go in time: kept as long as an environment's record after their last
# write (a counter Prometheus sees start again after that long without a run is a reset).
DEFAULT_TTL_MS = 30 * 86_400_000


class LifecycleCounters:
    def __init__(self, redis: Redis, keys: Keys, ttl_ms: int = DEFAULT_TTL_MS) -> None:
        self.redis = redis
        self.keys = keys
        self.ttl_ms = ttl_ms

    async def _count(self, *fields: tuple[str, int]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for name, n in fields:
                pipe.hincrby(self.keys.lifecycle_counters(), name, n)
            pipe.pexpire(self.keys.lifecycle_counters(), self.ttl_ms)
            await pipe.execute()

    async def run(self, kind: str, result: str) -> None:
        await self._count((_field("runs", kind, result), 1))

    async def hibernated(self, source: str) -> None:
        await self._count((_field("hibernations", source), 1))

    async def add(self, kind: str, *, errors: Mapping[str, int], changes: Mapping[str, int]) -> None:
        """One run's errors (by provider) and changes (by action), in one round trip."""
        fields = {
            **{_field("errors", kind, provider): n for provider, n in errors.items() if n},
            **{_field("changes", kind, action): n for action, n in changes.items() if n},
        }
        if fields:
            await self._count(*fields.items())

    async def read(self) -> dict[tuple[str, ...], int]:
        raw: dict[bytes, bytes] = await self.redis.hgetall(self.keys.lifecycle_counters())  # type: ignore[misc]
        return {tuple(k.decode().split("|")): int(v) for k, v in raw.items()}


class Tally:
    """What one run found, to be added to the counters at its end."""

    def __init__(self) -> None:
        self.errors: Counter[str] = Counter()
        self.changes: Counter[str] = Counter()

    def error(self, provider: str) -> None:
        self.errors[provider] += 1

    def change(self, action: str, n: int = 1) -> None:
        self.changes[action] += n
