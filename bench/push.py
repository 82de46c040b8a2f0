"""Push benchmark: what one push (and one build without a change number) costs the worker in a
repository with many environments.

A redis-server of its own is filled with `--environments` open changes of one repository,
each on its own branch, through the worker's own event handling. Then pushes to one branch
and builds of one commit are handled by the worker's `process_event`, as the queue would run
them. It prints, per push and per build, the CPU time, the Redis commands sent and the size
of the job's result, at this size and at a tenth of it: figures are printed, never asserted.

    .venv/bin/python -m bench.push [--environments 10000] [--events 200]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from arq.connections import ArqRedis, RedisSettings, create_pool

from bench.ingest import free_port, redis_binary, redis_command, start
from handlers.cluster.directory import DirectoryCluster
from handlers.settings import load_worker_config
from handlers.worker import process_event, startup
from providers.events import BuildStatus, EventType, LifecycleEvent, Provider

REPO = "acme/monorepo"


def sha(n: int) -> str:
    return hashlib.sha1(str(n).encode()).hexdigest()


def event(kind: EventType, n: int, **fields: Any) -> LifecycleEvent:
    return LifecycleEvent(
        provider=Provider.GITHUB,
        delivery_id=f"{kind.value}-{n}",
        type=kind,
        repository=REPO,
        received_at=datetime.now(UTC),
        **fields,
    )


def sample(name: str, i: int, environments: int) -> LifecycleEvent:
    """A push to one change's branch, or a build of one change's head commit, with no number."""
    n = 1 + i % environments
    if name == "push":
        return event(EventType.PUSH, i, head_ref=f"branch-{n}", head_sha=sha(-i))
    return event(EventType.BUILD_COMPLETED, i, head_sha=sha(n), build_status=BuildStatus.SUCCESS)


async def measure(redis_url: str, workdir: Path, environments: int, events: int) -> dict[str, float]:
    redis: ArqRedis = await create_pool(RedisSettings.from_dsn(redis_url))
    await redis.flushall()
    ctx: dict[str, Any] = {
        "redis": redis,
        "settings": load_worker_config(redis_url=redis_url),
        "cluster": DirectoryCluster(workdir),
        "hosts": {},
    }
    await startup(ctx)
    for n in range(1, environments + 1):
        opened = event(EventType.CHANGE_OPENED, n, number=n, head_sha=sha(n), head_ref=f"branch-{n}")
        await process_event(ctx, opened.model_dump_json())
    figures: dict[str, float] = {}
    for name in ("push", "build"):
        cpu: list[float] = []
        commands: list[int] = []
        size = 0
        for i in range(events):
            payload = sample(name, i, environments).model_dump_json()
            before = int((await redis.info("stats"))["total_commands_processed"])
            started = time.process_time()
            result = await process_event(ctx, payload)
            cpu.append(time.process_time() - started)
            # Less the INFO that measured.
            commands.append(int((await redis.info("stats"))["total_commands_processed"]) - before - 1)
            size = max(size, len(result))
        figures[f"{name}_cpu_ms"] = statistics.median(cpu) * 1000
        figures[f"{name}_commands"] = statistics.median(commands)
        figures[f"{name}_result_bytes"] = size
    await redis.aclose()
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--environments", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=200)
    args = parser.parse_args()
    redis_bin = redis_binary()
    if not redis_bin:
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="k8s-ee-bench-push-"))
    port = free_port()
    redis = start(redis_command(redis_bin, port, workdir), {})
    try:
        url = f"redis://127.0.0.1:{port}/0"  # arq's pool retries until the server is up
        print(
            f"{'environments':>12} {'push CPU':>10} {'commands':>9} {'result':>7} {'build CPU':>10} {'commands':>9} {'result':>7}"
        )
        for environments in sorted({max(1, args.environments // 10), args.environments}):
            f = asyncio.run(measure(url, workdir, environments, args.events))
            print(
                f"{environments:>12,} {f['push_cpu_ms']:>8.2f}ms {f['push_commands']:>9.0f} {f['push_result_bytes']:>6.0f}B"
                f" {f['build_cpu_ms']:>8.2f}ms {f['build_commands']:>9.0f} {f['build_result_bytes']:>6.0f}B"
            )
    finally:
        redis.terminate()
        redis.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
