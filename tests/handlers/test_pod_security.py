"""Pod Security: the namespace's levels, what our own pods meet, and what the operators' pods need.

The restricted rules are checked here as the Pod Security Standards state them
(kubernetes.io/docs/concepts/security/pod-security-standards), independently of the renderer.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from handlers.config import config_from_mapping
from handlers.render import RenderSettings, RenderTarget, render_environment, required_passwords
from providers.events import Provider

ALLOWED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def render(databases: dict[str, bool], **settings: Any) -> list[dict[str, Any]]:
    config = config_from_mapping({"projectId": "shop", "databases": databases})
    target = RenderTarget(
        provider=Provider.GITHUB,
        repository="acme/shop",
        number=3,
        head_sha="0" * 40,
        head_ref="main",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        now=datetime(2026, 1, 1, tzinfo=UTC),
    )
    passwords = {name: f"pw-{name}-0123456789" for name in required_passwords(config)}
    return render_environment(target, config, RenderSettings(**settings), passwords)


def restricted_problems(pod: dict[str, Any]) -> list[str]:
    problems = []
    security = pod.get("securityContext") or {}
    if pod.get("hostNetwork") or pod.get("hostPID") or pod.get("hostIPC"):
        problems.append("host namespaces")
    for volume in pod.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUMES:
            problems.append(f"volume {volume['name']}: {kinds}")
    for container in [*(pod.get("initContainers") or []), *pod["containers"]]:
        own = container.get("securityContext") or {}
        name = container["name"]
        if own.get("privileged"):
            problems.append(f"{name}: privileged")
        if own.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation not false")
        capabilities = own.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            problems.append(f"{name}: capabilities not dropped")
        if set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}:
            problems.append(f"{name}: capabilities added")
        if not own.get("runAsNonRoot", security.get("runAsNonRoot")):
            problems.append(f"{name}: may run as root")
        if own.get("runAsUser", security.get("runAsUser")) == 0:
            problems.append(f"{name}: runs as UID 0")
        seccomp = (own.get("seccompProfile") or security.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name}: seccomp {seccomp}")
        if container.get("ports") and any(p.get("hostPort") for p in container["ports"]):
            problems.append(f"{name}: host port")
    return problems


def test_the_namespace_carries_the_configured_levels() -> None:
    labels = render({})[0]["metadata"]["labels"]
    assert {k: v for k, v in labels.items() if k.startswith("pod-security.kubernetes.io/")} == {
        "pod-security.kubernetes.io/enforce": "baseline",
        "pod-security.kubernetes.io/enforce-version": "latest",
        "pod-security.kubernetes.io/warn": "restricted",
        "pod-security.kubernetes.io/warn-version": "latest",
        "pod-security.kubernetes.io/audit": "restricted",
        "pod-security.kubernetes.io/audit-version": "latest",
    }
    strict = render({}, pod_security_enforce="restricted", pod_security_version="v1.30")[0]["metadata"][
        "labels"
    ]
    assert strict["pod-security.kubernetes.io/enforce"] == "restricted"
    assert strict["pod-security.kubernetes.io/enforce-version"] == "v1.30"


def test_our_own_pods_meet_restricted() -> None:
    manifests = render({"redis": True, "mariadb": True, "postgresql": True})
    deployments = [m for m in manifests if m["kind"] == "Deployment"]
    assert {d["metadata"]["name"] for d in deployments} == {"shop-pr-3-app", "app-redis", "app-mariadb"}
    for deployment in deployments:
        assert restricted_problems(deployment["spec"]["template"]["spec"]) == [], deployment["metadata"][
            "name"
        ]


def test_the_checks_above_can_fail() -> None:
    deployment = next(m for m in render({}) if m["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    pod["containers"][0]["securityContext"]["capabilities"] = {"add": ["NET_ADMIN"]}
    pod["volumes"].append({"name": "host", "hostPath": {"path": "/"}})
    assert len(restricted_problems(pod)) == 3


@pytest.mark.parametrize(
    ("database", "allowed"),
    [("postgresql", True), ("redis", True), ("mariadb", True), ("mongodb", False), ("minio", False)],
)
def test_enforcing_restricted_is_refused_where_an_operators_pods_cannot_meet_it(
    database: str, allowed: bool
) -> None:
    if allowed:
        render({database: True}, pod_security_enforce="restricted")
        return
    with pytest.raises(ValueError, match="K8S_EE_POD_SECURITY_ENFORCE=restricted would refuse") as refused:
        render({database: True}, pod_security_enforce="restricted")
    assert "which meet baseline" in str(refused.value)
    render({database: True})  # the default, baseline, admits them
