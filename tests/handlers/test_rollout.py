"""Reading a rollout's status as its controller means it: ready, progress, or the reason it failed."""

from __future__ import annotations

from typing import Any

import pytest

from handlers.rollout import Target, assess, summarise, targets

APP = Target(
    label="app", api_version="apps/v1", kind="Deployment", name="shop-pr-1-app", pod_labels={"a": "b"}
)


def deployment(generation: int = 2, **status: Any) -> dict[str, Any]:
    return {"metadata": {"generation": generation}, "spec": {"replicas": 1}, "status": status}


def pod(
    *,
    ready: bool = False,
    init: list[Any] | None = None,
    containers: list[Any] | None = None,
    created: str = "2026-01-01T00:00:00Z",
    **status: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "conditions": [{"type": "Ready", "status": str(ready)}],
        "containerStatuses": containers or [],
        **status,
    }
    if init is not None:
        body["initContainerStatuses"] = init
    return {"metadata": {"creationTimestamp": created}, "status": body}


def waiting(name: str, reason: str, message: str = "", image: str = "img:1", **extra: Any) -> dict[str, Any]:
    state: dict[str, Any] = {"reason": reason}
    if message:
        state["message"] = message
    return {"name": name, "image": image, "ready": False, "state": {"waiting": state}, **extra}


def test_ready_only_at_the_new_revision_and_available() -> None:
    done = {"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1}
    assert assess(APP, deployment(**done)).ready
    # The controller has not seen the new generation yet: the old pods are available, not ours.
    assert not assess(APP, deployment(**{**done, "observedGeneration": 1})).ready
    # The surge pod is up, the old one not gone yet.
    assert not assess(APP, deployment(**{**done, "replicas": 2})).ready
    assert not assess(APP, deployment(**{**done, "availableReplicas": 0})).ready
    assert not assess(APP, None).ready


def test_a_deployment_that_is_not_ready_asks_for_its_pods() -> None:
    result = assess(APP, deployment(observedGeneration=2, replicas=1, updatedReplicas=1))
    assert result.needs_pods and result.doing == "0/1: starting"


@pytest.mark.parametrize(
    ("pods", "failure", "doing"),
    [
        (
            [pod(containers=[waiting("app", "ErrImagePull", "not found", image="ghcr.io/a/b:pr-1")])],
            "app: container app: image ghcr.io/a/b:pr-1 cannot be pulled (ErrImagePull: not found)",
            "0/1: cannot pull ghcr.io/a/b:pr-1",
        ),
        (
            [
                pod(
                    containers=[
                        waiting(
                            "app",
                            "CrashLoopBackOff",
                            "back-off 5m0s",
                            lastState={"terminated": {"exitCode": 137, "reason": "OOMKilled"}},
                        )
                    ]
                )
            ],
            "app: container app keeps crashing (CrashLoopBackOff; last exit code 137 OOMKilled)",
            "0/1: container app keeps crashing",
        ),
        (
            [pod(init=[waiting("wait-for-postgresql", "ImagePullBackOff", image="busybox:9")])],
            "app: init container wait-for-postgresql: image busybox:9 cannot be pulled (ImagePullBackOff)",
            "0/1: cannot pull busybox:9",
        ),
        (
            [
                pod(
                    init=[{"name": "wait-for-postgresql", "state": {"running": {}}}],
                    containers=[waiting("app", "PodInitializing")],
                )
            ],
            None,
            "0/1: waiting for wait-for-postgresql",
        ),
        ([pod(containers=[waiting("app", "ContainerCreating")])], None, "0/1: pulling the image, starting"),
        (
            [pod(containers=[{"name": "app", "ready": False, "state": {"running": {}}}])],
            None,
            "0/1: started, not ready yet (readiness probe)",
        ),
        (
            [
                pod(
                    conditions=[
                        {"type": "PodScheduled", "status": "False", "message": "0/3 nodes are available"}
                    ]
                )
            ],
            None,
            "0/1: cannot be scheduled: 0/3 nodes are available",
        ),
        (
            [pod(containers=[waiting("app", "CreateContainerConfigError", 'secret "x" not found')])],
            None,
            '0/1: container app: CreateContainerConfigError: secret "x" not found',
        ),
    ],
)
def test_pod_states_give_progress_or_a_failure(pods: list[Any], failure: str | None, doing: str) -> None:
    result = assess(APP, deployment(observedGeneration=2, replicas=1, updatedReplicas=1), pods)
    assert (result.failure, result.doing) == (failure, doing)


def test_the_quota_refusing_pods_fails_with_its_message() -> None:
    refused = "pods is forbidden: exceeded quota: pr-quota, requested: limits.cpu=1, used: limits.cpu=1, limited: limits.cpu=1265m"
    result = assess(
        APP,
        deployment(
            observedGeneration=2,
            replicas=1,
            conditions=[
                {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": refused}
            ],
        ),
    )
    assert result.failure == f"app: its pods cannot be created: {refused}"


def test_a_rollout_past_its_deadline_fails() -> None:
    result = assess(
        APP,
        deployment(
            observedGeneration=2,
            replicas=2,
            updatedReplicas=1,
            availableReplicas=1,
            conditions=[{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}],
        ),
        [],
    )
    assert result.failure == "app: the rollout stopped progressing (ProgressDeadlineExceeded)"


def test_operators_resources() -> None:
    cluster = Target(
        label="postgresql", api_version="postgresql.cnpg.io/v1", kind="Cluster", name="app-postgresql"
    )
    healthy = {
        "spec": {"instances": 1},
        "status": {
            "phase": "Cluster in healthy state",
            "readyInstances": 1,
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }
    assert assess(cluster, healthy).ready
    # readyInstances is omitted when zero.
    setting_up = {
        "spec": {"instances": 1},
        "status": {"phase": "Setting up primary", "conditions": [{"type": "Ready", "status": "False"}]},
    }
    assert assess(cluster, setting_up).doing == "Setting up primary"
    broken = {
        "spec": {"instances": 1},
        "status": {"phase": "Cluster is in an unrecoverable state, needs manual intervention"},
    }
    assert (
        assess(cluster, broken).failure
        == "postgresql: Cluster is in an unrecoverable state, needs manual intervention"
    )
    assert assess(cluster, {"spec": {"instances": 1}}).doing == "waiting for the CloudNativePG operator"

    mongodb = Target(
        label="mongodb",
        api_version="mongodbcommunity.mongodb.com/v1",
        kind="MongoDBCommunity",
        name="app-mongodb",
    )
    assert assess(
        mongodb, {"spec": {"members": 1}, "status": {"phase": "Running", "currentMongoDBMembers": 1}}
    ).ready
    pending = assess(
        mongodb,
        {"spec": {"members": 1}, "status": {"phase": "Pending", "message": "ReplicaSet is not yet ready"}},
    )
    assert (pending.ready, pending.doing) == (False, "Pending: ReplicaSet is not yet ready")

    tenant = Target(label="minio", api_version="minio.min.io/v2", kind="Tenant", name="app-minio")
    spec = {"pools": [{"servers": 1}]}
    green = {"currentState": "Initialized", "healthStatus": "green", "availableReplicas": 1}
    assert assess(tenant, {"spec": spec, "status": green}).ready
    assert not assess(tenant, {"spec": spec, "status": {**green, "healthStatus": "yellow"}}).ready
    assert assess(
        tenant, {"spec": spec, "status": {"currentState": "Provisioning MinIO Statefulset"}}
    ).doing == ("Provisioning MinIO Statefulset")


def test_summary_lists_databases_first_and_the_first_failure() -> None:
    manifests = [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "shop-pr-1-app", "labels": {"app.kubernetes.io/name": "app"}},
            "spec": {"selector": {"matchLabels": {"a": "b"}}},
        },
        {
            "apiVersion": "postgresql.cnpg.io/v1",
            "kind": "Cluster",
            "metadata": {"name": "app-postgresql", "labels": {"app.kubernetes.io/name": "postgresql"}},
        },
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}},
    ]
    assert [t.label for t in targets(manifests)] == ["postgresql", "app"]
    app, db = (
        assess(APP, deployment(observedGeneration=2, replicas=1, updatedReplicas=1), []),
        assess(
            targets(manifests)[0],
            {
                "spec": {"instances": 1},
                "status": {
                    "phase": "Cluster in healthy state",
                    "readyInstances": 1,
                    "conditions": [{"type": "Ready", "status": "True"}],
                },
            },
        ),
    )
    observed = summarise([db, app])
    assert (observed.ready, observed.progress, observed.failure) == (
        False,
        "postgresql ready, app 0/1: starting",
        None,
    )
