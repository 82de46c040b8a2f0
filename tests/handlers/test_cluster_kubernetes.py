"""The Kubernetes back-end, driven through the real `kubernetes` client against the test API server."""

from __future__ import annotations

import asyncio
import copy
import json
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from handlers import naming
from handlers.cluster import (
    Cluster,
    OwnershipError,
    PermanentClusterError,
    TransientClusterError,
    detect_cluster,
)
from handlers.cluster.directory import DirectoryCluster
from handlers.cluster.kubernetes import ANNOTATION_APPLIED_OBJECTS, KubernetesCluster
from handlers.cluster.retry import RetryPolicy
from handlers.cluster.transport import POOL_SIZE
from tests.fakes.kubeapi import Fault, KubeAPIServer
from tests.support.loopback_server import LoopbackServer, QuietHandler
from tests.support.manifests import (
    NS,
    REPO,
    b64,
    environment,
    labels,
    namespace_manifest,
    obj,
    rendered,
    rendered_config,
)

APPLY = "application/apply-patch+yaml"
# The namespace of the rendered environment (tests/support/manifests.py: Acme/Shop#42).
NS_42 = "shop-pr-42"
FAST = RetryPolicy(attempts=4, budget=10.0, base_delay=0.01, max_delay=0.05)


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


@pytest.fixture
def make_cluster(kube: KubeAPIServer) -> Iterator[Any]:
    made: list[KubernetesCluster] = []

    def make(**options: Any) -> KubernetesCluster:
        settings: dict[str, Any] = {
            "retry": FAST,
            "timeout": (1.0, 2.0),
            "destroy_timeout": 2.0,
            "poll_interval": 0.01,
        }
        cluster = KubernetesCluster(
            client.ApiClient(client.Configuration(host=kube.url)), **settings | options
        )
        made.append(cluster)
        # What a worker does once at start-up: the operators' kinds are known before any apply.
        run(cluster.discover())
        kube.reset_requests()
        return cluster

    yield make
    for cluster in made:
        cluster.close()


@pytest.fixture
def cluster(make_cluster: Any) -> KubernetesCluster:
    return make_cluster()  # type: ignore[no-any-return]


# What the cluster's controllers make of a Deployment; the gateway never applies these.
CONTROLLED = ("ReplicaSet", "Pod")


def applied_objects(kube: KubeAPIServer, namespace: str = NS) -> list[dict[str, Any]]:
    return [o for o in kube.objects(namespace=namespace) if o["kind"] not in CONTROLLED]


def versions(kube: KubeAPIServer, namespace: str = NS) -> dict[tuple[str, str], str]:
    stored = [*kube.objects("Namespace"), *applied_objects(kube, namespace)]
    return {(o["kind"], o["metadata"]["name"]): o["metadata"]["resourceVersion"] for o in stored}


def applied_annotation(kube: KubeAPIServer, namespace: str = NS) -> list[str]:
    stored = kube.get_object("Namespace", "", namespace)
    assert stored is not None
    return json.loads(stored["metadata"]["annotations"][ANNOTATION_APPLIED_OBJECTS])  # type: ignore[no-any-return]


# -- apply ---------------------------------------------------------------------------------------


def test_first_apply_creates_everything_in_order_within_the_request_budget(
    cluster: KubernetesCluster, kube: KubeAPIServer
) -> None:
    manifests = environment()
    kube.reset_requests()

    result = run(cluster.apply(NS, REPO, manifests))

    assert result.created_namespace and not result.adopted and result.pruned == []
    assert sorted(str(ref) for ref in result.applied) == sorted(
        f"{m['kind']}/{m['metadata']['name']}" for m in manifests
    )
    assert result.created == result.applied
    assert len(kube.requests) == len(manifests) + 1 <= len(manifests) + 3
    first, *patches = kube.requests
    assert (first.method, first.path) == ("GET", f"/api/v1/namespaces/{NS}")
    assert all(r.method == "PATCH" and r.content_type == APPLY for r in patches)
    assert all(r.params == {"fieldManager": "k8s-ee-gateway", "force": "true"} for r in patches)
    assert patches[0].path == f"/api/v1/namespaces/{NS}"
    # Waves: guard rails before anything else in the namespace; the app's Deployment, Ingress
    # and ServiceMonitor after everything they use.
    kinds = [r.path.split("/")[-2] for r in patches[1:]]
    guard = {"resourcequotas", "limitranges", "networkpolicies"}
    last = {"ingresses", "servicemonitors"}
    app_deployment = patches.index(next(r for r in patches if r.path.endswith(f"/deployments/{NS}-app"))) - 1
    assert max(i for i, k in enumerate(kinds) if k in guard) < min(
        i for i, k in enumerate(kinds) if k not in guard
    )
    assert min(i for i, k in enumerate(kinds) if k in last) > max(
        i for i, k in enumerate(kinds) if k not in last and k not in guard and i != app_deployment
    )

    for manifest in manifests[1:]:
        stored = kube.get_object(manifest["kind"], NS, manifest["metadata"]["name"])
        assert stored is not None, manifest["kind"]
        # Ours, applied; a controller may own the status (the Deployment's), nothing else.
        [entry] = [e for e in stored["metadata"]["managedFields"] if e.get("subresource") != "status"]
        assert (entry["manager"], entry["operation"]) == ("k8s-ee-gateway", "Apply")
    assert len(applied_annotation(kube)) == len(manifests) - 1
    assert "apps/v1/Deployment/shop-pr-7-app" in applied_annotation(kube)
    assert manifests[0]["metadata"]["annotations"] == {naming.ANNOTATION_REPOSITORY: REPO}  # not changed


def test_identical_reapply_changes_no_resource_version(
    cluster: KubernetesCluster, kube: KubeAPIServer
) -> None:
    run(cluster.apply(NS, REPO, environment()))
    before = versions(kube)
    kube.reset_requests()

    result = run(cluster.apply(NS, REPO, environment()))

    assert versions(kube) == before
    assert result.created == [] and result.pruned == [] and not result.created_namespace
    assert len(kube.requests) == len(environment()) + 1


def test_a_change_is_a_patch_of_that_object_only(cluster: KubernetesCluster, kube: KubeAPIServer) -> None:
    run(cluster.apply(NS, REPO, environment()))
    before = versions(kube)
    changed = environment()
    deployment = next(m for m in changed if m["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["image"] = "a:2"

    run(cluster.apply(NS, REPO, changed))

    after = versions(kube)
    # And the namespace, which records what was applied (its digest) and when.
    assert [key for key in before if before[key] != after[key]] == [
        ("Namespace", NS),
        ("Deployment", f"{NS}-app"),
    ]


def test_switching_a_database_off_deletes_its_objects(
    cluster: KubernetesCluster, kube: KubeAPIServer
) -> None:
    run(cluster.apply(NS, REPO, environment(mongodb=True)))
    assert kube.get_object("MongoDBCommunity", NS, "app-mongodb") is not None
    kube.reset_requests()

    result = run(cluster.apply(NS, REPO, environment(mongodb=False)))

    assert sorted(str(ref) for ref in result.pruned) == [
        "MongoDBCommunity/app-mongodb",
        "Secret/app-mongodb-credentials",
    ]
    assert kube.get_object("MongoDBCommunity", NS, "app-mongodb") is None
    assert kube.get_object("Secret", NS, "app-mongodb-credentials") is None
    assert kube.get_object("Secret", NS, "app-redis-credentials") is not None
    assert not any("mongodb" in entry for entry in applied_annotation(kube))
    deletes = [r for r in kube.requests if r.method == "DELETE"]
    assert len(deletes) == 2
    # Pruned before the namespace's annotation is rewritten: a failed delete is tried again next time.
    assert kube.requests.index(deletes[-1]) < [r.method for r in kube.requests].index("PATCH")
    assert len(kube.requests) == 1 + 2 + len(environment(mongodb=False))

    kube.reset_requests()
    again = run(cluster.apply(NS, REPO, environment(mongodb=False)))
    assert again.pruned == [] and kube.count_requests("DELETE") == 0


def test_a_failed_prune_is_retried_by_the_next_apply(
    make_cluster: Any, cluster: KubernetesCluster, kube: KubeAPIServer
) -> None:
    run(cluster.apply(NS, REPO, environment(mongodb=True)))
    kube.add_fault("DELETE", r"/mongodbcommunity/app-mongodb$", status=403, times=1)

    with pytest.raises(PermanentClusterError):
        run(cluster.apply(NS, REPO, environment(mongodb=False)))
    assert any("app-mongodb" in entry for entry in applied_annotation(kube))

    result = run(cluster.apply(NS, REPO, environment(mongodb=False)))
    assert "MongoDBCommunity/app-mongodb" in [str(ref) for ref in result.pruned]
    assert kube.get_object("MongoDBCommunity", NS, "app-mongodb") is None


def test_pruning_an_object_someone_already_deleted_is_fine(
    cluster: KubernetesCluster, kube: KubeAPIServer
) -> None:
    run(cluster.apply(NS, REPO, environment(mongodb=True)))
    with client.ApiClient(client.Configuration(host=kube.url)) as api:
        client.CoreV1Api(api).delete_namespaced_secret("app-mongodb-credentials", NS)

    result = run(cluster.apply(NS, REPO, environment(mongodb=False)))

    assert len(result.pruned) == 2
    assert kube.get_object("MongoDBCommunity", NS, "app-mongodb") is None


def test_bad_manifest_lists_are_refused_before_any_request(
    cluster: KubernetesCluster, kube: KubeAPIServer
) -> None:
    kube.reset_requests()
    cases = [
        environment()[1:],  # no namespace first
        [namespace_manifest("other-pr-1"), *environment()[1:]],
        [*environment(), obj("v1", "Pod", "stray")],
        [*environment(), obj("v1", "ConfigMap", f"{NS}-app-config")],  # twice
        [
            *environment(),
            {**obj("v1", "ConfigMap", "x"), "metadata": {"name": "x", "namespace": "elsewhere"}},
        ],
    ]
    for manifests in cases:
        with pytest.raises(PermanentClusterError):
            run(cluster.apply(NS, REPO, manifests))
    assert kube.requests == []


# -- ownership -----------------------------------------------------------------------------------


def test_a_namespace_not_managed_by_us_is_never_touched(
    cluster: KubernetesCluster, kube: KubeAPIServer
) -> None:
    kube.add_object(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS, "labels": {"team": "x"}}}
    )
    before = versions(kube)
    kube.reset_requests()

    with pytest.raises(OwnershipError, match="not managed by k8s-ee-gateway"):
        run(cluster.apply(NS, REPO, environment()))
    with pytest.raises(OwnershipError):
        run(cluster.destroy(NS, REPO))

    assert [r.method for r in kube.requests] == ["GET", "GET"]
    assert versions(kube) == before


def test_a_namespace_of_another_repository_is_refused_without_naming_it(
    cluster: KubernetesCluster, kube: KubeAPIServer
) -> None:
    run(cluster.apply(NS, "other-org/secret-project", environment(repository="other-org/secret-project")))
    kube.reset_requests()

    with pytest.raises(OwnershipError) as refused:
        run(cluster.apply(NS, REPO, environment()))
    assert "another repository" in str(refused.value)
    assert "secret-project" not in str(refused.value)
    with pytest.raises(OwnershipError):
        run(cluster.destroy(NS, REPO))
    assert [r.method for r in kube.requests] == ["GET", "GET"]
    assert kube.get_object("Namespace", "", NS) is not None


def test_repository_names_compare_case_insensitively(cluster: KubernetesCluster, kube: KubeAPIServer) -> None:
    run(cluster.apply(NS, "Acme/Shop", environment(repository="Acme/Shop")))
    assert run(cluster.apply(NS, "acme/shop", environment())).created == []


def test_a_first_edition_namespace_of_the_same_repository_is_adopted(
    cluster: KubernetesCluster, kube: KubeAPIServer
) -> None:
    kube.add_object(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": NS,
                "labels": {naming.LABEL_MANAGED_BY: "github-actions"},
                "annotations": {naming.ANNOTATION_REPOSITORY: REPO},
            },
        }
    )

    result = run(cluster.apply(NS, REPO, environment()))

    assert result.adopted and not result.created_namespace
    stored = kube.get_object("Namespace", "", NS)
    assert stored is not None and stored["metadata"]["labels"][naming.LABEL_MANAGED_BY] == "k8s-ee-gateway"
    assert not run(cluster.apply(NS, REPO, environment())).adopted


def first_edition_namespace(kube: KubeAPIServer, name: str = NS, repository: str = REPO) -> None:
    kube.add_object(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": name,
                "labels": {naming.LABEL_MANAGED_BY: "github-actions"},
                "annotations": {naming.ANNOTATION_REPOSITORY: repository},
            },
        },
        manager="kubectl-client-side-apply",
    )


def first_edition(kube: KubeAPIServer, manifest: dict[str, Any]) -> None:
    """What the first edition's `kubectl apply` left: every field owned by the client-side applier."""
    kube.add_object(copy.deepcopy(manifest), manager="kubectl-client-side-apply")


def test_adopted_objects_lose_what_the_first_edition_added_and_its_leftovers_go(
    cluster: KubernetesCluster, kube: KubeAPIServer
) -> None:
    first_edition_namespace(kube)
    deployment = copy.deepcopy(next(m for m in environment() if m["kind"] == "Deployment"))
    pod = deployment["spec"]["template"]["spec"]
    pod["containers"][0]["env"] = [{"name": "LEGACY_FLAG", "value": "1"}]
    pod["containers"].append({"name": "legacy-sidecar", "image": "sidecar:1"})
    first_edition(kube, deployment)
    first_edition(kube, obj("v1", "ConfigMap", "legacy-settings", data={"a": "1"}))
    # Not the first edition's (no k8s-ee label): left alone.
    kube.add_object(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "someone-elses", "namespace": NS}}
    )

    result = run(cluster.apply(NS, REPO, environment()))

    assert result.adopted
    stored = kube.get_object("Deployment", NS, f"{NS}-app")
    assert stored is not None
    assert stored["spec"]["template"]["spec"]["containers"] == [{"name": "app", "image": "a:1"}]
    managers = {e["manager"] for e in stored["metadata"]["managedFields"] if e.get("subresource") != "status"}
    assert managers == {"k8s-ee-gateway"}
    assert kube.get_object("ConfigMap", NS, "legacy-settings") is None
    assert "ConfigMap/legacy-settings" in [str(ref) for ref in result.pruned]
    assert kube.get_object("ConfigMap", NS, "someone-elses") is not None
    # Adoption is done once: the next apply costs what any apply costs.
    kube.reset_requests()
    assert not run(cluster.apply(NS, REPO, environment())).adopted
    assert len(kube.requests) == len(environment()) + 1


def test_an_adopted_object_whose_immutable_field_differs_is_recreated(
    cluster: KubernetesCluster, kube: KubeAPIServer
) -> None:
    first_edition_namespace(kube)
    deployment = copy.deepcopy(next(m for m in environment() if m["kind"] == "Deployment"))
    legacy = {"app": "legacy"}
    deployment["spec"]["selector"] = {"matchLabels": legacy}
    deployment["spec"]["template"]["metadata"]["labels"] = legacy
    first_edition(kube, deployment)
    before = kube.get_object("Deployment", NS, f"{NS}-app")
    assert before is not None

    result = run(cluster.apply(NS, REPO, environment()))

    assert [str(ref) for ref in result.recreated] == [f"Deployment/{NS}-app"]
    after = kube.get_object("Deployment", NS, f"{NS}-app")
    assert after is not None and after["metadata"]["uid"] != before["metadata"]["uid"]
    assert after["spec"]["selector"] == {"matchLabels": {"app.kubernetes.io/name": "app"}}


def test_a_volume_that_cannot_change_in_place_is_not_recreated(
    cluster: KubernetesCluster, kube: KubeAPIServer
) -> None:
    first_edition_namespace(kube)
    claim = copy.deepcopy(next(m for m in environment() if m["kind"] == "PersistentVolumeClaim"))
    claim["spec"]["accessModes"] = ["ReadWriteMany"]
    first_edition(kube, claim)
    before = kube.get_object("PersistentVolumeClaim", NS, "app-data")
    assert before is not None

    with pytest.raises(PermanentClusterError, match="holds data, so it is not recreated") as failed:
        run(cluster.apply(NS, REPO, environment()))

    assert "PersistentVolumeClaim/app-data: spec cannot change in place" in str(failed.value)
    after = kube.get_object("PersistentVolumeClaim", NS, "app-data")
    assert after is not None and after["metadata"]["uid"] == before["metadata"]["uid"]


def test_a_shrinking_volume_is_refused_saying_so(cluster: KubernetesCluster, kube: KubeAPIServer) -> None:
    def with_claim(size: str) -> list[dict[str, Any]]:
        manifests = environment()
        claim = next(m for m in manifests if m["kind"] == "PersistentVolumeClaim")
        claim["spec"]["resources"] = {"requests": {"storage": size}}
        return manifests

    run(cluster.apply(NS, REPO, with_claim("2Gi")))
    assert [c.model_dump() for c in run(cluster.read_claims(NS))] == [
        {"name": "app-data", "labels": labels(), "size_mi": 2048}
    ]
    with pytest.raises(PermanentClusterError, match="a volume cannot shrink") as failed:
        run(cluster.apply(NS, REPO, with_claim("1Gi")))
    assert "field can not be less than previous value" in str(failed.value)


def test_a_first_edition_namespace_of_another_repository_is_refused(
    cluster: KubernetesCluster, kube: KubeAPIServer
) -> None:
    kube.add_object(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": NS,
                "labels": {naming.LABEL_MANAGED_BY: "github-actions"},
                "annotations": {naming.ANNOTATION_REPOSITORY: "acme/other"},
            },
        }
    )
    with pytest.raises(OwnershipError):
        run(cluster.apply(NS, REPO, environment()))
    assert kube.objects(namespace=NS) == []


def test_apply_into_a_terminating_namespace_waits_then_recreates_it(
    cluster: KubernetesCluster, kube: KubeAPIServer
) -> None:
    run(cluster.apply(NS, REPO, environment()))
    kube.delete_namespace(NS, hold=3)

    result = run(cluster.apply(NS, REPO, environment()))

    assert result.created_namespace
    assert len(result.created) == len(environment())
    stored = kube.get_object("Namespace", "", NS)
    assert stored is not None and not stored["metadata"].get("deletionTimestamp")


def test_a_namespace_that_stays_terminating_is_transient(make_cluster: Any, kube: KubeAPIServer) -> None:
    cluster = make_cluster(destroy_timeout=0.3)
    run(cluster.apply(NS, REPO, environment()))
    kube.delete_namespace(NS, hold=1000)
    kube.reset_requests()

    with pytest.raises(TransientClusterError, match="still terminating"):
        run(cluster.apply(NS, REPO, environment()))
    assert {r.method for r in kube.requests} == {"GET"}


def test_a_namespace_that_starts_terminating_mid_apply_is_recreated(
    cluster: KubernetesCluster, kube: KubeAPIServer
) -> None:
    """The real answer is 403 with the cause NamespaceTerminating: wait for it to go, apply again."""
    run(cluster.apply(NS, REPO, environment()))
    kube.delete_namespace(NS)  # gone; the next apply creates everything
    # Just as the ConfigMap is sent, someone deletes the namespace again (held for 2 reads).
    kube.add_fault_object(
        Fault("PATCH", r"/configmaps/", status=None, action=lambda: kube.delete_namespace(NS, hold=2))
    )

    result = run(cluster.apply(NS, REPO, environment()))

    assert result.created_namespace
    stored = {(o["kind"], o["metadata"]["name"]) for o in applied_objects(kube)}
    assert stored == {(m["kind"], m["metadata"]["name"]) for m in environment()[1:]}


# -- destroy -------------------------------------------------------------------------------------


def test_destroy_deletes_the_namespace_and_waits_for_it(
    cluster: KubernetesCluster, kube: KubeAPIServer
) -> None:
    run(cluster.apply(NS, REPO, environment()))
    kube.reset_requests()

    result = run(cluster.destroy(NS, REPO))

    assert result.deleted and not result.already_gone and not result.preserved
    assert kube.objects("Namespace") == [] and kube.objects(namespace=NS) == []
    assert [r.method for r in kube.requests] == ["GET", "DELETE", "GET"]
    assert run(cluster.destroy(NS, REPO)).already_gone


def test_destroy_keeps_a_preserved_namespace(cluster: KubernetesCluster, kube: KubeAPIServer) -> None:
    manifests = environment()
    manifests[0]["metadata"]["labels"][naming.LABEL_PRESERVE] = "true"
    run(cluster.apply(NS, REPO, manifests))
    kube.reset_requests()

    result = run(cluster.destroy(NS, REPO))

    assert result.preserved and not result.deleted
    assert kube.count_requests("DELETE") == 0
    assert kube.get_object("Deployment", NS, f"{NS}-app") is not None


def test_a_preserve_label_set_by_a_merge_patch_survives_a_redeploy(
    cluster: KubernetesCluster, kube: KubeAPIServer
) -> None:
    """Marks written outside the apply (preserve, hibernation) are not the apply's fields: a
    redeploy, whose namespace manifest does not carry them, leaves them alone."""
    run(cluster.apply(NS, REPO, environment()))
    with client.ApiClient(client.Configuration(host=kube.url)) as api:
        client.CoreV1Api(api).patch_namespace(
            NS,
            {"metadata": {"labels": {naming.LABEL_PRESERVE: "true"}}},
            field_manager="k8s-ee-gateway",
            _content_type="application/merge-patch+json",
        )

    run(cluster.apply(NS, REPO, environment()))

    stored = kube.get_object("Namespace", "", NS)
    assert stored is not None and stored["metadata"]["labels"][naming.LABEL_PRESERVE] == "true"
    assert run(cluster.destroy(NS, REPO)).preserved


def test_destroy_held_by_finalizers_is_transient_and_a_later_destroy_finishes(
    make_cluster: Any, kube: KubeAPIServer
) -> None:
    cluster = make_cluster(destroy_timeout=0.3)
    run(cluster.apply(NS, REPO, environment()))
    kube.add_object(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "guarded", "namespace": NS, "finalizers": ["example.com/cleanup"]},
        }
    )

    started = time.monotonic()
    with pytest.raises(TransientClusterError, match=f"namespace {NS} is held by finalizers"):
        run(cluster.destroy(NS, REPO))
    assert time.monotonic() - started < 3
    assert kube.get_object("Namespace", "", NS)["status"]["phase"] == "Terminating"  # type: ignore[index]

    # A retry while it is still held: no second DELETE (it would be a 409), the same answer.
    kube.reset_requests()
    with pytest.raises(TransientClusterError):
        run(cluster.destroy(NS, REPO))
    assert kube.count_requests("DELETE") == 0

    with client.ApiClient(client.Configuration(host=kube.url)) as api:
        client.CoreV1Api(api).patch_namespaced_config_map(
            "guarded", NS, {"metadata": {"finalizers": None}}, _content_type="application/merge-patch+json"
        )
    assert run(cluster.destroy(NS, REPO)).already_gone


def test_destroy_waits_out_a_slow_deletion(make_cluster: Any, kube: KubeAPIServer) -> None:
    cluster = make_cluster(destroy_timeout=5.0)
    run(cluster.apply(NS, REPO, environment()))
    kube.hold_namespace_deletion(NS, 3)  # three GETs still see it Terminating

    result = run(cluster.destroy(NS, REPO))

    assert result.deleted
    assert kube.objects("Namespace") == []


def test_a_conflict_on_delete_means_deletion_in_progress(make_cluster: Any, kube: KubeAPIServer) -> None:
    cluster = make_cluster(destroy_timeout=0.2)
    run(cluster.apply(NS, REPO, environment()))
    kube.add_fault("DELETE", rf"/namespaces/{NS}$", status=409, times=-1)
    kube.reset_requests()

    with pytest.raises(TransientClusterError, match="held by finalizers"):
        run(cluster.destroy(NS, REPO))
    assert kube.count_requests("DELETE") == 1  # not retried as a failure: waited on instead


# -- failures ------------------------------------------------------------------------------------


def test_server_errors_are_retried_then_succeed(cluster: KubernetesCluster, kube: KubeAPIServer) -> None:
    kube.add_fault("PATCH", r"/resourcequotas/pr-quota$", status=500, times=2)
    kube.add_fault("GET", rf"/namespaces/{NS}$", status=503, times=1)
    kube.reset_requests()

    result = run(cluster.apply(NS, REPO, environment()))

    assert len(result.applied) == len(environment())
    assert kube.count_requests("PATCH", "/resourcequotas/pr-quota") == 3
    assert len(kube.requests) == len(environment()) + 1 + 3


def test_retries_are_bounded(make_cluster: Any, kube: KubeAPIServer) -> None:
    cluster = make_cluster(retry=RetryPolicy(attempts=3, budget=5.0, base_delay=0.01, max_delay=0.02))
    kube.add_fault("GET", rf"/namespaces/{NS}$", status=503, times=-1)

    with pytest.raises(TransientClusterError) as failed:
        run(cluster.apply(NS, REPO, environment()))

    assert failed.value.status == 503
    assert "injected fault: HTTP 503" in str(failed.value) and "gave up after 3 attempts" in str(failed.value)
    assert kube.count_requests() == 3 and kube.count_requests("PATCH") == 0


def test_retry_after_is_honoured(cluster: KubernetesCluster, kube: KubeAPIServer) -> None:
    kube.add_fault("PATCH", r"/limitranges/pr-limits$", status=429, times=1)  # answers Retry-After: 1
    started = time.monotonic()

    run(cluster.apply(NS, REPO, environment()))

    assert time.monotonic() - started >= 0.95
    assert kube.count_requests("PATCH", "/limitranges/") == 2


def test_an_invalid_object_is_permanent_with_the_api_message(
    cluster: KubernetesCluster, kube: KubeAPIServer
) -> None:
    manifests = environment()
    config_map = next(m for m in manifests if m["kind"] == "ConfigMap")
    config_map["metadata"]["labels"]["broken"] = "-not-a-label-value"
    kube.reset_requests()

    with pytest.raises(PermanentClusterError) as failed:
        run(cluster.apply(NS, REPO, manifests))

    assert failed.value.status == 422 and failed.value.reason == "Invalid"
    assert f'ConfigMap "{NS}-app-config" is invalid: metadata.labels[broken]' in str(failed.value)
    assert str(failed.value).startswith(f"apply ConfigMap/{NS}-app-config: ")
    assert kube.count_requests("PATCH", "/configmaps/") == 1  # not retried
    assert kube.get_object("Deployment", NS, f"{NS}-app") is None  # nothing after it was applied


def test_an_injected_422_keeps_the_api_message(cluster: KubernetesCluster, kube: KubeAPIServer) -> None:
    message = 'ResourceQuota "pr-quota" is invalid: spec.hard[cpu]: Invalid value: "x": must be a quantity'
    kube.add_fault_object(Fault("PATCH", r"/resourcequotas/pr-quota$", status=422, times=-1, message=message))

    with pytest.raises(PermanentClusterError) as failed:
        run(cluster.apply(NS, REPO, environment()))

    assert str(failed.value) == f"apply ResourceQuota/pr-quota: {message}"
    assert kube.count_requests("PATCH", "/resourcequotas/") == 1


def test_errors_never_quote_a_secret(cluster: KubernetesCluster, kube: KubeAPIServer) -> None:
    message = 'Secret "app-redis-credentials" is invalid: data[password]: Invalid value: "redis-pass-0123"'
    kube.add_fault_object(Fault("PATCH", r"/secrets/app-redis-credentials$", status=422, message=message))

    with pytest.raises(PermanentClusterError) as failed:
        run(cluster.apply(NS, REPO, environment()))

    assert "redis-pass-0123" not in str(failed.value)
    assert "[redacted]" in str(failed.value)


def test_a_missing_custom_resource_kind_is_permanent(cluster: KubernetesCluster, kube: KubeAPIServer) -> None:
    kube.add_fault_object(
        Fault(
            "PATCH",
            r"/tenants/",
            status=404,
            times=-1,
            message="the server could not find the requested resource",
        )
    )
    # Served when discovered, gone since (its CRD deleted): said as the operator it takes.
    with pytest.raises(
        PermanentClusterError, match=r"the MinIO operator is not installed \(no minio.min.io/v2 Tenant\)"
    ):
        run(cluster.apply(NS, REPO, environment()))
    assert kube.count_requests("PATCH", "/tenants/") == 1


def test_a_missing_optional_kind_is_skipped_with_a_warning(make_cluster: Any, kube: KubeAPIServer) -> None:
    kube.uninstall("ServiceMonitor")
    cluster = make_cluster()

    result = run(cluster.apply(NS, REPO, environment()))

    assert [str(ref) for ref in result.skipped] == [f"ServiceMonitor/{NS}-app"]
    assert result.warnings == [
        f"ServiceMonitor/{NS}-app was not applied: the Prometheus Operator is not installed "
        "(no monitoring.coreos.com/v1 ServiceMonitor)"
    ]
    assert kube.get_object("Deployment", NS, f"{NS}-app") is not None
    assert kube.count_requests("PATCH", "/servicemonitors/") == 0
    assert f"monitoring.coreos.com/v1/ServiceMonitor/{NS}-app" not in applied_annotation(kube)


def test_a_database_without_its_operator_fails_before_anything_is_applied(
    make_cluster: Any, kube: KubeAPIServer
) -> None:
    kube.uninstall("Cluster")
    cluster = make_cluster()

    with pytest.raises(
        PermanentClusterError,
        match=r"the CloudNativePG operator is not installed \(no postgresql.cnpg.io/v1 Cluster\)",
    ):
        run(cluster.apply(NS, REPO, environment()))
    assert kube.count_requests("PATCH") == 0


def test_discovery_is_asked_once_per_cluster(make_cluster: Any, kube: KubeAPIServer) -> None:
    cluster = make_cluster()
    for _ in range(3):
        run(cluster.apply(NS, REPO, environment()))
    assert [r.path for r in kube.requests if r.path.startswith("/apis/") and r.path.count("/") == 3] == []


def test_a_hanging_answer_times_out_and_is_retried(make_cluster: Any, kube: KubeAPIServer) -> None:
    cluster = make_cluster(timeout=(1.0, 0.3))
    kube.add_fault("PATCH", r"/deployments/", status=None, delay=6.0, times=1)
    started = time.monotonic()

    result = run(cluster.apply(NS, REPO, environment()))

    assert len(result.applied) == len(environment())
    assert kube.count_requests("PATCH", "/deployments/") == 2
    # Well under the hang: the timeout ended it, then the retry.
    assert time.monotonic() - started < 5.0


def test_the_clients_own_retries_are_off(make_cluster: Any, kube: KubeAPIServer) -> None:
    """urllib3 would repeat a timed-out GET by itself; here every attempt is ours and counted."""
    cluster = make_cluster(timeout=(1.0, 0.3), retry=RetryPolicy(attempts=1))
    kube.add_fault("GET", rf"/namespaces/{NS}$", status=None, delay=2.0, times=1)

    with pytest.raises(TransientClusterError, match="did not answer \\(timed out"):
        run(cluster.apply(NS, REPO, environment()))
    assert kube.count_requests("GET") == 1


def test_an_unreachable_api_is_transient() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cluster = KubernetesCluster(
        client.ApiClient(client.Configuration(host=f"http://127.0.0.1:{port}")),
        retry=RetryPolicy(attempts=2, base_delay=0.01),
    )
    try:
        with pytest.raises(TransientClusterError, match="connection refused"):
            run(cluster.destroy(NS, REPO))
    finally:
        cluster.close()


# -- reads ---------------------------------------------------------------------------------------


def test_read_credentials_lists_the_generated_secrets_once(
    cluster: KubernetesCluster, kube: KubeAPIServer
) -> None:
    assert run(cluster.read_credentials(NS)) == {}
    run(cluster.apply(NS, REPO, environment()))
    kube.add_object(obj("v1", "Secret", "unrelated", data={"password": b64("not-generated-123")}))
    kube.reset_requests()

    assert run(cluster.read_credentials(NS)) == {"redis": "redis-pass-0123", "mongodb": "mongo-pass-0123"}
    [request] = kube.requests
    assert request.path == f"/api/v1/namespaces/{NS}/secrets"
    assert request.params == {"labelSelector": "k8s-ee/generated-credentials=true"}


def test_namespaces_lists_only_managed_ones(cluster: KubernetesCluster, kube: KubeAPIServer) -> None:
    run(cluster.apply(NS, REPO, environment()))
    run(cluster.apply("shop-pr-8", REPO, environment(name="shop-pr-8")))
    kube.add_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-system"}})

    found = run(cluster.namespaces())

    assert [info.name for info in found] == [NS, "shop-pr-8"]
    assert all(info.repository == REPO and not info.terminating and not info.preserved for info in found)


def test_read_gives_an_object_with_its_status_or_none(
    cluster: KubernetesCluster, kube: KubeAPIServer
) -> None:
    from handlers.cluster import ObjectRef

    run(cluster.apply(NS, REPO, environment()))
    ref = ObjectRef(api_version="apps/v1", kind="Deployment", name=f"{NS}-app")
    kube.set_status("Deployment", NS, f"{NS}-app", {"readyReplicas": 1, "replicas": 1})

    found = run(cluster.read(NS, ref))

    assert found is not None and found["spec"]["replicas"] == 1 and found["status"]["readyReplicas"] == 1
    assert run(cluster.read(NS, ref.model_copy(update={"name": "gone"}))) is None


# -- with the renderer ---------------------------------------------------------------------------


def test_rendered_environment_applies_reapplies_and_prunes(
    cluster: KubernetesCluster, kube: KubeAPIServer
) -> None:
    everything = {name: True for name in ("postgresql", "mongodb", "redis", "minio", "mariadb")}
    manifests = rendered(everything)
    namespace = manifests[0]["metadata"]["name"]
    kube.reset_requests()

    result = run(cluster.apply(namespace, "Acme/Shop", manifests))

    assert len(kube.requests) <= len(manifests) + 3
    assert len(result.created) == len(manifests)
    for manifest in manifests:
        meta = manifest["metadata"]
        assert kube.get_object(manifest["kind"], meta.get("namespace", ""), meta["name"]) is not None

    # The worker's next deploy: passwords read back, the same manifests, nothing changes.
    passwords = run(cluster.read_credentials(namespace))
    assert passwords == {name: f"pw-{name}-0123456789" for name in passwords}
    assert set(passwords) == {
        "mongodb",
        "redis",
        "minio-access-key",
        "minio-secret-key",
        "mariadb",
        "mariadb-root",
    }
    before = versions(kube, namespace)
    run(cluster.apply(namespace, "Acme/Shop", rendered(everything, passwords)))
    # Nothing changes but, a second later, the namespace's record of the apply: when it ran.
    after = versions(kube, namespace)
    assert {key for key in before if before[key] != after[key]} <= {("Namespace", namespace)}

    # Databases switched off: their objects go, the rest stays as it was.
    fewer = rendered({"postgresql": True}, passwords)
    result = run(cluster.apply(namespace, "Acme/Shop", fewer))
    kept = {(m["kind"], m["metadata"]["name"]) for m in fewer}
    stored = {(o["kind"], o["metadata"]["name"]) for o in applied_objects(kube, namespace)}
    assert stored == kept - {("Namespace", namespace)}
    assert {ref.kind for ref in result.pruned} >= {
        "MongoDBCommunity",
        "RoleBinding",
        "Tenant",
        "Secret",
    }
    assert run(cluster.read_credentials(namespace)) == {}


# -- construction --------------------------------------------------------------------------------


def kubeconfig_for(path: Path, url: str, token: str = "t0ken-value") -> str:
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": {"server": url}}],
        "users": [{"name": "test", "user": {"token": token}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
        "current-context": "test",
    }
    path.write_text(json.dumps(document))
    return str(path)


def test_from_environment_uses_the_kubeconfig(tmp_path: Path, kube: KubeAPIServer) -> None:
    cluster = KubernetesCluster.from_environment(kubeconfig_for(tmp_path / "config", kube.url), retry=FAST)
    try:
        assert run(cluster.apply(NS, REPO, environment())).created_namespace
        assert cluster.source == f"kubeconfig {tmp_path / 'config'}, API server {kube.url}"
    finally:
        cluster.close()


def test_every_request_carries_the_bearer_token(tmp_path: Path) -> None:
    seen: list[str | None] = []

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization"))
            body = b'{"kind":"NamespaceList","apiVersion":"v1","metadata":{},"items":[]}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    with LoopbackServer.serving(Handler) as server:
        cluster = KubernetesCluster.from_environment(
            kubeconfig_for(tmp_path / "config", server.origin, "abc123")
        )
        assert run(cluster.read_credentials(NS)) == {}
        cluster.close()
    assert seen == ["Bearer abc123"]


def test_a_broken_kubeconfig_is_a_permanent_error(tmp_path: Path) -> None:
    (tmp_path / "config").write_text("apiVersion: v1\nkind: Config\n")
    with pytest.raises(PermanentClusterError, match="cannot load the Kubernetes connection settings"):
        KubernetesCluster.from_environment(str(tmp_path / "config"))


def test_detect_cluster(tmp_path: Path, kube: KubeAPIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    out = str(tmp_path / "out")

    chosen, why = detect_cluster(None, out)
    assert isinstance(chosen, DirectoryCluster) and chosen.root == Path(out)
    assert "no kubeconfig found" in why and out in why and "\n" not in why

    chosen, why = detect_cluster("directory", out, kubeconfig=kubeconfig_for(tmp_path / "config", kube.url))
    assert isinstance(chosen, DirectoryCluster) and "K8S_EE_CLUSTER=directory" in why

    for setting in (None, "Kubernetes"):
        chosen, why = detect_cluster(setting, out, kubeconfig=str(tmp_path / "config"))
        assert isinstance(chosen, KubernetesCluster) and kube.url in why
        chosen.close()

    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "config"))
    chosen, why = detect_cluster("", out)
    assert isinstance(chosen, KubernetesCluster) and "found a kubeconfig" in why
    chosen.close()

    with pytest.raises(ValueError, match="K8S_EE_CLUSTER must be one of"):
        detect_cluster("minikube", out)


def test_both_back_ends_are_clusters(cluster: KubernetesCluster, tmp_path: Path) -> None:
    assert isinstance(cluster, Cluster) and cluster.name == "kubernetes"
    assert isinstance(DirectoryCluster(tmp_path), Cluster) and DirectoryCluster(tmp_path).name == "directory"


def test_manifests_passed_in_are_not_changed(cluster: KubernetesCluster) -> None:
    manifests = environment()
    original = copy.deepcopy(manifests)
    run(cluster.apply(NS, REPO, manifests))
    assert manifests == original


def test_every_kind_a_config_can_leave_out_is_pruned(cluster: KubernetesCluster, kube: KubeAPIServer) -> None:
    """Apply everything a k8s-ee.yaml can ask for, then the least: whatever kind the second leaves
    out is deleted (so the chart's RBAC is checked against every deletion the worker can make)."""

    databases = {name: True for name in ("postgresql", "mongodb", "redis", "minio", "mariadb")}
    everything = rendered_config({"projectId": "shop", "databases": databases, "metrics": {"enabled": True}})
    least = rendered_config({"projectId": "shop", "ingress": {"enabled": False}})
    namespace = everything[0]["metadata"]["name"]
    run(cluster.apply(namespace, "Acme/Shop", everything))
    result = run(cluster.apply(namespace, "Acme/Shop", least))
    kinds = {m["kind"] for m in everything} - {m["kind"] for m in least}
    assert kinds >= {"Cluster", "MongoDBCommunity", "Tenant", "Ingress", "ServiceMonitor", "RoleBinding"}
    assert {ref.kind for ref in result.pruned} >= kinds
    # What is left is what the least config applies (and what controllers made of it: pods).
    stored = {(o["kind"], o["metadata"]["name"]) for o in kube.objects(namespace=namespace)}
    assert not {kind for kind, _ in stored} & kinds
    assert {(m["kind"], m["metadata"]["name"]) for m in least[1:]} <= stored


def test_adoption_hands_over_every_kind_and_deletes_a_leftover_of_each(
    cluster: KubernetesCluster, kube: KubeAPIServer
) -> None:
    """A first edition's namespace holding a leftover of every kind: adoption reads every object
    it renders to hand it over, and deletes each leftover (so the chart's RBAC is checked against
    every read and deletion adoption can make)."""
    databases = {name: True for name in ("postgresql", "mongodb", "redis", "minio", "mariadb")}
    everything = rendered_config({"projectId": "shop", "databases": databases, "metrics": {"enabled": True}})
    namespace, repository = everything[0]["metadata"]["name"], "Acme/Shop"
    first_edition_namespace(kube, namespace, repository)
    # A Role too: the first edition's MongoDB agent had one (this gateway binds a ClusterRole).
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "agent"},
        "rules": [],
    }
    leftovers = [*copy.deepcopy(everything[1:]), role]
    for legacy in leftovers:
        metadata = legacy["metadata"]
        metadata.update(namespace=namespace, name=f"legacy-{metadata['name']}"[:63])
        metadata.setdefault("labels", {}).update(naming.common_labels("shop", 42))
        first_edition(kube, legacy)

    result = run(cluster.apply(namespace, repository, everything))

    assert result.adopted
    assert {ref.kind for ref in result.pruned if ref.name.startswith("legacy-")} == {
        m["kind"] for m in leftovers
    }
    assert not [o for o in kube.objects(namespace=namespace) if o["metadata"]["name"].startswith("legacy-")]


# -- no-op redeploys (Cluster.unchanged) ---------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def test_unchanged_costs_one_read_and_sees_what_an_apply_would_change(
    make_cluster: Any, kube: KubeAPIServer
) -> None:
    clock = Clock()
    cluster = make_cluster(clock=clock, reapply_after=timedelta(hours=6))
    manifests = rendered({"redis": True})
    run(cluster.apply(NS_42, "Acme/Shop", manifests))
    kube.reset_requests()

    assert run(cluster.unchanged(NS_42, "Acme/Shop", manifests))
    assert [(r.method, r.path) for r in kube.requests] == [("GET", f"/api/v1/namespaces/{NS_42}")]
    stored = kube.get_object("Namespace", "", NS_42)
    assert stored is not None
    annotations = stored["metadata"]["annotations"]
    assert annotations[naming.ANNOTATION_APPLIED_DIGEST].startswith("sha256:")
    assert annotations[naming.ANNOTATION_APPLIED_AT] == "2026-11-01T12:00:00Z"

    # The generated passwords are not part of it; the namespace's own time of update is not.
    stand_ins = rendered({"redis": True}, {"redis": "another-password-0"})
    later = copy.deepcopy(manifests)
    later[0]["metadata"]["annotations"][naming.ANNOTATION_LAST_UPDATED] = "2026-11-02T00:00:00Z"
    assert run(cluster.unchanged(NS_42, "Acme/Shop", stand_ins))
    assert run(cluster.unchanged(NS_42, "Acme/Shop", later))
    # Anything else is a change; another repository's apply is never skipped.
    changed = rendered({"redis": True, "mongodb": True})
    assert not run(cluster.unchanged(NS_42, "Acme/Shop", changed))
    assert not run(cluster.unchanged(NS_42, "Acme/Other", manifests))

    # Past the period, or with none: applied in full again.
    clock.now += timedelta(hours=6)
    assert not run(cluster.unchanged(NS_42, "Acme/Shop", manifests))
    kube.reset_requests()
    assert not run(make_cluster(reapply_after=None).unchanged(NS_42, "Acme/Shop", manifests))
    assert kube.requests == []


def test_an_edited_inventory_or_a_terminating_namespace_is_not_intact(
    make_cluster: Any, kube: KubeAPIServer
) -> None:
    cluster = make_cluster()
    manifests = rendered({"redis": True})
    run(cluster.apply(NS_42, "Acme/Shop", manifests))
    assert run(cluster.unchanged(NS_42, "Acme/Shop", manifests))

    # Edited by hand (kubectl annotate): what a later apply would prune is not known.
    run(
        cluster._transport.request(
            "PATCH",
            f"/api/v1/namespaces/{NS_42}",
            action="annotate",
            body={"metadata": {"annotations": {ANNOTATION_APPLIED_OBJECTS: "[]"}}},
            content_type="application/merge-patch+json",
        )
    )
    assert not run(cluster.unchanged(NS_42, "Acme/Shop", manifests))

    run(cluster.apply(NS_42, "Acme/Shop", manifests))
    assert run(cluster.unchanged(NS_42, "Acme/Shop", manifests))
    kube.delete_namespace(NS_42, hold=1)  # terminating for one more read, then gone
    assert not run(cluster.unchanged(NS_42, "Acme/Shop", manifests))
    assert not run(cluster.unchanged(NS_42, "Acme/Shop", manifests))


def test_an_operator_installed_since_the_apply_makes_it_apply_again(
    make_cluster: Any, kube: KubeAPIServer
) -> None:
    """The inventory must be what this apply would write: the ServiceMonitor left out while the
    cluster did not serve its kind is applied once it does."""
    manifests = environment(mongodb=False)
    kube.uninstall("ServiceMonitor")
    without = make_cluster()
    run(without.apply(NS, REPO, manifests))
    assert run(without.unchanged(NS, REPO, manifests))

    kube.install("ServiceMonitor")
    assert not run(make_cluster().unchanged(NS, REPO, manifests))


def test_the_connection_pool_holds_as_many_connections_as_there_are_threads(kube: KubeAPIServer) -> None:
    """With retries already off (as a kubeconfig's cluster has them), the pool is sized too."""
    configuration = client.Configuration(host=kube.url)
    configuration.retries = False
    assert configuration.connection_pool_maxsize < POOL_SIZE  # the client's default, cpu_count * 5
    cluster = KubernetesCluster(client.ApiClient(configuration))
    try:
        built = cluster._transport._api.rest_client.pool_manager.connection_pool_kw
        assert built["maxsize"] == POOL_SIZE
        assert built["retries"] is False or built["retries"].total is False
    finally:
        cluster.close()


def test_many_concurrent_requests_keep_their_connections(
    kube: KubeAPIServer, caplog: pytest.LogCaptureFixture
) -> None:
    configuration = client.Configuration(host=kube.url)
    configuration.retries = False
    cluster = KubernetesCluster(client.ApiClient(configuration))
    run(cluster.apply(NS, REPO, environment()))

    async def many() -> None:
        await asyncio.gather(*(cluster.read_credentials(NS) for _ in range(POOL_SIZE * 2)))

    try:
        with caplog.at_level("WARNING", logger="urllib3.connectionpool"):
            run(many())
    finally:
        cluster.close()
    assert "Connection pool is full" not in caplog.text
