"""Warnings posted on a change: a TTL destroy 24 h and 1 h ahead, a preservation about to end or ended.

A warning is a comment of its own (the environment's comment is edited in place, which notifies
nobody), found again by its own marker, `<!-- k8s-ee-notice:{kind} -->`, so a retried or repeated
warning edits the comment it posted rather than posting another. Each is posted once per
deadline: which deadline a kind was last posted for is kept beside the environment
(`notices:{env}`), and a deadline that moved (someone used the environment) may be warned of
again. Posting goes through the queue (`notice` job) with the report's backoff; a host without
credentials is skipped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from redis.asyncio import Redis

from handlers.desired import EnvKey
from handlers.keys import Keys
from handlers.queue import Job
from providers.events import Provider
from providers.hosts.base import Host, HostError, HostUnavailable, NotFound

logger = logging.getLogger("k8s_ee.worker")

# How long a record of what was warned is kept (past any TTL a warning is about).
NOTICES_TTL_S = 30 * 86400


def marker(kind: str) -> str:
    return f"<!-- k8s-ee-notice:{kind} -->"


class Notice(BaseModel):
    env: str
    kind: str
    text: str


def when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


class Notices:
    def __init__(self, redis: Redis, keys: Keys, queue_name: str, hosts: Mapping[Provider, Host]) -> None:
        self.redis = redis
        self.keys = keys
        self.queue_name = queue_name
        self.hosts = hosts

    async def warn(self, arq: Any, env: str, kind: str, deadline: float, text: str) -> bool:
        """Queue the warning `kind` about `deadline` unless it was queued for that deadline already."""
        key = EnvKey.parse(env)
        if key.provider not in self.hosts:
            return False
        record = self.keys.notices(env)
        stamp = str(int(deadline))
        previous = await self.redis.hget(record, kind)  # type: ignore[misc]
        if previous is not None and previous.decode() == stamp:
            return False
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(record, kind, stamp)
            pipe.expire(record, NOTICES_TTL_S)
            await pipe.execute()
        notice = Notice(env=env, kind=kind, text=text)
        await arq.enqueue_job(
            Job.NOTICE,
            notice.model_dump_json(),
            _job_id=f"notice:{env}:{kind}:{stamp}",
            _queue_name=self.queue_name,
        )
        return True

    async def post(self, notice: Notice) -> str:
        """The job: post (or edit) the warning's comment. HostUnavailable goes back to the queue."""
        key = EnvKey.parse(notice.env)
        host = self.hosts.get(key.provider)
        if host is None:
            return "no credentials"
        body = f"{marker(notice.kind)}\n{notice.text}\n\n<sub>k8s-ee gateway</sub>"
        try:
            await asyncio.to_thread(
                host.upsert_comment, key.repository, key.number, body, marker(notice.kind), None
            )
        except HostUnavailable:
            raise
        except (NotFound, HostError) as exc:
            logger.warning("could not post the %s warning on %s: %s", notice.kind, notice.env, exc)
            return f"not posted: {exc}"
        return "posted"
