"""Report an environment back on its pull request: the one living comment and the host's native status.

Runs as its own job, never inside the reconcile: a host that is down or rate limited delays the
report (retried through the queue with backoff), never the environment.

Coalesced: a state change counts the environment's generation up and makes sure ONE report job
is pending for it (`mark`, one script: the pending marker is set once, and only its setter
queues the job). The job drains: each pass reports the latest state and ends with a script that
clears the marker only when no change came during the pass; otherwise it passes again. A change
that lands while a report runs is reported by that report's next pass, never lost; a state
superseded before its write is never written. A worker killed mid-report leaves the marker and
the job (arq runs it again), so the environment is still reported. One report per environment at
a time (a lock), so two racing reports cannot both create a comment.

Fewer host calls: the comment is written only when its text changed (a digest of it is kept),
edited by its remembered id, and created without a search when the change had no comments and
nothing was reported on it yet; the host client's memo (deployment ids, status digests) is
handed back to it with each report.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from redis.asyncio import Redis

from handlers.comment import dashboard_link, render_comment
from handlers.keys import Keys
from handlers.locks import RELEASE
from handlers.status import EnvironmentStatus, ReportState, StatusStore
from providers.events import Provider
from providers.hosts.base import Host, HostError, HostUnavailable, NotFound
from providers.hosts.reporting import MARKER, MAX_DESCRIPTION, ReportMemo, StatusReport, digest

logger = logging.getLogger("k8s_ee.worker")

# A report job makes at most this many passes; an environment still changing then gets a new job.
MAX_PASSES = 8
# How long a pending marker outlives its job's last sign of life: a job that vanished (its Redis
# entry lost) lets the next state change queue a new one after this.
PENDING_TTL_MS = 15 * 60 * 1000

# KEYS: generation, pending; ARGV: pending ttl ms, generation ttl ms (the retention: a count that
# expires starts again at 1, which only ever asks for one pass more). Returns the new generation
# when this change set the marker (its caller queues the job), else 0 (a job is pending).
_MARK = """
local generation = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if redis.call('SET', KEYS[2], generation, 'NX', 'PX', ARGV[1]) then
  return generation
end
return 0
"""
# KEYS: generation, pending; ARGV: the generation the pass began at. Clears the marker when no
# change came since (1); else keeps it, for another pass (0).
_SETTLE = """
if tonumber(redis.call('GET', KEYS[1]) or '0') <= tonumber(ARGV[1]) then
  redis.call('DEL', KEYS[2])
  return 1
end
return 0
"""


@dataclass
class Reporter:
    redis: Redis
    keys: Keys
    statuses: StatusStore
    hosts: Mapping[Provider, Host]
    dashboard_url: str | None = None
    lock_ttl_s: int = 60

    def __post_init__(self) -> None:
        self._mark = self.redis.register_script(_MARK)
        self._settle = self.redis.register_script(_SETTLE)
        self._release = self.redis.register_script(RELEASE)

    async def mark(self, env: str) -> int | None:
        """Record a state change of `env`; the generation whose job the caller must queue, or None
        when a report job is pending already (it reports this change)."""
        generation = int(
            await self._mark(
                keys=[self.keys.report_generation(env), self.keys.report_pending(env)],
                args=[PENDING_TTL_MS, self.statuses.environment_retention_ms],
            )
        )
        return generation or None

    async def hold(self, env: str, seconds: float) -> None:
        """The job waits `seconds` for a retry: its marker stays until then, and a while after."""
        await self.redis.pexpire(self.keys.report_pending(env), PENDING_TTL_MS + int(seconds * 1000))

    async def release(self, env: str) -> None:
        """The job gave up: the next state change queues a new one."""
        await self.redis.delete(self.keys.report_pending(env))

    async def _save(self, status: EnvironmentStatus, state: ReportState) -> None:
        await self.statuses.save_report_state(status, state)

    async def _generation(self, env: str) -> int:
        return int(await self.redis.get(self.keys.report_generation(env)) or 0)

    async def report(self, env: str, now: datetime) -> str:
        """Report `env` until no change is left unreported: "again" when it kept changing for
        `MAX_PASSES` passes (the caller queues the job once more)."""
        token = uuid.uuid4().hex
        lock = self.keys.report_lock(env)
        if not await self.redis.set(lock, token, nx=True, px=self.lock_ttl_s * 1000):
            # Only a job queued after a lost marker's expiry meets another: that one drains.
            return "busy"
        try:
            outcome = "no change"
            for _ in range(MAX_PASSES):
                generation = await self._generation(env)
                outcome = await self._pass(env, generation, now)
                if await self._settle(
                    keys=[self.keys.report_generation(env), self.keys.report_pending(env)],
                    args=[generation],
                ):
                    return outcome
            return "again"
        finally:
            await self._release(keys=[lock], args=[token])

    async def _pass(self, env: str, generation: int, now: datetime) -> str:
        status = await self.statuses.get(env)
        if status is None:
            return "no status"
        host = self.hosts.get(status.provider)
        if host is None:
            # Warned once per environment (again after the retention period, when the flag expires).
            if status.provider != Provider.GENERIC and await self.redis.set(
                self.keys.report_warned(env), "1", nx=True, px=self.statuses.environment_retention_ms
            ):
                logger.warning(
                    "no credentials for %s: not reporting on %s (the environment works regardless)",
                    status.provider.value,
                    env,
                )
            return "no credentials"
        return await self._report(env, generation, status, host, now)

    async def _report(
        self, env: str, generation: int, status: EnvironmentStatus, host: Host, now: datetime
    ) -> str:
        found = await self.statuses.report_state(env)
        # A new environment has nothing on the host to find again but its comment (searched by
        # its marker all the same): its memo starts complete.
        state = found or ReportState(memo=ReportMemo(complete=True).model_dump())
        stamp = f"{status.state}@{status.head_sha}@{status.updated_at}"
        body = render_comment(status, self.dashboard_url)
        body_digest = digest(body)
        memo = ReportMemo.model_validate(state.memo)
        if memo.complete:
            # Should this report not finish (a worker killed mid-call), the next one cannot tell
            # what it made: it searches again.
            state = state.model_copy(update={"memo": {**state.memo, "complete": False}})
            await self._save(status, state)
        try:
            if state.comment_id is None or state.comment_digest != body_digest:
                # Nothing reported yet and no comments on the change when the host was last asked:
                # no earlier comment (the first edition's, one whose id was lost) can exist.
                search = found is not None or status.host_comments != 0
                comment_id = await asyncio.to_thread(
                    host.upsert_comment,
                    status.repository,
                    status.number,
                    body,
                    MARKER,
                    state.comment_id,
                    search=search,
                )
                state = state.model_copy(update={"comment_id": comment_id, "comment_digest": body_digest})
                if await self._generation(env) > generation:
                    # Superseded meanwhile: the next pass writes the newer state's statuses.
                    await self._save(status, state.model_copy(update={"memo": memo.model_dump()}))
                    return "superseded"
            if status.head_sha:
                memo = await asyncio.to_thread(
                    host.report_status, status.repository, status.number, self._status(status), memo
                )
        except HostUnavailable as exc:
            await self._save(
                status,
                state.model_copy(
                    update={"last_error": str(exc), "attempts": state.attempts + 1, "updated_at": now}
                ),
            )
            raise
        except (NotFound, HostError) as exc:
            # The change or repository is gone, or the host refuses for good: nothing to retry.
            await self._save(status, state.model_copy(update={"last_error": str(exc), "updated_at": now}))
            return f"not reported: {exc}"
        finally:
            await self._record_rate_limits(host)
        await self._save(
            status,
            state.model_copy(
                update={
                    "memo": memo.model_dump(),
                    "reported": stamp,
                    "last_error": None,
                    "attempts": 0,
                    "updated_at": now,
                }
            ),
        )
        return "reported"

    def _status(self, status: EnvironmentStatus) -> StatusReport:
        target = (
            dashboard_link(self.dashboard_url, status.namespace)
            if self.dashboard_url and status.namespace
            else None
        )
        return StatusReport(
            state=status.state,
            head_sha=status.head_sha or "",
            environment=f"pr-{status.number}",
            preview_url=status.preview_url if status.state == "deployed" else None,
            description=_description(status),
            target_url=target,
            ref=status.head_ref,
        )

    async def _record_rate_limits(self, host: Host) -> None:
        budgets = host.rate_limits()
        if budgets:
            key = self.keys.rate_limits()
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping={k: json.dumps(v._asdict()) for k, v in budgets.items()})
                # A budget nobody has looked at for the retention period says nothing any more.
                pipe.pexpire(key, self.statuses.retention_ms)
                await pipe.execute()


def _description(status: EnvironmentStatus) -> str:
    """The native status's line: what failed, or how far a deploy got; else the state's own text."""
    if status.state == "failed":
        text = status.last_error or ""
    elif status.state == "deploying":
        text = status.progress or ""
    else:
        text = ""
    return text if len(text) <= MAX_DESCRIPTION else text[: MAX_DESCRIPTION - 1] + "…"
