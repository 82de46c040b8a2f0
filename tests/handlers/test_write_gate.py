"""The write bucket of a host credential holds across clients: two GitHub clients with the same
token, writing at once, together never exceed the rate beyond the burst (counted from when the
fake host received each write)."""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis

from handlers.keys import Keys
from handlers.write_gate import RedisWriteGate
from providers.events import Provider
from providers.hosts.build import build_hosts
from providers.hosts.settings import load_host_settings
from tests.fakes.fakehosts import FakeGitHub

REPO = "octo/app"
INTERVAL = 0.2
BURST = 2
WRITES = 8  # per client


def test_two_clients_share_one_bucket_per_credential(redis_client: Any, redis_server: Any) -> None:
    with FakeGitHub() as github:
        github.add_token("ghp-test")
        github.add_repo(REPO)
        github.add_pull(REPO, 5)
        settings = load_host_settings(
            github_api_url=github.url,
            github_token="ghp-test",
            github_seconds_between_requests=0,
            github_seconds_between_writes=INTERVAL,
            github_write_burst=BURST,
            host_retry_backoff=0,
        )

        async def run() -> None:
            redis = Redis.from_url(redis_server.url)
            try:
                gate = RedisWriteGate(redis, Keys("k8s-ee:"))
                # Two clients, as two worker processes would have: nothing shared but Redis.
                clients = [build_hosts(settings, write_gate=gate)[Provider.GITHUB] for _ in range(2)]

                def write(client: Any, n: int) -> None:
                    for i in range(WRITES):
                        client.reply(REPO, 5, "1", f"reply {n}.{i}")

                await asyncio.gather(*(asyncio.to_thread(write, c, n) for n, c in enumerate(clients)))
                # Its credential's bucket is named by a digest, never the token.
                names = [key.decode() async for key in redis.scan_iter("k8s-ee:write-bucket:*")]
                assert names and not any("ghp-test" in name for name in names)
            finally:
                await redis.aclose()

        asyncio.run(run())
        arrivals = sorted(r.at for r in github.requests if r.method == "POST")
        assert len(arrivals) == 2 * WRITES
        # Any run of writes from the i-th to the j-th took at least the bucket's pace (one write
        # of slack for a request that reached the host late). Load only delays writes, so this
        # counts what went out; it does not time our code.
        for i in range(len(arrivals)):
            for j in range(i + 1, len(arrivals)):
                allowed = BURST + 1 + (arrivals[j] - arrivals[i]) / INTERVAL
                assert j - i + 1 <= allowed + 1e-6, (i, j, arrivals[j] - arrivals[i])
