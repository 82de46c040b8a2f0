"""What the lifecycle's end-to-end tests share: the gateway with its wake service, the worker's
settings, running one lifecycle job, and playing the cluster's part for a Deployment."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from arq.connections import RedisSettings, create_pool

from gateway.app import create_app
from gateway.settings import load_gateway_settings
from gateway.state import AppState
from gateway.wake import create_wake_app
from handlers.queue import Job
from handlers.settings import WorkerConfig, load_worker_config
from tests.fakes.kubeapi import KubeAPIServer
from tests.support.http_server import ServedApp
from tests.support.senders import ADMIN_TOKEN, SECRET_SETTINGS

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
WAKE_HOST = "k8s-ee-gateway-wake.k8s-ee.svc.cluster.local"
WAKE_PORT = 8081
DOMAIN = "preview.example.com"


@dataclass
class Gateway:
    api: httpx.Client
    wake: httpx.Client
    wake_url: str

    def visit(self, namespace: str, path: str = "/", **headers: str) -> httpx.Response:
        """A request for the preview host as the ingress controller forwards it to the wake service."""
        return self.wake.get(path, headers={"Host": f"{namespace}.{DOMAIN}", **headers})

    def environment(self, namespace: str) -> dict[str, Any]:
        answer = self.api.get(f"/api/v1/environments/{namespace}", headers=ADMIN)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def act(self, key: str, action: str) -> httpx.Response:
        provider, _, rest = key.partition(":")
        repository, _, number = rest.rpartition(":")
        return self.api.post(f"/api/v1/environments/{provider}/{repository}/{number}/{action}", headers=ADMIN)


@contextmanager
def gateway_with_wake(redis_url: str, **overrides: Any) -> Iterator[Gateway]:
    settings = load_gateway_settings(redis_url=redis_url, **SECRET_SETTINGS, **overrides)
    # Two servers on two event loops (threads): each its own state, as two gateway replicas.
    with (
        ServedApp(create_app(settings)) as api,
        ServedApp(create_wake_app(AppState.build(settings))) as wake,
        httpx.Client(base_url=api.url, timeout=15) as api_client,
        httpx.Client(base_url=wake.url, timeout=15) as wake_client,
    ):
        yield Gateway(api_client, wake_client, wake.url)


def lifecycle_config(tmp_path: Path, redis_url: str, config: str, **overrides: Any) -> WorkerConfig:
    path = tmp_path / "k8s-ee.yaml"
    path.write_text(config)
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "default_config": path,
        "preview_domain": DOMAIN,
        "lock_ttl": 3,
        "reconcile_max_tries": 3,
        "wake_service_host": WAKE_HOST,
        "wake_service_port": WAKE_PORT,
        # A test that goes wrong fails in seconds, not after the default ten minutes.
        "ready_timeout": 30,
        **overrides,
    }
    return load_worker_config(**values)


def enqueue(config: WorkerConfig, job: str, *args: Any, job_id: str | None = None) -> None:
    """Queue one job as arq does (the tests' workers do not tick: they run what is queued)."""

    async def put() -> None:
        pool = await create_pool(RedisSettings.from_dsn(config.connection.redis_url))
        try:
            await pool.enqueue_job(job, *args, _job_id=job_id, _queue_name=config.connection.queue_name)
        finally:
            await pool.aclose()

    asyncio.run(put())


def sweep_now(config: WorkerConfig) -> None:
    enqueue(config, Job.SWEEP)


def resync_now(config: WorkerConfig) -> None:
    enqueue(config, Job.RESYNC)


@dataclass
class Operators:
    """CloudNativePG and the MongoDB operator, as far as their status goes: each writes what its
    operator would after every write of its object. A Cluster whose hibernation annotation is on
    is hibernated (when `healthy`; CloudNativePG defers it otherwise)."""

    healthy: bool = True
    phase: str = "Setting up primary"

    def cnpg(self, obj: dict[str, Any]) -> dict[str, Any]:
        instances = obj["spec"].get("instances", 1)
        asleep = (obj["metadata"].get("annotations") or {}).get("cnpg.io/hibernation") == "on"
        if not self.healthy:
            return {"phase": self.phase, "instances": instances}
        status: dict[str, Any] = {"phase": "Cluster in healthy state", "instances": instances}
        if asleep:
            status["conditions"] = [
                {
                    "type": "cnpg.io/hibernation",
                    "status": "True",
                    "reason": "Hibernated",
                    "message": "Cluster has been hibernated",
                    "lastTransitionTime": "2026-11-27T03:04:05Z",
                }
            ]
        else:
            status["readyInstances"] = instances
            status["conditions"] = [
                {"type": "Ready", "status": "True", "reason": "ClusterIsReady", "message": "Cluster is Ready"}
            ]
        return status

    @staticmethod
    def mongodb(obj: dict[str, Any]) -> dict[str, Any]:
        members = obj["spec"].get("members", 1)
        return {"phase": "Running", "currentMongoDBMembers": members, "currentStatefulSetReplicas": members}


def operators(kube: KubeAPIServer) -> Operators:
    found = Operators()
    kube.set_status_hook("Cluster", found.cnpg)
    kube.set_status_hook("MongoDBCommunity", found.mongodb)
    return found


def hold_pods(kube: KubeAPIServer) -> None:
    """Pods created from now on stay unready (the image is slow to pull, say) until `mark_ready`."""
    kube.ready_delay = 3600


def mark_ready(kube: KubeAPIServer) -> None:
    """The test marks the app's pods ready: the controllers' kubelet says so at its next round."""
    kube.ready_delay = 0


def replicas(kube: KubeAPIServer, namespace: str) -> dict[str, int]:
    return {d["metadata"]["name"]: int(d["spec"]["replicas"]) for d in kube.objects("Deployment", namespace)}


def ingress_backend(kube: KubeAPIServer, namespace: str) -> str:
    ingress = kube.get_object("Ingress", namespace, f"{namespace}-app")
    assert ingress is not None
    return str(ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"])


def idle_since(redis: Any, key: str, moment: float) -> None:
    """Make an environment look unused since `moment`: its last activity, its idle deadline, and
    the last event its desired state saw (the policy checks that nothing used it after)."""
    import json
    from datetime import UTC, datetime

    from handlers.keys import Keys

    keys = Keys("k8s-ee:")
    redis.zadd(keys.activity(), {key: moment})
    after = float(redis.hget(keys.idle_after(), key) or 0)
    if redis.zscore(keys.idle_deadlines(), key) is not None and after:
        redis.zadd(keys.idle_deadlines(), {key: moment + after})
    record = json.loads(redis.get(keys.desired(key)))
    record["updated_at"] = datetime.fromtimestamp(moment, UTC).isoformat()
    redis.set(keys.desired(key), json.dumps(record))


def sighted_earlier(redis: Any, key: str, seconds: float) -> None:
    """Move the first read that showed an environment's change closed or gone `seconds` back, as
    if it had been made a pass ago (the test's clock; the passes themselves are run by the test)."""
    from handlers.keys import Keys

    sighting = Keys("k8s-ee:").gone_seen(key)
    first = redis.get(sighting)
    assert first is not None, f"no sighting of {key}"
    redis.set(sighting, str(float(first) - seconds), keepttl=True)
