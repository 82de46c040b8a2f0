"""Every rendered config in the fixtures fits its own quota, during a rolling update too.

Not computed from the quota's formula: the rendered ResourceQuota and LimitRange are created in
the test API server, and then every pod the namespace will run is created there the way its
controller would create it, through the server's LimitRanger and ResourceQuota admission: each
Deployment's replicas plus its rolling update's surge pod, and the pods the operators make of
the custom resources (their containers as the operators' code builds them, research notes), and
every volume claim. A pod or claim that does not fit is refused, as a ReplicaSet would be.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from handlers.config import RepoConfig, load_config
from handlers.render import RenderSettings, RenderTarget, render_environment, required_passwords
from providers.events import Provider
from tests.fakes.kubeapi import KubeAPIServer, KubeError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "configs"
# What the MongoDB Community operator gives a container the statefulSet override leaves out.
MONGODB_OPERATOR_DEFAULTS = {
    "requests": {"cpu": "500m", "memory": "400M"},
    "limits": {"cpu": "1", "memory": "500M"},
}


def fixture_configs() -> Iterator[Any]:
    for path in sorted(FIXTURES.glob("*.yaml")):
        if not path.name.startswith("invalid-"):
            yield pytest.param(load_config(path.read_text()), id=path.stem)


def rendered(config: RepoConfig) -> list[dict[str, Any]]:
    target = RenderTarget(
        provider=Provider.GITHUB,
        repository="acme/shop",
        number=7,
        head_sha="0" * 40,
        head_ref="main",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        now=datetime(2026, 1, 1, tzinfo=UTC),
    )
    passwords = {name: f"pw-{name}-0123456789" for name in required_passwords(config)}
    return render_environment(target, config, RenderSettings(), passwords)


def pod(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": copy.deepcopy(spec)}


def container(name: str, resources: dict[str, Any] | None) -> dict[str, Any]:
    return {"name": name, "image": "x", **({"resources": copy.deepcopy(resources)} if resources else {})}


def pods_of(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The pods a manifest's controller or operator runs at its peak."""
    kind, spec, name = manifest["kind"], manifest.get("spec") or {}, manifest["metadata"]["name"]
    if kind == "Deployment":
        replicas = spec.get("replicas", 1)
        strategy = spec.get("strategy") or {}
        surge = 0
        if strategy.get("type", "RollingUpdate") == "RollingUpdate":
            given = (strategy.get("rollingUpdate") or {}).get("maxSurge", "25%")
            surge = math.ceil(int(given[:-1]) * replicas / 100) if isinstance(given, str) else int(given)
        return [pod(f"{name}-{n}", spec["template"]["spec"]) for n in range(replicas + surge)]
    if kind == "Cluster":  # CloudNativePG: bootstrap-controller init + postgres, both spec.resources
        resources = spec.get("resources")
        instance = {
            "initContainers": [container("bootstrap-controller", resources)],
            "containers": [container("postgres", resources)],
        }
        return [pod(f"{name}-{n + 1}", instance) for n in range(spec.get("instances", 1))]
    if kind == "MongoDBCommunity":  # the override's resources by container name, else the operator's
        template = spec["statefulSet"]["spec"]["template"]["spec"]
        given = {
            c["name"]: c.get("resources") for c in [*template["containers"], *template["initContainers"]]
        }
        member = {
            "initContainers": [
                container(n, given.get(n) or MONGODB_OPERATOR_DEFAULTS)
                for n in ("mongod-posthook", "mongodb-agent-readinessprobe")
            ],
            "containers": [
                container(n, given.get(n) or MONGODB_OPERATOR_DEFAULTS) for n in ("mongod", "mongodb-agent")
            ],
        }
        return [pod(f"{name}-{n}", member) for n in range(spec.get("members", 1))]
    if kind == "Tenant":  # minio with the pool's resources; the sidecar and init with sideCars.resources
        sidecar = (spec.get("sideCars") or {}).get("resources")
        return [
            pod(
                f"{name}-{pool['name']}-{n}",
                {
                    "initContainers": [container("validate-arguments", sidecar)],
                    "containers": [container("minio", pool.get("resources")), container("sidecar", sidecar)],
                },
            )
            for pool in spec["pools"]
            for n in range(pool.get("servers", 1))
        ]
    return []


# The Services each operator makes for its resource: CloudNativePG -rw, -ro, -r; MongoDB -svc;
# MinIO minio, -hl, -console.
OPERATOR_SERVICES = {
    "Cluster": ("rw", "ro", "r"),
    "MongoDBCommunity": ("svc",),
    "Tenant": ("minio", "hl", "console"),
}


def claims_of(manifest: dict[str, Any]) -> list[str]:
    kind, spec = manifest["kind"], manifest.get("spec") or {}
    if kind == "PersistentVolumeClaim":
        return []  # applied as it is
    if kind == "Cluster":
        return [spec["storage"]["size"]] * spec.get("instances", 1)
    if kind == "MongoDBCommunity":
        templates = spec["statefulSet"]["spec"]["volumeClaimTemplates"]
        return [t["spec"]["resources"]["requests"]["storage"] for t in templates] * spec.get("members", 1)
    if kind == "Tenant":
        return [
            pool["volumeClaimTemplate"]["spec"]["resources"]["requests"]["storage"]
            for pool in spec["pools"]
            for _ in range(pool.get("servers", 1) * pool.get("volumesPerServer", 1))
        ]
    return []


@pytest.fixture(scope="module")
def kube() -> Iterator[KubeAPIServer]:
    with KubeAPIServer() as server:
        yield server


@pytest.mark.parametrize("config", list(fixture_configs()))
def test_every_rendered_config_fits_its_own_quota(config: RepoConfig, kube: KubeAPIServer) -> None:
    kube.reset()
    manifests = rendered(config)
    namespace = manifests[0]["metadata"]["name"]
    kube.add_object(manifests[0])
    for manifest in manifests:
        if manifest["kind"] in ("ResourceQuota", "LimitRange", "PersistentVolumeClaim", "Service"):
            kube.add_object(copy.deepcopy(manifest))
    admitted: list[str] = []
    for manifest in manifests:
        for candidate in pods_of(manifest):
            candidate["metadata"]["namespace"] = namespace
            try:
                kube.add_object(candidate)
            except KubeError as refused:
                pytest.fail(f"{candidate['metadata']['name']} of {manifest['kind']}: {refused.message}")
            admitted.append(candidate["metadata"]["name"])
        for suffix in OPERATOR_SERVICES.get(manifest["kind"], ()):
            name = f"{manifest['metadata']['name']}-{suffix}"
            try:
                kube.add_object(
                    {
                        "apiVersion": "v1",
                        "kind": "Service",
                        "metadata": {"name": name, "namespace": namespace},
                    }
                )
            except KubeError as refused:
                pytest.fail(f"a Service of {manifest['kind']}: {refused.message}")
        for index, size in enumerate(claims_of(manifest)):
            claim = {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": f"{manifest['metadata']['name']}-{index}", "namespace": namespace},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}},
            }
            try:
                kube.add_object(claim)
            except KubeError as refused:
                pytest.fail(f"a volume of {manifest['kind']}: {refused.message}")
    # The app's surge pod is among them.
    app = f"{namespace}-app"
    assert len([n for n in admitted if n.startswith(app)]) == 2


def test_a_pod_that_does_not_fit_is_refused_by_this_check(kube: KubeAPIServer) -> None:
    """The check can fail: one more app pod than the rollout needs does not fit a tight quota."""
    kube.reset()
    manifests = rendered(load_config((FIXTURES / "minimal.yaml").read_text()))
    namespace = manifests[0]["metadata"]["name"]
    for manifest in manifests[:3]:  # the namespace, its quota and limits
        kube.add_object(manifest)
    deployment = next(m for m in manifests if m["kind"] == "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    with pytest.raises(KubeError, match="exceeded quota: pr-quota"):
        for n in range(10):
            kube.add_object(
                pod(f"extra-{n}", spec) | {"metadata": {"name": f"extra-{n}", "namespace": namespace}}
            )


def test_default_configs_keep_the_first_editions_figures() -> None:
    """SPEC 2's worked examples hold for default configs: the floor already covers what they run."""
    app_only = next(m for m in rendered(load_config("projectId: shop\n")) if m["kind"] == "ResourceQuota")
    assert {
        k: app_only["spec"]["hard"][k]
        for k in ("requests.cpu", "requests.memory", "limits.cpu", "limits.memory")
    } == {
        "requests.cpu": "200m",
        "requests.memory": "512Mi",
        "limits.cpu": "690m",
        "limits.memory": "1177Mi",
    }
    with_postgresql = load_config("projectId: shop\ndatabases:\n  postgresql: true\n")
    quota = next(m for m in rendered(with_postgresql) if m["kind"] == "ResourceQuota")["spec"]["hard"]
    assert (quota["requests.cpu"], quota["requests.memory"], quota["limits.cpu"], quota["limits.memory"]) == (
        "450m",
        "768Mi",
        "1265m",
        "1766Mi",
    )
