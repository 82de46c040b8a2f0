"""Is the environment up? What each applied workload's status says, read as its controller means it.

Pure: objects in, an `Observation` out (ready or not, a line of progress, or why it failed).

- A Deployment (the app, Redis, MariaDB) is ready when its controller has seen the current
  generation (`observedGeneration`), every replica runs the current template
  (`updatedReplicas`), no old one is left (`replicas`), and all are available: what
  `kubectl rollout status` waits for. Why it is not comes from its conditions
  (`ReplicaFailure`: a pod refused, by the quota say; `ProgressDeadlineExceeded`) and from
  its pods' container states (`ErrImagePull` with the image, `CrashLoopBackOff` with the
  container and its last exit, a running init container it waits on).
- A CloudNativePG `Cluster` is ready when its `Ready` condition is True and
  `readyInstances` reaches `instances`; `status.phase` says what it is doing.
- A `MongoDBCommunity` is ready when `phase` is `Running` with `currentMongoDBMembers` members.
- A MinIO `Tenant` is ready when `currentState` is `Initialized`, `healthStatus` is `green`
  and `availableReplicas` covers every pool's servers.

Some reasons never clear up by themselves: an image that cannot be pulled, a container that
keeps crashing, a pod the quota or limits refuse, a rollout past its deadline. Those fail the
environment at once (a push or a finished build deploys again); anything else is progress,
until the readiness deadline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

# Waiting reasons of a container that do not clear up without a change.
PULL_FAILURES = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"})
CRASHING = frozenset({"CrashLoopBackOff"})
CNPG_READY_PHASE = "Cluster in healthy state"
CNPG_UNRECOVERABLE = "unrecoverable"


class Target(BaseModel):
    """One workload to watch: its object, and the labels of its pods (Deployments)."""

    model_config = ConfigDict(frozen=True)

    label: str  # "app", "postgresql", ...
    api_version: str
    kind: str
    name: str
    pod_labels: dict[str, str] | None = None


class Assessment(BaseModel):
    label: str
    ready: bool = False
    # What it is doing ("0/1: pulling the image"), when not ready.
    doing: str = ""
    # Why it will not become ready by itself.
    failure: str | None = None
    # Its pods would say more (a Deployment not ready yet).
    needs_pods: bool = False


class Observation(BaseModel):
    ready: bool
    # "postgresql ready, app 0/1: pulling the image"
    progress: str
    failure: str | None = None


_WATCHED = {
    ("apps/v1", "Deployment"),
    ("postgresql.cnpg.io/v1", "Cluster"),
    ("mongodbcommunity.mongodb.com/v1", "MongoDBCommunity"),
    ("minio.min.io/v2", "Tenant"),
}


def targets(manifests: Sequence[Mapping[str, Any]]) -> list[Target]:
    """What to watch among the applied manifests, databases first and the app last."""
    found: list[Target] = []
    for manifest in manifests:
        key = (str(manifest.get("apiVersion")), str(manifest.get("kind")))
        if key not in _WATCHED:
            continue
        metadata = manifest.get("metadata") or {}
        label = str((metadata.get("labels") or {}).get("app.kubernetes.io/name") or metadata.get("name"))
        selector = ((manifest.get("spec") or {}).get("selector") or {}).get("matchLabels")
        found.append(
            Target(
                label=label,
                api_version=key[0],
                kind=key[1],
                name=str(metadata.get("name")),
                pod_labels=dict(selector) if key[1] == "Deployment" and selector else None,
            )
        )
    return sorted(found, key=lambda t: t.label == "app")


def assess(
    target: Target, obj: Mapping[str, Any] | None, pods: Sequence[Mapping[str, Any]] | None = None
) -> Assessment:
    if obj is None:
        return Assessment(label=target.label, doing="not created yet")
    if target.kind == "Deployment":
        return _deployment(target.label, obj, pods)
    if target.kind == "Cluster":
        return _cnpg(target.label, obj)
    if target.kind == "MongoDBCommunity":
        return _mongodb(target.label, obj)
    return _tenant(target.label, obj)


def summarise(assessments: Sequence[Assessment]) -> Observation:
    parts = [f"{a.label} ready" if a.ready else f"{a.label} {a.doing}".rstrip() for a in assessments]
    failure = next((a.failure for a in assessments if a.failure), None)
    return Observation(ready=all(a.ready for a in assessments), progress=", ".join(parts), failure=failure)


# -- Deployments --------------------------------------------------------------------------------


def _conditions(status: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {str(c.get("type")): c for c in status.get("conditions") or [] if isinstance(c, Mapping)}


def _deployment(label: str, obj: Mapping[str, Any], pods: Sequence[Mapping[str, Any]] | None) -> Assessment:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    wanted = int(spec.get("replicas", 1))
    generation = int((obj.get("metadata") or {}).get("generation", 0))
    observed = int(status.get("observedGeneration", 0))
    updated, total = int(status.get("updatedReplicas", 0)), int(status.get("replicas", 0))
    available = int(status.get("availableReplicas", 0))
    if observed >= generation and updated >= wanted and total == wanted and available >= wanted:
        return Assessment(label=label, ready=True)
    conditions = _conditions(status)
    count = f"{min(available, wanted)}/{wanted}"
    failure = conditions.get("ReplicaFailure")
    if failure is not None and failure.get("status") == "True":
        return Assessment(
            label=label,
            doing=f"{count}: pods refused",
            failure=f"{label}: its pods cannot be created: {failure.get('message') or failure.get('reason')}",
        )
    pod_doing, pod_failure = _pods(label, pods or [])
    progressing = conditions.get("Progressing")
    if progressing is not None and progressing.get("reason") == "ProgressDeadlineExceeded":
        why = f"; {pod_doing}" if pod_doing else ""
        return Assessment(
            label=label,
            doing=f"{count}: past its progress deadline",
            failure=pod_failure
            or f"{label}: the rollout stopped progressing (ProgressDeadlineExceeded){why}",
        )
    if observed < generation:
        doing = "rollout not started yet"
    elif total > wanted or updated < wanted:
        doing = f"{count}: rolling out" + (f": {pod_doing}" if pod_doing else "")
    else:
        doing = f"{count}" + (f": {pod_doing}" if pod_doing else ": starting")
    return Assessment(label=label, doing=doing, failure=pod_failure, needs_pods=pods is None)


def _pods(label: str, pods: Sequence[Mapping[str, Any]]) -> tuple[str, str | None]:
    """What the newest pods that are not ready are doing, and a reason that will not clear up."""
    doing = ""
    ordered = sorted(
        pods, key=lambda p: str((p.get("metadata") or {}).get("creationTimestamp") or ""), reverse=True
    )
    for pod in ordered:
        status = pod.get("status") or {}
        if _ready(status):
            continue
        pod_doing, failure = _pod(label, status)
        if failure:
            return pod_doing, failure
        doing = doing or pod_doing
    return doing, None


def _ready(status: Mapping[str, Any]) -> bool:
    return _conditions(status).get("Ready", {}).get("status") == "True"


def _pod(label: str, status: Mapping[str, Any]) -> tuple[str, str | None]:
    scheduled = _conditions(status).get("PodScheduled")
    if scheduled is not None and scheduled.get("status") == "False":
        return f"cannot be scheduled: {scheduled.get('message') or scheduled.get('reason')}", None
    for field, what in (("initContainerStatuses", "init container"), ("containerStatuses", "container")):
        for container in status.get(field) or []:
            state = container.get("state") or {}
            name, image = container.get("name"), container.get("image")
            waiting = state.get("waiting")
            if isinstance(waiting, Mapping):
                reason = str(waiting.get("reason") or "")
                message = str(waiting.get("message") or "")
                detail = f"{reason}: {message}" if message else reason
                if reason in PULL_FAILURES:
                    return (
                        f"cannot pull {image}",
                        f"{label}: {what} {name}: image {image} cannot be pulled ({detail})",
                    )
                if reason in CRASHING:
                    return (
                        f"{what} {name} keeps crashing",
                        f"{label}: {what} {name} keeps crashing ({reason}{_last_exit(container)})",
                    )
                if reason in ("ContainerCreating", "PodInitializing"):
                    if field == "containerStatuses" and reason == "PodInitializing":
                        continue  # the init containers say what it waits for
                    return "pulling the image, starting", None
                return f"{what} {name}: {detail}", None
            if field == "initContainerStatuses" and "running" in state:
                return f"waiting for {name}", None
            if field == "containerStatuses" and "running" in state and not container.get("ready"):
                return "started, not ready yet (readiness probe)", None
    return "starting", None


def _last_exit(container: Mapping[str, Any]) -> str:
    terminated = (container.get("lastState") or {}).get("terminated")
    if not isinstance(terminated, Mapping):
        return ""
    reason = f" {terminated['reason']}" if terminated.get("reason") else ""
    return f"; last exit code {terminated.get('exitCode')}{reason}"


# -- operators' resources ------------------------------------------------------------------------


def _cnpg(label: str, obj: Mapping[str, Any]) -> Assessment:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    # readyInstances is omitted when zero.
    ready_instances, wanted = int(status.get("readyInstances", 0)), int(spec.get("instances", 1))
    if _conditions(status).get("Ready", {}).get("status") == "True" and ready_instances >= wanted:
        return Assessment(label=label, ready=True)
    phase = str(status.get("phase") or "")
    reason = str(status.get("phaseReason") or "")
    doing = ": ".join(part for part in (phase or "waiting for the CloudNativePG operator", reason) if part)
    failure = f"{label}: {doing}" if CNPG_UNRECOVERABLE in phase else None
    return Assessment(label=label, doing=doing, failure=failure)


def _mongodb(label: str, obj: Mapping[str, Any]) -> Assessment:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    members, wanted = int(status.get("currentMongoDBMembers", 0)), int(spec.get("members", 1))
    phase = str(status.get("phase") or "")
    if phase == "Running" and members >= wanted:
        return Assessment(label=label, ready=True)
    message = str(status.get("message") or "")
    doing = ": ".join(part for part in (phase or "waiting for the MongoDB operator", message) if part)
    return Assessment(label=label, doing=doing)


def _tenant(label: str, obj: Mapping[str, Any]) -> Assessment:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    servers = sum(int(pool.get("servers", 1)) for pool in spec.get("pools") or [])
    state, health = str(status.get("currentState") or ""), str(status.get("healthStatus") or "")
    if state == "Initialized" and health == "green" and int(status.get("availableReplicas", 0)) >= servers:
        return Assessment(label=label, ready=True)
    message = str(status.get("healthMessage") or "")
    doing = ": ".join(part for part in (state or "waiting for the MinIO operator", message) if part)
    return Assessment(label=label, doing=doing)
