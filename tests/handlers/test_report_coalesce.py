"""Reports are coalesced per environment: one pending job however many state changes, the latest
state reported, none lost (a change during a report, a report cut short)."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

from handlers.keys import Keys
from handlers.report import Reporter
from handlers.status import EnvironmentStatus, StatusStore
from providers.events import Provider
from tests.fakes.fakehosts import FakeGitHub
from tests.support.hosts import github_host

REPO = "octo/app"
ENV = f"github:{REPO}:5"


def sha(n: int) -> str:
    return hashlib.sha1(str(n).encode()).hexdigest()


def status(n: int, state: str = "deploying") -> EnvironmentStatus:
    return EnvironmentStatus(
        provider=Provider.GITHUB,
        repository=REPO,
        number=5,
        state=state,
        namespace="shop-pr-5",
        head_sha=sha(n),
        head_ref="feature",
        preview_url="https://shop-pr-5.preview.example.com",
        updated_at=datetime.now(UTC),
    )


async def change(reporter: Reporter, statuses: StatusStore, n: int, state: str = "deploying") -> int | None:
    """A state change as the worker makes one: the record, then the mark."""
    await statuses.put(status(n, state))
    return await reporter.mark(ENV)


def test_many_changes_one_job_the_last_state_wins_none_lost(redis_client: Any, redis_server: Any) -> None:
    with FakeGitHub() as github:
        github.add_token("ghp-test")
        github.add_repo(REPO)
        github.add_pull(REPO, 5)
        for n in range(1, 31):
            github.add_commit(REPO, sha(n))
        # Each write takes a while, so that changes land while a report runs.
        github.add_fault(status=None, times=-1, method="PATCH", delay=0.05)
        host = github_host(github, "ghp-test")

        async def run() -> None:
            redis = Redis.from_url(redis_server.url)
            keys = Keys("k8s-ee:")
            statuses = StatusStore(redis, keys, 3_600_000, 3_600_000)
            reporter = Reporter(redis, keys, statuses, {Provider.GITHUB: host})
            try:
                # Twenty changes before the job runs: only the first queues one.
                jobs = [await change(reporter, statuses, n) for n in range(1, 21)]
                assert jobs[0] is not None and jobs[1:] == [None] * 19
                assert await reporter.report(ENV, datetime.now(UTC)) == "reported"
                assert sha(20)[:12] in github.comments(REPO, 5)[0].body
                writes_after_first = len([r for r in github.requests if r.method != "GET"])

                # Changes while the report runs: no new job, and the report's next pass has them.
                assert await change(reporter, statuses, 21) is not None
                running = asyncio.create_task(reporter.report(ENV, datetime.now(UTC)))
                for n in range(22, 31):
                    await asyncio.sleep(0.02)
                    assert await change(reporter, statuses, n, "deployed" if n == 30 else "deploying") is None
                await running
                # Whatever the timing, the report ran passes until none was left: the final state.
                [comment] = github.comments(REPO, 5)
                assert sha(30)[:12] in comment.body and "deployed" in comment.body
                assert github.commit_statuses(REPO, sha(30))[-1].state == "success"
                # Ten changes, far fewer passes: each pass writes at most a comment and two statuses
                # (and a deployment for a new commit).
                writes = len([r for r in github.requests if r.method != "GET"]) - writes_after_first
                assert writes <= 4 * 8

                # Settled: the next change queues a job again.
                assert await change(reporter, statuses, 30, "destroyed") is not None

                # A report cut short (its worker killed mid-write) leaves the marker: no second
                # job is queued, and the job's rerun reports the final state.
                cut = asyncio.create_task(reporter.report(ENV, datetime.now(UTC)))
                while not any(r.method == "PATCH" and b"destroyed" in r.body for r in github.requests):
                    await asyncio.sleep(0.005)
                cut.cancel()
                await asyncio.gather(cut, return_exceptions=True)
                await redis.delete(keys.report_lock(ENV))  # its lock would expire with its worker
                assert await change(reporter, statuses, 30, "destroyed") is None
                assert await reporter.report(ENV, datetime.now(UTC)) == "reported"
                assert "destroyed" in github.comments(REPO, 5)[0].body
                assert (
                    github.commit_statuses(REPO, sha(30))[-1].description == "Preview environment destroyed"
                )
                assert not await redis.exists(keys.report_pending(ENV))
            finally:
                await redis.aclose()

        asyncio.run(run())
