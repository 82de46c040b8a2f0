"""End to end: what a deploy and an idle worker cost Redis, counted by the server itself (MONITOR).

Counted: every command a client sends (the gateway, the worker's jobs, arq's own claiming and
finishing, the worker's waiting for work), one each whether alone, pipelined or inside
MULTI/EXEC; a script is one command (what it calls inside costs no round trip). The deploy's
count includes its report to the (fake) GitHub; only this test's own reads are left out.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import redis

from handlers.settings import WorkerConfig
from providers.events import Provider
from tests.fakes.fakehosts import FakeGitHub
from tests.fakes.kubeapi import KubeAPIServer
from tests.support.hosts import github_host, open_pull
from tests.support.pull_requests import REPO, send, sha
from tests.support.redis_commands import CommandRecorder, Recorded
from tests.support.redis_server import RedisServer
from tests.support.worker import BackgroundWorker, kube_cluster, wait_for

# Issue 10's budget for one deploy, from the webhook to `deployed` and the jobs that follow.
DEPLOY_BUDGET = 90
# arq's poll every 20 ms (the old K8S_EE_POLL_DELAY) is 50 commands a second of idleness; a
# worker waiting for work makes a small fraction of that, however loaded the machine.
POLLING_20_MS_PER_S = 50
IDLE_FACTOR = 10


def _probe(server: RedisServer, recorder: CommandRecorder) -> Any:
    """A client of this test's own, on one connection the recorder leaves out."""
    probe = redis.Redis.from_url(server.url, single_connection_client=True)
    probe.ping()
    recorder.ignore.add(str(probe.connection._sock.getsockname()[1]))
    return probe


def _settled(recorder: CommandRecorder, quiet_s: float = 0.3, most: int = 10) -> None:
    """MONITOR trails the server a little: wait until nothing new comes for a moment (a worker
    that never stops polling gets `most` moments, and is then counted as it is)."""
    seen = recorder.mark()
    for _ in range(most):
        time.sleep(quiet_s)
        now = recorder.mark()
        if now == seen:
            return
        seen = now


def _summary(recorded: Recorded) -> str:
    return ", ".join(f"{name} {n}" for name, n in recorded.by_name().most_common())


def test_a_deploy_costs_at_most_90_redis_commands(
    gateway: Any,
    kube: KubeAPIServer,
    worker_config: WorkerConfig,
    redis_server: RedisServer,
    redis_client: Any,
) -> None:
    client = gateway()
    recorder = CommandRecorder(redis_server.url).start()
    probe = _probe(redis_server, recorder)
    status_key = worker_config.keys.status(f"github:{REPO}:42")
    queue = worker_config.connection.queue_name
    try:
        with (
            FakeGitHub() as github,
            BackgroundWorker(
                worker_config, kube_cluster(kube.url), {Provider.GITHUB: github_host(github, "ghp-test")}
            ),
        ):
            open_pull(github, REPO, 42, [sha(1)])
            # Started (its start-up is not the deploy's): it waits for work.
            wait_for(lambda: probe.get(worker_config.keys.worker_heartbeat()))
            _settled(recorder)
            start = recorder.mark()
            send(client, "opened", 42, sha(1), 0)
            wait_for(lambda: (raw := probe.get(status_key)) and json.loads(raw)["state"] == "deployed")
            # The jobs the deploy queued (reports, status webhooks) run out too.
            wait_for(lambda: probe.zcard(queue) == 0)
            _settled(recorder)
            deploy = recorder.since(start)
            # Reported: the comment is on the pull request.
            assert github.comments(REPO, 42)
    finally:
        recorder.stop()
        probe.close()
    counted = deploy.sent
    assert counted, "nothing recorded"
    assert len(counted) <= DEPLOY_BUDGET, (
        f"{len(counted)} commands: {Counter(c.name for c in counted).most_common()}"
    )
    # The wake-up went through the queue's wake list, not a tight poll.
    assert any(c.name == "BLPOP" for c in deploy.sent), _summary(deploy)


def test_an_idle_worker_waits_instead_of_polling(
    kube: KubeAPIServer, worker_config: WorkerConfig, redis_server: RedisServer, redis_client: Any
) -> None:
    recorder = CommandRecorder(redis_server.url).start()
    probe = _probe(redis_server, recorder)
    window_s = 3.0
    try:
        with BackgroundWorker(worker_config, kube_cluster(kube.url)):
            wait_for(lambda: probe.get(worker_config.keys.worker_heartbeat()))
            _settled(recorder)
            start = recorder.mark()
            time.sleep(window_s)
            idle = recorder.since(start)
    finally:
        recorder.stop()
        probe.close()
    # A count over the window, not a rate in time: a slow machine only makes fewer.
    assert len(idle.sent) <= POLLING_20_MS_PER_S * window_s / IDLE_FACTOR, _summary(idle)
