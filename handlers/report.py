"""Report an environment back on its pull request: the one living comment and the host's native status.

Runs as its own job after each state change, never inside the reconcile: a host
that is down or rate limited delays the report (retried through the queue with
backoff), never the environment. One report per environment at a time (a lock),
so two racing updates cannot both create a comment.
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
from handlers.status import EnvironmentStatus, ReportState, StatusStore
from providers.events import Provider
from providers.hosts.base import Host, HostError, HostUnavailable, NotFound
from providers.hosts.reporting import MARKER, MAX_DESCRIPTION, StatusReport

logger = logging.getLogger("k8s_ee.worker")


class ReportBusy(Exception):
    """Another report of this environment is running: try again in a moment."""


@dataclass
class Reporter:
    redis: Redis
    keys: Keys
    statuses: StatusStore
    hosts: Mapping[Provider, Host]
    dashboard_url: str | None = None
    lock_ttl_s: int = 60

    async def state(self, env: str) -> ReportState:
        return await self.statuses.report_state(env) or ReportState()

    async def _save(self, status: EnvironmentStatus, state: ReportState) -> None:
        await self.statuses.save_report_state(status, state)

    async def report(self, env: str, now: datetime) -> str:
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
        token = uuid.uuid4().hex
        lock = self.keys.report_lock(env)
        if not await self.redis.set(lock, token, nx=True, px=self.lock_ttl_s * 1000):
            raise ReportBusy(env)
        try:
            return await self._report(env, status, host, now)
        finally:
            if await self.redis.get(lock) == token.encode():
                await self.redis.delete(lock)

    async def _report(self, env: str, status: EnvironmentStatus, host: Host, now: datetime) -> str:
        state = await self.state(env)
        stamp = f"{status.state}@{status.head_sha}@{status.updated_at}"
        if state.reported == stamp:
            return "already reported"
        body = render_comment(status, self.dashboard_url)
        try:
            comment_id = await asyncio.to_thread(
                host.upsert_comment, status.repository, status.number, body, MARKER, state.comment_id
            )
            if status.head_sha:
                await asyncio.to_thread(
                    host.report_status, status.repository, status.number, self._status(status)
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
            ReportState(comment_id=comment_id, reported=stamp, last_error=None, attempts=0, updated_at=now),
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
