"""Where an environment's manifests go: a Kubernetes cluster, or a directory a GitOps tool reads.

The worker renders an environment (handlers/render) and hands the manifests to a `Cluster`.
Both back-ends keep the same rules (SPEC 1/2): the namespace's owner is checked before
anything in it is changed or deleted, everything is applied in the order given, objects the
configuration no longer asks for are removed, and a namespace labelled `preserve=true` is
not destroyed.

Errors say whether trying again later can help: `TransientClusterError` (the API was
unreachable, overloaded, or the namespace is still being deleted) or `PermanentClusterError`
(the cluster refused what was sent; `OwnershipError` when the namespace is not ours). Their
messages are safe to show to users: they never carry a credential.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field


class ClusterError(Exception):
    """An apply, destroy or read that did not succeed; `str(error)` is safe to show."""

    def __init__(self, message: str, *, status: int | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        # The HTTP status and Status.reason the API answered with, when it answered.
        self.status = status
        self.reason = reason


class TransientClusterError(ClusterError):
    """Trying again later may succeed: timeouts, 5xx, 429, conflicts, a namespace still terminating."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        reason: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, reason=reason)
        # Seconds the API asked us to wait (Retry-After), when it said.
        self.retry_after = retry_after


class PermanentClusterError(ClusterError):
    """Repeating the same request gives the same answer: invalid objects, forbidden, missing kinds."""


class OwnershipError(PermanentClusterError):
    """The namespace exists but belongs to someone else (another tool, or another repository)."""


class ObjectRef(BaseModel):
    """One applied object, by what identifies it inside the environment's namespace."""

    model_config = ConfigDict(frozen=True)

    api_version: str
    kind: str
    name: str

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def key(self) -> tuple[str, str, str]:
        # The version is left out: the same object served under a new version is the same
        # object, and must not be pruned as if it had gone.
        return (self.group, self.kind, self.name)

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}"


class ApplyResult(BaseModel):
    namespace: str
    # The namespace did not exist before this apply.
    created_namespace: bool = False
    # The namespace was the first edition's (managed-by github-actions) and is ours now.
    adopted: bool = False
    # Every object applied, in order (the namespace first).
    applied: list[ObjectRef] = Field(default_factory=list)
    # Those of them that did not exist before.
    created: list[ObjectRef] = Field(default_factory=list)
    # Objects an earlier apply created that the configuration no longer asks for, now deleted.
    pruned: list[ObjectRef] = Field(default_factory=list)


class DestroyResult(BaseModel):
    namespace: str
    # The namespace (and everything in it) is gone because of this call.
    deleted: bool = False
    # There was nothing to delete.
    already_gone: bool = False
    # Labelled preserve=true: left as it is.
    preserved: bool = False


@runtime_checkable
class Cluster(Protocol):
    name: str  # "kubernetes" | "directory"

    async def read_credentials(self, namespace: str) -> dict[str, str]:
        """The generated passwords already stored in the namespace, by `required_passwords()` name."""
        ...

    async def apply(self, namespace: str, repository: str, manifests: list[dict[str, Any]]) -> ApplyResult:
        """Apply `manifests` (the Namespace first) in order, and prune what an earlier apply left."""
        ...

    async def destroy(
        self, namespace: str, repository: str, *, release_preserve: bool = False
    ) -> DestroyResult:
        """Delete the namespace (after the ownership check), unless it is labelled `preserve=true`.
        `release_preserve`: the gateway's own preservation is over, so a label it set (the one
        with a `k8s-ee/preserve-until` annotation) no longer protects it; one set by hand does."""
        ...

    def close(self) -> None:
        """Release connections; the cluster is not used afterwards."""
        ...


class ClusterChoice(NamedTuple):
    cluster: Cluster
    # One line for the start-up log: which back-end, and why.
    explanation: str


def detect_cluster(
    setting: str | None, directory: str | os.PathLike[str], kubeconfig: str | None = None
) -> ClusterChoice:
    """Choose the back-end from K8S_EE_CLUSTER (`kubernetes` | `directory` | unset: detect).

    See `handlers.cluster.detect.detect_cluster`.
    """
    # Imported here: the back-ends import this module for the types above.
    from handlers.cluster.detect import detect_cluster as detect

    return detect(setting, directory, kubeconfig=kubeconfig)


__all__ = [
    "ApplyResult",
    "Cluster",
    "ClusterChoice",
    "ClusterError",
    "DestroyResult",
    "ObjectRef",
    "OwnershipError",
    "PermanentClusterError",
    "TransientClusterError",
    "detect_cluster",
]
