"""Where an environment's manifests go: a Kubernetes cluster, or a directory a GitOps tool reads.

The worker renders an environment (handlers/render) and hands the manifests to a `Cluster`.
Both back-ends keep the same rules (SPEC 1/2): the namespace's owner is checked before
anything in it is changed or deleted, everything is applied in the order given, objects the
configuration no longer asks for are removed, and a namespace labelled `preserve=true` is
not destroyed.

A redeploy that would change nothing is skipped (`Cluster.unchanged`): each whole apply records
what it applied (a digest of the manifests, handlers/cluster/digest.py) beside its inventory,
and an intact namespace whose record matches needs no apply. A periodic full re-apply
(`reapply_after`, K8S_EE_REAPPLY_HOURS) still corrects what was changed out of band.

Errors say whether trying again later can help: `TransientClusterError` (the API was
unreachable, overloaded, or the namespace is still being deleted) or `PermanentClusterError`
(the cluster refused what was sent; `OwnershipError` when the namespace is not ours). Their
messages are safe to show to users: they never carry a credential.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, ClassVar, NamedTuple, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from handlers import naming


class Cause(NamedTuple):
    """One of `Status.details.causes`: why, about which field (`spec.selector`)."""

    reason: str
    message: str
    field: str


class ClusterError(Exception):
    """An apply, destroy or read that did not succeed; `str(error)` is safe to show."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        reason: str | None = None,
        causes: tuple[Cause, ...] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        # The HTTP status, Status.reason and Status.details.causes the API answered with.
        self.status = status
        self.reason = reason
        self.causes = causes


class TransientClusterError(ClusterError):
    """Trying again later may succeed: timeouts, 5xx, 429, conflicts, a namespace still terminating."""

    # Whether the same request is worth repeating at once (with backoff) before giving up on it.
    request_retry: ClassVar[bool] = True

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        reason: str | None = None,
        retry_after: float | None = None,
        causes: tuple[Cause, ...] = (),
    ) -> None:
        super().__init__(message, status=status, reason=reason, causes=causes)
        # Seconds the API asked us to wait (Retry-After), when it said.
        self.retry_after = retry_after


class NamespaceTerminating(TransientClusterError):
    """403 with the cause `NamespaceTerminating`: the namespace is being deleted, so nothing can be
    created in it until it is gone; then it can be created again. Repeating the request cannot help."""

    request_retry: ClassVar[bool] = False


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
    # Objects not applied because the cluster does not serve their kind (an optional operator).
    skipped: list[ObjectRef] = Field(default_factory=list)
    # Objects deleted and created again because a field of theirs cannot change in place.
    recreated: list[ObjectRef] = Field(default_factory=list)
    # What the environment's people should know: what was skipped and why.
    warnings: list[str] = Field(default_factory=list)
    # The digest of the manifests this apply recorded as applied (handlers/cluster/digest.py).
    digest: str | None = None


class ClusterFacts(BaseModel):
    """What the worker learns of its cluster once, at start-up."""

    # `1.29`, from the API server's /version.
    kubernetes_version: str | None = None
    # The API server's own addresses: the `kubernetes` Service's endpoints in `default`.
    api_server_addresses: tuple[str, ...] | None = None


class Claim(BaseModel):
    """A live PersistentVolumeClaim: its name, labels and size (the larger of request and capacity)."""

    name: str
    labels: dict[str, str] = Field(default_factory=dict)
    size_mi: int


class DestroyResult(BaseModel):
    namespace: str
    # The namespace (and everything in it) is gone because of this call.
    deleted: bool = False
    # There was nothing to delete.
    already_gone: bool = False
    # Labelled preserve=true: left as it is.
    preserved: bool = False


class NamespaceInfo(BaseModel):
    """A namespace this gateway manages, as the orphan sweep needs to see it."""

    name: str
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    terminating: bool = False

    @property
    def repository(self) -> str | None:
        return self.annotations.get(naming.ANNOTATION_REPOSITORY)

    @property
    def preserved(self) -> bool:
        return self.labels.get(naming.LABEL_PRESERVE) == "true"


# After this long a redeploy applies everything again even when nothing changed, so what was
# changed by hand in the namespace (an object deleted, a field edited) is put right.
REAPPLY_AFTER = timedelta(hours=6)


# Awaited before each wave of writes (and each delete): it raises, and so stops the writes,
# when the reconcile that started them may no longer write (handlers.desired.DesiredStore.fence).
Fence = Callable[[], Awaitable[None]]


async def check(fence: Fence | None) -> None:
    if fence is not None:
        await fence()


@runtime_checkable
class Cluster(Protocol):
    name: str  # "kubernetes" | "directory"
    # Whether objects can be read back for their status (readiness); a directory cannot.
    observes: bool

    async def facts(self) -> ClusterFacts:
        """The cluster's version and API server addresses (asked once, at start-up)."""
        ...

    async def read_credentials(self, namespace: str) -> dict[str, str]:
        """The generated passwords already stored in the namespace, by `required_passwords()` name."""
        ...

    async def read_claims(self, namespace: str) -> list[Claim]:
        """The namespace's live volume claims (so a configured storage never shrinks one)."""
        ...

    async def read(self, namespace: str, ref: ObjectRef) -> dict[str, Any] | None:
        """One object as the cluster has it, status included; None when it does not exist."""
        ...

    async def pods(self, namespace: str, labels: dict[str, str]) -> list[dict[str, Any]]:
        """The namespace's pods carrying `labels`."""
        ...

    async def namespaces(self) -> list[NamespaceInfo]:
        """The namespaces this gateway manages."""
        ...

    async def unchanged(self, namespace: str, repository: str, manifests: list[dict[str, Any]]) -> bool:
        """Whether applying `manifests` would change nothing: the namespace is intact (it exists,
        is not terminating, is ours, and its inventory is what this apply would apply) and it
        records these manifests' digest as applied, within the re-apply period. Never writes."""
        ...

    async def apply(
        self, namespace: str, repository: str, manifests: list[dict[str, Any]], fence: Fence | None = None
    ) -> ApplyResult:
        """Apply `manifests` (the Namespace first) in order, and prune what an earlier apply left;
        `fence` is awaited before each write wave."""
        ...

    async def destroy(
        self, namespace: str, repository: str, fence: Fence | None = None, *, release_preserve: bool = False
    ) -> DestroyResult:
        """Delete the namespace (after the ownership check), unless it is labelled `preserve=true`;
        `fence` is awaited before the delete. `release_preserve`: the gateway's own preservation
        is over, so a label it set (the one with a `k8s-ee/preserve-until` annotation) no longer
        protects it; one set by hand does."""
        ...

    def close(self) -> None:
        """Release connections; the cluster is not used afterwards."""
        ...


class ClusterChoice(NamedTuple):
    cluster: Cluster
    # One line for the start-up log: which back-end, and why.
    explanation: str


def detect_cluster(
    setting: str | None,
    directory: str | os.PathLike[str],
    kubeconfig: str | None = None,
    *,
    reapply_after: timedelta | None = REAPPLY_AFTER,
) -> ClusterChoice:
    """Choose the back-end from K8S_EE_CLUSTER (`kubernetes` | `directory` | unset: detect).

    See `handlers.cluster.detect.detect_cluster`.
    """
    # Imported here: the back-ends import this module for the types above.
    from handlers.cluster.detect import detect_cluster as detect

    return detect(setting, directory, kubeconfig=kubeconfig, reapply_after=reapply_after)


__all__ = [
    "REAPPLY_AFTER",
    "ApplyResult",
    "Cause",
    "Claim",
    "Cluster",
    "ClusterChoice",
    "ClusterError",
    "ClusterFacts",
    "DestroyResult",
    "Fence",
    "NamespaceInfo",
    "NamespaceTerminating",
    "ObjectRef",
    "OwnershipError",
    "PermanentClusterError",
    "TransientClusterError",
    "check",
    "detect_cluster",
]
