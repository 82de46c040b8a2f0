"""Which back-end the worker uses, and one line saying why (logged at start-up).

K8S_EE_CLUSTER=kubernetes or directory decides. Unset, a pod (KUBERNETES_SERVICE_HOST) or
a kubeconfig that exists ($KUBECONFIG, ~/.kube/config, or the one given) means Kubernetes;
with neither the manifests go to the directory, so the gateway runs anywhere.

A Kubernetes back-end that cannot be set up (no usable kubeconfig, no service account) is
a `ClusterSetupError`: one line naming the setting that chose it, said before the worker
starts, never a traceback.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from handlers.cluster import REAPPLY_AFTER, ClusterChoice, ClusterError
from handlers.cluster.directory import DirectoryCluster
from handlers.cluster.kubernetes import KubernetesCluster
from providers.settings import SettingsError

SETTING = "K8S_EE_CLUSTER"
KUBECONFIG_SETTING = "K8S_EE_KUBECONFIG"
CHOICES = ("kubernetes", "directory")


class ClusterSetupError(SettingsError):
    """The chosen back-end cannot be set up; the message names the setting behind the choice."""


def _kubernetes(kubeconfig: str | None, why: str, reapply_after: timedelta | None) -> KubernetesCluster:
    try:
        return KubernetesCluster.from_environment(kubeconfig, reapply_after=reapply_after)
    except Exception as exc:
        # The client's loader raises what it meets (its own errors, YAML's, a KeyError for a
        # missing entry): whatever it is, this configuration cannot be used.
        reason = exc.message if isinstance(exc, ClusterError) else f"{type(exc).__name__}: {exc}"
        where = (
            f"{KUBECONFIG_SETTING}={kubeconfig}"
            if kubeconfig
            else "$KUBECONFIG, ~/.kube/config or the pod's service account"
        )
        raise ClusterSetupError(
            f"{why}, but no usable cluster configuration ({where}): {' '.join(reason.split())}; "
            f"set {KUBECONFIG_SETTING} to a working kubeconfig, or {SETTING}=directory"
        ) from None


def detect_cluster(
    setting: str | None,
    directory: str | os.PathLike[str],
    kubeconfig: str | None = None,
    reapply_after: timedelta | None = REAPPLY_AFTER,
) -> ClusterChoice:
    """`kubeconfig` is a file named in the gateway's settings; None lets the usual places count."""
    choice = (setting or "").strip().lower()
    if choice and choice not in CHOICES:
        raise ValueError(f"{SETTING} must be one of {', '.join(CHOICES)}, not {setting!r}")
    if choice == "directory":
        return _directory(directory, f"{SETTING}=directory", reapply_after)
    if choice == "kubernetes":
        cluster = _kubernetes(kubeconfig, f"{SETTING}=kubernetes", reapply_after)
        return ClusterChoice(
            cluster, f"cluster back-end: kubernetes ({SETTING}=kubernetes), {cluster.source}"
        )

    if os.environ.get("KUBERNETES_SERVICE_HOST") and kubeconfig is None:
        cluster = _kubernetes(None, f"{SETTING} unset and running in a pod", reapply_after)
        return ClusterChoice(cluster, f"cluster back-end: kubernetes (running in a pod), {cluster.source}")
    if _kubeconfig_exists(kubeconfig):
        cluster = _kubernetes(kubeconfig, f"{SETTING} unset and a kubeconfig was found", reapply_after)
        return ClusterChoice(cluster, f"cluster back-end: kubernetes (found a kubeconfig), {cluster.source}")
    return _directory(directory, f"{SETTING} unset, not in a pod and no kubeconfig found", reapply_after)


def _directory(directory: str | os.PathLike[str], why: str, reapply_after: timedelta | None) -> ClusterChoice:
    cluster = DirectoryCluster(directory, reapply_after=reapply_after)
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
