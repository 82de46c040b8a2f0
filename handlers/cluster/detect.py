"""Which back-end the worker uses, and one line saying why (logged at start-up).

K8S_EE_CLUSTER=kubernetes or directory decides. Unset, a pod (KUBERNETES_SERVICE_HOST) or
a kubeconfig that exists ($KUBECONFIG, ~/.kube/config, or the one given) means Kubernetes;
with neither the manifests go to the directory, so the gateway runs anywhere.
"""

from __future__ import annotations

import os
from pathlib import Path

from handlers.cluster import ClusterChoice
from handlers.cluster.directory import DirectoryCluster
from handlers.cluster.kubernetes import KubernetesCluster

SETTING = "K8S_EE_CLUSTER"
CHOICES = ("kubernetes", "directory")


def detect_cluster(
    setting: str | None, directory: str | os.PathLike[str], kubeconfig: str | None = None
) -> ClusterChoice:
    """`kubeconfig` is a file named in the gateway's settings; None lets the usual places count."""
    choice = (setting or "").strip().lower()
    if choice and choice not in CHOICES:
        raise ValueError(f"{SETTING} must be one of {', '.join(CHOICES)}, not {setting!r}")
    if choice == "directory":
        return _directory(directory, f"{SETTING}=directory")
    if choice == "kubernetes":
        cluster = KubernetesCluster.from_environment(kubeconfig)
        return ClusterChoice(
            cluster, f"cluster back-end: kubernetes ({SETTING}=kubernetes), {cluster.source}"
        )

    if os.environ.get("KUBERNETES_SERVICE_HOST") and kubeconfig is None:
        cluster = KubernetesCluster.from_environment(None)
        return ClusterChoice(cluster, f"cluster back-end: kubernetes (running in a pod), {cluster.source}")
    if _kubeconfig_exists(kubeconfig):
        cluster = KubernetesCluster.from_environment(kubeconfig)
        return ClusterChoice(cluster, f"cluster back-end: kubernetes (found a kubeconfig), {cluster.source}")
    return _directory(directory, f"{SETTING} unset, not in a pod and no kubeconfig found")


def _directory(directory: str | os.PathLike[str], why: str) -> ClusterChoice:
    cluster = DirectoryCluster(directory)
    return ClusterChoice(
        cluster, f"cluster back-end: directory ({why}), writing manifests under {cluster.root}"
    )


def _kubeconfig_exists(given: str | None) -> bool:
    """Whether a kubeconfig the client would load exists: the given one, any file of
    $KUBECONFIG's list (the client merges them), or ~/.kube/config."""
    if given:
        return Path(given).expanduser().is_file()
    listed = os.environ.get("KUBECONFIG")
    if listed:
        return any(Path(part).expanduser().is_file() for part in listed.split(os.pathsep) if part)
    return (Path.home() / ".kube" / "config").is_file()
