"""Lifecycle benchmark: what a sweep and a resync cost, how soon an idle environment sleeps, how
soon a visit wakes one.

A redis-server of its own; the project's test Kubernetes API server (tests/fakes/kubeapi, its
controllers' ready delay 0: a pod is ready as soon as it exists) and the fake GitHub
(tests/fakes/fakehosts, PyGithub over HTTP, unpaced: the host's own pacing is left out) in
this process; the worker's own job functions, and for the last two figures the real arq worker
and the gateway's wake service on uvicorn. Figures are printed, never asserted.

1. **Sweep and resync** at `--environments` deployed environments over `--repositories`
   repositories (one open pull request each on GitHub, one namespace each in the cluster; 1% of
   the pull requests moved to a new head, 1% closed since): the wall time of one run, and the
   calls it made to GitHub, to the Kubernetes API and to Redis.
2. **Idle deadline to hibernated**: `--idle` deployed environments whose idle deadlines fall one
   after another while a worker ticks; from each deadline to its status `hibernated`.
3. **Wake on visit**: `--wakes` hibernated environments without databases, each visited once:
   from the request to the wake service to the waiting page's stream saying `ready` (the host
   routed to the app again), and how much of that came after the app's pod was ready.

    .venv/bin/python -m bench.lifecycle [--environments 10000] [--repositories 500] [--idle 20] [--wakes 20]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import redis as sync_redis
from arq.connections import ArqRedis, RedisSettings, create_pool

from bench.ingest import free_port, redis_binary, redis_command, start
from gateway.settings import load_gateway_settings
from gateway.state import AppState
from gateway.wake import create_wake_app
from handlers import naming
from handlers.keys import Keys
from handlers.lifecycle.activity import Activity
from handlers.lifecycle.jobs import run_resync, run_sweep
from handlers.settings import WorkerConfig, load_worker_config
from handlers.status import EnvironmentStatus, StatusStore
from handlers.worker import process_event, shutdown, startup
from providers.events import EventType, LifecycleEvent, Provider
from providers.hosts.build import build_hosts
from providers.hosts.settings import load_host_settings
from tests.fakes.fakehosts import FakeGitHub
from tests.fakes.kubeapi import KubeAPIServer
from tests.support.http_server import ServedApp
from tests.support.worker import BackgroundWorker, kube_cluster

TOKEN = "ghp-bench-0123456789"
DOMAIN = "preview.example.com"
CONFIG = "projectId: shop\napp:\n  port: 8080\n"
KEYS = Keys("k8s-ee:")


def sha(n: int, salt: str = "") -> str:
    return hashlib.sha1(f"{salt}{n}".encode()).hexdigest()


def repo_of(i: int) -> str:
    return f"acme/service-{i:04d}"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def commands(client: Any) -> int:
    return int(client.info("stats")["total_commands_processed"])


# -- 1. sweep and resync ---------------------------------------------------------------------------


async def populate(
    ctx: dict[str, Any], github: FakeGitHub, kube: KubeAPIServer, envs: int, repos: int
) -> None:
    """`envs` deployed environments: their events through the worker, their records as a reconcile
    leaves them, their namespaces in the cluster, their pull requests on GitHub."""
    redis: ArqRedis = ctx["redis"]
    statuses: StatusStore = ctx["deps"].statuses
    activity: Activity = ctx["lifecycle"].activity
    now = datetime.now(UTC)
    for r in range(repos):
        github.add_repo(repo_of(r))
    for n in range(envs):
        repository, number = repo_of(n % repos), n // repos + 1
        head = sha(n)
        github.add_pull(repository, number, head_sha=head, head_ref=f"feature-{number}")
        opened = LifecycleEvent(
            provider=Provider.GITHUB,
            delivery_id=f"opened-{n}",
            type=EventType.CHANGE_OPENED,
            repository=repository,
            number=number,
            head_sha=head,
            head_ref=f"feature-{number}",
            occurred_at=now,
            received_at=now,
        )
        await process_event(ctx, opened.model_dump_json())
        namespace = f"s{n % repos}-pr-{number}"
        key = f"github:{repository}:{number}"
        await statuses.put(
            EnvironmentStatus(
                provider=Provider.GITHUB,
                repository=repository,
                number=number,
                state="deployed",
                namespace=namespace,
                head_sha=head,
                preview_url=naming.preview_url(namespace, DOMAIN),
                updated_at=now,
            )
        )
        await redis.set(KEYS.namespace(namespace), key)
        await activity.awake(key, now.timestamp(), None)
        kube.add_object(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {
                    "name": namespace,
                    "labels": {
                        naming.LABEL_MANAGED_BY: naming.MANAGED_BY,
                        naming.LABEL_PROVIDER: "github",
                        naming.LABEL_PR_NUMBER: str(number),
                    },
                    "annotations": {naming.ANNOTATION_REPOSITORY: repository},
                },
            }
        )
    # The reconciles the openings queued are not the benchmark's: dropped.
    await redis.delete("k8s-ee:queue")
    # Since the last pass: 1% of the pull requests got new commits, 1% were closed.
    for n in range(0, envs, 100):
        github.repos[repo_of(n % repos)].pulls[n // repos + 1].head_sha = sha(n, "moved")
    for n in range(50, envs, 100):
        github.repos[repo_of(n % repos)].pulls[n // repos + 1].state = "closed"


async def sweep_and_resync(redis_url: str, workdir: Path, envs: int, repos: int) -> None:
    with KubeAPIServer() as kube, FakeGitHub() as github:
        github.add_token(TOKEN)
        settings = load_host_settings(
            github_api_url=github.url,
            github_token=TOKEN,
            github_seconds_between_requests=0,
            github_seconds_between_writes=0,
        )
        hosts = build_hosts(settings)
        config = load_worker_config(redis_url=redis_url, preview_domain=DOMAIN)
        redis: ArqRedis = await create_pool(RedisSettings.from_dsn(redis_url))
        await redis.flushall()
        cluster = kube_cluster(kube.url)
        ctx: dict[str, Any] = {"redis": redis, "settings": config, "cluster": cluster, "hosts": hosts}
        await startup(ctx)
        started = time.monotonic()
        await populate(ctx, github, kube, envs, repos)
        print(
            f"  {envs:,} environments over {repos:,} repositories set up in {time.monotonic() - started:.1f} s"
        )
        counter = sync_redis.Redis.from_url(redis_url)
        print(
            f"  {'run':<8} {'wall':>9} {'GitHub calls':>13} {'Kubernetes calls':>17} {'Redis commands':>15}  outcome"
        )
        for name, job in (("resync", run_resync), ("sweep", run_sweep)):
            github.reset_requests()
            kube.reset_requests()
            before = commands(counter)
            started = time.monotonic()
            outcome = await job(ctx)
            wall = time.monotonic() - started
            used = commands(counter) - before - 1
            print(
                f"  {name:<8} {wall:>8.2f}s {len(github.requests):>13,} {len(kube.requests):>17,}"
                f" {used:>15,}  {outcome}"
            )
        counter.close()  # type: ignore[no-untyped-call]
        await shutdown(ctx)
        cluster.close()
        for host in hosts.values():
            host.close()
        await redis.aclose()


# -- 2. idle deadline to hibernated ----------------------------------------------------------------


def deploy(config: WorkerConfig, kube: KubeAPIServer, count: int, prefix: int) -> list[str]:
    """`count` environments deployed through the worker (webhook events, reconciles, readiness)."""
    from tests.support.worker import drain

    async def send() -> None:
        redis: ArqRedis = await create_pool(RedisSettings.from_dsn(config.connection.redis_url))
        now = datetime.now(UTC)
        for i in range(count):
            event = LifecycleEvent(
                provider=Provider.GITHUB,
                delivery_id=f"open-{prefix}-{i}",
                type=EventType.CHANGE_OPENED,
                repository="acme/web",
                number=prefix + i,
                head_sha=sha(prefix + i),
                head_ref=f"feature-{i}",
                occurred_at=now,
                received_at=now,
            )
            await redis.enqueue_job(
                "process_event", event.model_dump_json(), _queue_name=config.connection.queue_name
            )
        await redis.aclose()

    asyncio.run(send())
    drain(config, kube_cluster(kube.url))
    return [f"github:acme/web:{prefix + i}" for i in range(count)]


def status_of(client: Any, key: str) -> EnvironmentStatus | None:
    raw = client.get(KEYS.status(key))
    return EnvironmentStatus.model_validate_json(raw) if raw else None


def wait(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError("not reached in time")
        time.sleep(0.005)


def idle_to_hibernated(config: WorkerConfig, kube: KubeAPIServer, count: int) -> None:
    client = sync_redis.Redis.from_url(config.connection.redis_url)
    keys = deploy(config, kube, count, 1000)
    base = time.time() + 2.0
    deadlines: dict[str, float] = {}
    for i, key in enumerate(keys):
        # Unused since a while ago, its deadline half a second after the previous one's.
        deadline = base + 0.5 * i
        deadlines[key] = deadline
        raw: bytes = client.get(KEYS.desired(key))  # type: ignore[assignment]
        record = json.loads(raw)
        record["updated_at"] = datetime.fromtimestamp(deadline - 14400, UTC).isoformat()
        client.set(KEYS.desired(key), json.dumps(record))
        client.zadd(KEYS.activity(), {key: deadline - 14400})
        client.zadd(KEYS.idle_deadlines(), {key: deadline})
    asleep: dict[str, float] = {}
    with BackgroundWorker(config, kube_cluster(kube.url), periodic=True):

        def all_asleep() -> bool:
            for key in keys:
                if key not in asleep:
                    status = status_of(client, key)
                    if status is not None and status.state == "hibernated":
                        asleep[key] = time.time()
            return len(asleep) == len(keys)

        wait(all_asleep, timeout=60 + 0.5 * count)
        wait(lambda: client.zcard(config.connection.queue_name) == 0 and not client.keys("arq:in-progress:*"))
    lags = [asleep[key] - deadlines[key] for key in keys]
    print(
        f"  {count} environments: from the idle deadline to hibernated, median {statistics.median(lags):.3f} s,"
        f" p95 {percentile(lags, 0.95):.3f} s, max {max(lags):.3f} s (the tick runs each second)"
    )
    client.close()  # type: ignore[no-untyped-call]


# -- 3. wake on visit ------------------------------------------------------------------------------


def ready_at(kube: KubeAPIServer, namespace: str, after: float) -> float:
    """When the app's Deployment first reported a ready replica (watched from here every 2 ms)."""
    name = naming.app_name(namespace)
    while True:
        deployment = kube.get_object("Deployment", namespace, name) or {}
        if (deployment.get("spec") or {}).get("replicas") and (
            (deployment.get("status") or {}).get("readyReplicas") or 0
        ) > 0:
            return time.time()
        if time.time() - after > 60:
            raise RuntimeError(f"{namespace} never ready")
        time.sleep(0.002)


def visit_and_follow(wake_url: str, namespace: str) -> float:
    """Visit, then follow the page's stream until it says ready: when it did (epoch s)."""
    host = {"Host": f"{namespace}.{DOMAIN}"}
    with httpx.Client(base_url=wake_url, timeout=60) as client:
        page = client.get("/", headers={**host, "Accept": "text/html"})
        assert page.status_code == 503, page.status_code
        with client.stream("GET", "/.k8s-ee-wake/events", headers=host) as events:
            for line in events.iter_lines():
                if line.startswith("data: ") and json.loads(line[6:]).get("phase") == "ready":
                    return time.time()
    raise RuntimeError(f"{namespace}: the stream ended before ready")


def wake_on_visit(config: WorkerConfig, kube: KubeAPIServer, count: int) -> None:
    client = sync_redis.Redis.from_url(config.connection.redis_url)
    keys = deploy(config, kube, count, 2000)

    # Hibernated on request, as any of them.
    async def hibernate() -> None:
        redis: ArqRedis = await create_pool(RedisSettings.from_dsn(config.connection.redis_url))
        for key in keys:
            provider, _, rest = key.partition(":")
            repository, _, number = rest.rpartition(":")
            event = LifecycleEvent(
                provider=Provider(provider),
                delivery_id=f"sleep-{key}",
                type=EventType.ENV_HIBERNATE,
                repository=repository,
                number=int(number),
                received_at=datetime.now(UTC),
            )
            await redis.enqueue_job(
                "process_event", event.model_dump_json(), _queue_name=config.connection.queue_name
            )
        await redis.aclose()

    asyncio.run(hibernate())
    from tests.support.worker import drain

    drain(config, kube_cluster(kube.url))
    gateway = load_gateway_settings(redis_url=config.connection.redis_url, admin_token="bench-admin")
    totals: list[float] = []
    added: list[float] = []
    with (
        ServedApp(create_wake_app(AppState.build(gateway))) as wake,
        BackgroundWorker(config, kube_cluster(kube.url)),
    ):
        for key in keys:
            status = status_of(client, key)
            assert status is not None and status.state == "hibernated" and status.namespace
            namespace = status.namespace
            pod: list[float] = []
            watcher = threading.Thread(
                target=lambda ns=namespace, into=pod: into.append(ready_at(kube, ns, time.time()))
            )
            started = time.time()
            watcher.start()
            landed = visit_and_follow(wake.url, namespace)
            watcher.join()
            totals.append(landed - started)
            added.append(landed - pod[0])
        # What the wakes queued (reports, readiness checks) runs out before the worker stops.
        wait(lambda: client.zcard(config.connection.queue_name) == 0 and not client.keys("arq:in-progress:*"))
    print(
        f"  {count} wakes: request to ready on the page, median {statistics.median(totals):.3f} s,"
        f" p95 {percentile(totals, 0.95):.3f} s; after the pod was ready, median"
        f" {statistics.median(added):.3f} s, max {max(added):.3f} s"
    )
    client.close()  # type: ignore[no-untyped-call]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--environments", type=int, default=10_000)
    parser.add_argument("--repositories", type=int, default=500)
    parser.add_argument("--idle", type=int, default=20)
    parser.add_argument("--wakes", type=int, default=20)
    args = parser.parse_args()
    # The worker's warnings (no credentials to report with, no API server addresses) are not figures.
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("k8s_ee").setLevel(logging.ERROR)
    redis_bin = redis_binary()
    if not redis_bin:
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="k8s-ee-bench-lifecycle-"))
    port = free_port()
    redis = start(redis_command(redis_bin, port, workdir), {})
    url = f"redis://127.0.0.1:{port}/0"
    try:
        time.sleep(0.3)
        print("sweep and resync")
        asyncio.run(sweep_and_resync(url, workdir, args.environments, args.repositories))
        config_file = workdir / "k8s-ee.yaml"
        config_file.write_text(CONFIG)
        config = load_worker_config(
            redis_url=url,
            default_config=config_file,
            preview_domain=DOMAIN,
            wake_service_host="k8s-ee-gateway-wake.k8s-ee.svc.cluster.local",
            sweep_interval=0,
            resync_interval=0,
        )
        sync_redis.Redis.from_url(url).flushall()
        with KubeAPIServer(ready_delay=0.0) as kube:
            print("idle deadline to hibernated")
            idle_to_hibernated(config, kube, args.idle)
            print("wake on visit (controller delay 0)")
            wake_on_visit(config, kube, args.wakes)
    finally:
        redis.terminate()
        redis.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
