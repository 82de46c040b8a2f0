"""What a comment's author may do, read from the host when the command is read, cached briefly.

The host is the authority (SPEC 4: commands only from users with write access), and access
changes: the answer is kept `K8S_EE_PERMISSION_CACHE_SECONDS` (60 by default) so that a burst of
commands asks once, and no longer. An answer that could not be had (the host is down, or
refuses the credentials the question) is not cached.
"""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from handlers.keys import Keys
from providers.events import Comment, Provider
from providers.hosts.base import Host, Permission


class PermissionCache:
    def __init__(self, redis: Redis, keys: Keys, ttl_s: int) -> None:
        self.redis = redis
        self.keys = keys
        self.ttl_s = ttl_s

    async def of(self, host: Host, provider: Provider, repository: str, author: Comment) -> Permission:
        """The author's permission in `repository`; raises `HostError` when the host cannot say."""
        key = self.keys.permission(provider, repository, author.author_id or author.author)
        if self.ttl_s:
            cached = await self.redis.get(key)
            if cached:
                return Permission.model_validate_json(cached)
        permission = await asyncio.to_thread(host.permission, repository, author.author, author.author_id)
        if self.ttl_s:
            await self.redis.set(key, permission.model_dump_json(), ex=self.ttl_s)
        return permission
