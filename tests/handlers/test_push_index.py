"""A push, or a build without a change number, costs the same whatever the number of the
repository's environments: its changes are found through the branch and commit indexes, and
its result is counts, not a line per environment."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from arq.connections import ArqRedis, RedisSettings, create_pool

from handlers.cluster.directory import DirectoryCluster
from handlers.desired import Desired
from handlers.settings import load_worker_config
from handlers.worker import Deps, process_event, startup
from providers.events import BuildStatus, EventType, LifecycleEvent, Provider

REPO = "acme/web"
NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def sha(n: int) -> str:
    return hashlib.sha1(str(n).encode()).hexdigest()


def event(kind: EventType, number: int | None = None, **fields: Any) -> LifecycleEvent:
    return LifecycleEvent(
        provider=Provider.GITHUB,
        delivery_id=f"{kind.value}-{number}-{fields.get('head_sha')}-{fields.get('head_ref')}",
        type=kind,
        repository=REPO,
        number=number,
        received_at=NOW,
        **fields,
    )


class Worker:
    """The worker's job functions on a real Redis, with the context its start-up builds."""

    def __init__(self, redis_url: str, tmp: Path) -> None:
        self.config = load_worker_config(redis_url=redis_url)
        self.tmp = tmp

    async def __aenter__(self) -> Worker:
        self.redis: ArqRedis = await create_pool(RedisSettings.from_dsn(self.config.connection.redis_url))
        # A fresh Redis, scripts included: which scripts an earlier test loaded must not matter.
        await self.redis.flushall()
        await self.redis.script_flush()
        self.ctx: dict[str, Any] = {
            "redis": self.redis,
            "settings": self.config,
            "cluster": DirectoryCluster(self.tmp),
            "hosts": {},
        }
        await startup(self.ctx)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.redis.aclose()

    @property
    def deps(self) -> Deps:
        deps: Deps = self.ctx["deps"]
        return deps

    async def open(self, number: int, branch: str, head: str) -> None:
        await self.send(event(EventType.CHANGE_OPENED, number, head_sha=head, head_ref=branch))

    async def send(self, e: LifecycleEvent) -> str:
        return await process_event(self.ctx, e.model_dump_json())

    async def commands(self) -> int:
        info: dict[str, Any] = await self.redis.info("stats")
        return int(info["total_commands_processed"])

    async def desired(self, number: int) -> Desired | None:
        key = Desired(provider=Provider.GITHUB, repository=REPO, number=number).key
        return (await self.deps.desired.load(key))[1]


def test_a_push_costs_the_same_with_five_environments_or_three_hundred(
    redis_server: Any, tmp_path: Path
) -> None:
    async def cost(environments: int) -> tuple[int, str]:
        async with Worker(redis_server.url, tmp_path) as worker:
            for n in range(1, environments + 1):
                await worker.open(n, f"branch-{n}", sha(n))
            # A script's first call in a fresh Redis costs more (NOSCRIPT, then its load): one push
            # to another branch first, so that what is measured is a push's own commands.
            await worker.send(event(EventType.PUSH, head_ref="branch-4", head_sha=sha(999)))
            before = await worker.commands()
            result = await worker.send(event(EventType.PUSH, head_ref="branch-3", head_sha=sha(1000)))
            # The INFO call that measures is one of them, both times.
            return await worker.commands() - before, result

    small, large = asyncio.run(cost(5)), asyncio.run(cost(300))
    assert small == large
    assert small[1] == "1 environment: activity recorded"


def test_the_indexes_follow_the_head_and_forget_closed_changes(redis_server: Any, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Worker(redis_server.url, tmp_path) as worker:
            for n in (1, 2, 3):
                await worker.open(n, "shared" if n < 3 else "own", sha(n))
            push = event(EventType.PUSH, head_ref="shared", head_sha=sha(50))
            assert await worker.send(push) == "2 environments: activity recorded"

            # A build of a commit finds the change whose head it is, through an abbreviated hash too.
            build = event(EventType.BUILD_COMPLETED, head_sha=sha(2)[:12], build_status=BuildStatus.SUCCESS)
            assert await worker.send(build) == f"1 environment: roll out build {sha(2)[:12]}"
            assert (await worker.desired(2)).built_sha == sha(2)[:12]  # type: ignore[union-attr]

            # New commits move the change in the commit index; its old head finds nothing.
            await worker.send(event(EventType.CHANGE_UPDATED, 2, head_sha=sha(20), head_ref="shared"))
            old = event(EventType.BUILD_COMPLETED, head_sha=sha(2), build_status=BuildStatus.SUCCESS)
            assert await worker.send(old) == "no environment of this repository is concerned"
            new = event(EventType.BUILD_COMPLETED, head_sha=sha(20), build_status=BuildStatus.SUCCESS)
            assert await worker.send(new) == f"1 environment: roll out build {sha(20)[:12]}"

            # A closed change is in neither index any more.
            await worker.send(event(EventType.CHANGE_CLOSED, 1, head_sha=sha(1), head_ref="shared"))
            assert await worker.send(push) == "1 environment: activity recorded"
            keys = {k.decode() for k in await worker.redis.keys("k8s-ee:*-envs:*")}
            assert keys == {
                f"k8s-ee:branch-envs:github:{REPO}:shared",
                f"k8s-ee:branch-envs:github:{REPO}:own",
                f"k8s-ee:commit-envs:github:{REPO}:{sha(20)[:7]}",
                f"k8s-ee:commit-envs:github:{REPO}:{sha(3)[:7]}",
            }

    asyncio.run(scenario())


def test_a_change_the_host_says_is_closed_leaves_the_indexes_when_destroyed(
    redis_server: Any, tmp_path: Path
) -> None:
    """Its record still says deploy (no close event came), yet nothing finds it any more."""

    async def scenario() -> None:
        async with Worker(redis_server.url, tmp_path) as worker:
            await worker.open(4, "gone", sha(4))
            key = (await worker.desired(4)).key  # type: ignore[union-attr]
            await worker.deps.desired.retire(key)
            assert (await worker.desired(4)).action == "deploy"  # type: ignore[union-attr]
            assert await worker.redis.keys("k8s-ee:*-envs:*") == []
            push = event(EventType.PUSH, head_ref="gone", head_sha=sha(40))
            assert await worker.send(push) == "no environment of this repository is concerned"

    asyncio.run(scenario())
