"""DORA's four keys per repository (US-056), counted from records kept in Redis.

A deployment is one deploy of an environment that ended `deployed` (success) or `failed`
(failure), identified by its head commit, its built commit and its result. The worker
records it in one script call that first marks it counted in the environment's record, so
a reconcile that runs again (a retry, a crash, another worker) never counts it twice, and a
restart of any process loses nothing: the counts live in Redis, and the gateway exports
them as they are there (gateway/figures.py), whichever gateway Prometheus asks.

- deployments: every deployment, by result;
- change failures: failure streaks started, i.e. an environment going from working (or new)
  to failed; a streak of failed retries of it counts once;
- failed-deployment recovery time: from the first failure of a streak to the next success;
- lead time: from the first commit of the change to its first successful deployment, once
  per change (the first commit's time comes from the code host, asked once per change).

Every record expires (K8S_EE_ENVIRONMENT_RETENTION_HOURS, 30 days by default): the counts after
that long without any deployment (Prometheus reads it as a counter reset), an environment's
record after that long without a deployment of its own.

Series are (provider, repository, environment): bounded by the repositories served, never
a commit or a change number. `environment` is the class of environment, `preview` for the
pull-request environments this gateway makes. This module imports no cluster or SDK code,
so the web process can read what it writes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, NamedTuple

from prometheus_client.utils import floatToGoString
from redis.asyncio import Redis

from handlers.keys import Keys

ENVIRONMENT = "preview"
# The DORA bands' edges: an hour, a day, a week, a month (the mean Gregorian month,
# 365.2425 days / 12) and six of them; with 15 minutes and 6 hours for finer reading.
HOUR, DAY, WEEK, MONTH = 3600.0, 86400.0, 604800.0, 2629746.0
DORA_BUCKETS: tuple[float, ...] = (900.0, HOUR, 6 * HOUR, DAY, WEEK, MONTH, 6 * MONTH)

Result = Literal["success", "failure"]


class Series(NamedTuple):
    provider: str
    repository: str
    environment: str = ENVIRONMENT


_RECORD = """
-- KEYS: the environment's record, deployments, change failures, lead time, recovery.
-- ARGV: deployment id, series (JSON), result, at (epoch s), first commit (epoch s or ''),
--       how long the records outlive the last deployment (ms), bucket bounds (JSON).
local env = KEYS[1]
local id, series, result, at = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local first_commit, ttl = tonumber(ARGV[5]), tonumber(ARGV[6])
local bounds = cjson.decode(ARGV[7])
if redis.call('HSETNX', env, 'deployment:' .. id, ARGV[4]) == 0 then
  return 0
end
local function observe(hash, value)
  local index = #bounds + 1
  for i, bound in ipairs(bounds) do
    if value <= bound then
      index = i
      break
    end
  end
  redis.call('HINCRBY', hash, series .. '\\t' .. index, 1)
  redis.call('HINCRBYFLOAT', hash, series .. '\\tsum', value)
end
redis.call('HINCRBY', KEYS[2], series .. '\\t' .. result, 1)
if result == 'failure' then
  if redis.call('HSETNX', env, 'failing_since', ARGV[4]) == 1 then
    redis.call('HINCRBY', KEYS[3], series, 1)
  end
else
  local since = tonumber(redis.call('HGET', env, 'failing_since'))
  if since then
    observe(KEYS[5], math.max(0, at - since))
    redis.call('HDEL', env, 'failing_since')
  end
  if first_commit and redis.call('HSETNX', env, 'lead_time', ARGV[4]) == 1 then
    observe(KEYS[4], math.max(0, at - first_commit))
  end
end
-- Every key expires: the counts go after a retention period without any deployment (read by
-- Prometheus as a counter reset), an environment's record after one without its own.
for i = 1, 5 do
  redis.call('PEXPIRE', KEYS[i], ttl)
end
return 1
"""


@dataclass
class Histogram:
    """Per-bucket counts (not cumulative; the last is above every bound) and the sum."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(DORA_BUCKETS) + 1))
    total: float = 0.0

    def cumulative(self) -> Iterator[tuple[str, int]]:
        """(le, count) as Prometheus exposes a histogram's buckets, ending with +Inf."""
        running = 0
        for bound, count in zip((*DORA_BUCKETS, float("inf")), self.counts, strict=True):
            running += count
            yield floatToGoString(bound), running  # type: ignore[no-untyped-call]

    @property
    def count(self) -> int:
        return sum(self.counts)


@dataclass
class DoraFigures:
    deployments: dict[tuple[Series, str], int] = field(default_factory=dict)
    change_failures: dict[Series, int] = field(default_factory=dict)
    lead_time: dict[Series, Histogram] = field(default_factory=dict)
    recovery: dict[Series, Histogram] = field(default_factory=dict)


def _series_field(series: Series) -> str:
    return json.dumps(list(series), separators=(",", ":"))


def _parse_series(text: str) -> Series | None:
    try:
        provider, repository, environment = json.loads(text)
    except (ValueError, TypeError):
        return None
    return Series(str(provider), str(repository), str(environment))


def _histograms(raw: dict[bytes, bytes]) -> dict[Series, Histogram]:
    found: dict[Series, Histogram] = {}
    for name, value in raw.items():
        text, _, part = name.decode().rpartition("\t")
        series = _parse_series(text)
        if series is None:
            continue
        histogram = found.setdefault(series, Histogram())
        if part == "sum":
            histogram.total = float(value)
        elif part.isdigit() and 1 <= int(part) <= len(histogram.counts):
            histogram.counts[int(part) - 1] = int(value)
    return found


class DoraStore:
    def __init__(self, redis: Redis, keys: Keys, retention_ms: int) -> None:
        """`retention_ms`: how long the records outlive the last deployment
        (K8S_EE_ENVIRONMENT_RETENTION_HOURS)."""
        self.redis = redis
        self.keys = keys
        self.retention_ms = retention_ms

    async def lead_time_pending(self, env: str) -> bool:
        """No lead time taken yet for this environment's change (so its first commit is worth asking for)."""
        return not await self.redis.hexists(self.keys.dora_environment(env), "lead_time")  # type: ignore[misc]

    async def record(
        self,
        env: str,
        series: Series,
        deployment_id: str,
        result: Result,
        at: datetime,
        first_commit_at: datetime | None = None,
    ) -> bool:
        """Count one deployment; False when it was counted already."""
        keys = self.keys
        counted = await self.redis.eval(  # type: ignore[misc]
            _RECORD,
            5,
            keys.dora_environment(env),
            keys.dora_deployments(),
            keys.dora_change_failures(),
            keys.dora_lead_time(),
            keys.dora_recovery(),
            deployment_id,
            _series_field(series),
            result,
            repr(at.timestamp()),
            repr(first_commit_at.timestamp()) if first_commit_at else "",
            str(self.retention_ms),
            json.dumps(DORA_BUCKETS),
        )
        return bool(counted)


async def read_figures(redis: Redis, keys: Keys) -> DoraFigures:
    """The counts as they are in Redis (the gateway's /metrics)."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.dora_deployments())
        pipe.hgetall(keys.dora_change_failures())
        pipe.hgetall(keys.dora_lead_time())
        pipe.hgetall(keys.dora_recovery())
        deployments, failures, lead, recovery = await pipe.execute()
    figures = DoraFigures(lead_time=_histograms(lead), recovery=_histograms(recovery))
    for name, value in deployments.items():
        text, _, result = name.decode().rpartition("\t")
        series = _parse_series(text)
        if series is not None and result in ("success", "failure"):
            figures.deployments[(series, result)] = int(value)
    for name, value in failures.items():
        series = _parse_series(name.decode())
        if series is not None:
            figures.change_failures[series] = int(value)
    return figures
