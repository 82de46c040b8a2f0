"""Pieces of pod specs that the app and the databases share: resources, security, probes."""

from __future__ import annotations

from typing import Any

# Non-root UID/GID the app runs as (SPEC 2).
APP_UID = 1001
# A mount point inside a container (an emptyDir), not a temporary file on this host.
TMP_DIR = "/tmp"  # noqa: S108


def resources(requests: tuple[str, str], limits: tuple[str, str]) -> dict[str, dict[str, str]]:
    """`(cpu, memory)` requests and limits."""
    return {
        "requests": {"cpu": requests[0], "memory": requests[1]},
        "limits": {"cpu": limits[0], "memory": limits[1]},
    }


def pod_security(uid: int, gid: int, fs_group: int | None = None) -> dict[str, Any]:
    context: dict[str, Any] = {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": gid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if fs_group is not None:
        context["fsGroup"] = fs_group
        # Skip the recursive chown of a volume that already has the right group.
        context["fsGroupChangePolicy"] = "OnRootMismatch"
    return context


def container_security(*, read_only_root: bool = True) -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": read_only_root,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def tcp_probe(port: str, *, period: int, initial_delay: int = 0, failures: int = 3) -> dict[str, Any]:
    probe: dict[str, Any] = {
        "tcpSocket": {"port": port},
        "periodSeconds": period,
        "timeoutSeconds": 3,
        "failureThreshold": failures,
    }
    if initial_delay:
        probe["initialDelaySeconds"] = initial_delay
    return probe


def empty_dir(name: str) -> dict[str, Any]:
    return {"name": name, "emptyDir": {}}
