"""The test API server, driven by the real `kubernetes` client over HTTP."""

from __future__ import annotations

import contextlib
import http.client
import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import urllib3
import yaml
from kubernetes import client, dynamic
from kubernetes.client import ApiClient, ApiException

from tests.fakes.kubeapi import KubeAPIServer
from tests.fakes.kubeapi.kinds import RESOURCES

APPLY = "application/apply-patch+yaml"
MANAGER = "k8s-ee-gateway"
NS = "demo-pr-1"


@pytest.fixture
def api(kube: KubeAPIServer) -> Iterator[ApiClient]:
    with ApiClient(client.Configuration(host=kube.url)) as api_client:
        yield api_client


@pytest.fixture
def core(api: ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture
def namespace(core: client.CoreV1Api) -> str:
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NS)))
    return NS


def call(
    api: ApiClient,
    method: str,
    path: str,
    body: Any = None,
    query: list[tuple[str, str]] | None = None,
    content_type: str = "application/json",
    timeout: float | None = None,
) -> tuple[int, Any]:
    """A raw call through the client's own transport; ApiException on a failure status."""
    request = api.param_serialize(
        method,
        path,
        query_params=query or [],
        header_params={"Content-Type": content_type, "Accept": "application/json"},
        body=body,
    )
    response = api.call_api(*request, _request_timeout=timeout)
    response.read()
    answer = api.response_deserialize(response, {"200": "object", "201": "object"})
    return answer.status_code, answer.data


def apply(
    api: ApiClient,
    path: str,
    body: Any,
    manager: str = MANAGER,
    force: bool = True,
    timeout: float | None = None,
) -> tuple[int, dict[str, Any]]:
    """Server-side apply the way the worker's applier does it."""
    query = [("fieldManager", manager)] + ([("force", "true")] if force else [])
    return call(api, "PATCH", path, body, query, APPLY, timeout)


def status_of(error: ApiException) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(error.body or "")
    assert body["kind"] == "Status" and body["apiVersion"] == "v1" and body["status"] == "Failure"
    assert body["code"] == error.status
    return body


def configmap(name: str, data: dict[str, str], labels: dict[str, str] | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if labels:
        metadata["labels"] = labels
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}


def deployment(name: str, replicas: int = 1, image: str = "app:1") -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": dict(labels)},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": dict(labels)},
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
        },
    }


def cm_path(name: str, namespace: str = NS) -> str:
    return f"/api/v1/namespaces/{namespace}/configmaps/{name}"


# -- discovery ---------------------------------------------------------------------------------


def test_discovery_serves_version_groups_and_every_kind(api: ApiClient, tmp_path: Path) -> None:
    assert client.VersionApi(api).get_code().git_version.startswith("v1.")
    assert client.CoreApi(api).get_api_versions().versions == ["v1"]
    groups = {group.name for group in client.ApisApi(api).get_api_versions().groups}
    assert {"apps", "networking.k8s.io", "postgresql.cnpg.io", "minio.min.io"} <= groups

    dyn = dynamic.DynamicClient(api, cache_file=str(tmp_path / "discovery.json"))
    for resource in RESOURCES:
        found = dyn.resources.get(api_version=resource.api_version, kind=resource.kind)
        assert (found.name, found.namespaced) == (resource.plural, resource.namespaced)


# -- create, read, update, delete --------------------------------------------------------------


def test_namespace_gets_server_metadata(core: client.CoreV1Api) -> None:
    created = core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=NS, labels={"a": "b"}))
    )

    assert created.status.phase == "Active"
    assert created.metadata.uid and created.metadata.creation_timestamp
    assert created.metadata.labels == {"a": "b", "kubernetes.io/metadata.name": NS}
    assert core.read_namespace(NS).metadata.resource_version == created.metadata.resource_version


def test_configmap_create_replace_patch_delete(core: client.CoreV1Api, namespace: str) -> None:
    created = core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="cfg"), data={"a": "1"})
    )
    assert created.metadata.namespace == namespace
    assert core.read_namespaced_config_map("cfg", namespace).data == {"a": "1"}

    created.data = {"a": "2"}
    replaced = core.replace_namespaced_config_map("cfg", namespace, created)
    assert int(replaced.metadata.resource_version) > int(created.metadata.resource_version)
    assert replaced.metadata.uid == created.metadata.uid

    created.data = {"a": "3"}  # still carries the old resourceVersion
    with pytest.raises(ApiException) as stale:
        core.replace_namespaced_config_map("cfg", namespace, created)
    assert stale.value.status == 409 and status_of(stale.value)["reason"] == "Conflict"

    merged = core.patch_namespaced_config_map(
        "cfg", namespace, {"data": {"b": "x"}}, _content_type="application/merge-patch+json"
    )
    assert merged.data == {"a": "2", "b": "x"}
    strategic = core.patch_namespaced_config_map("cfg", namespace, {"data": {"a": None}})
    assert strategic.data == {"b": "x"}
    patched = core.patch_namespaced_config_map(
        "cfg",
        namespace,
        [{"op": "add", "path": "/data/c", "value": "y"}],
        _content_type="application/json-patch+json",
    )
    assert patched.data == {"b": "x", "c": "y"}

    deleted = core.delete_namespaced_config_map("cfg", namespace)
    assert deleted["status"] == "Success" and deleted["details"]["name"] == "cfg"
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_config_map("cfg", namespace)
    body = status_of(missing.value)
    assert (missing.value.status, body["reason"]) == (404, "NotFound")
    assert body["details"] == {"name": "cfg", "kind": "configmaps"}
    assert body["message"] == 'configmaps "cfg" not found'


def test_create_twice_is_already_exists(core: client.CoreV1Api, namespace: str) -> None:
    secret = client.V1Secret(metadata=client.V1ObjectMeta(name="s"), string_data={"password": "hunter2"})
    created = core.create_namespaced_secret(namespace, secret)
    assert created.data == {"password": "aHVudGVyMg=="}  # stringData is folded into data
    assert created.string_data is None

    with pytest.raises(ApiException) as error:
        core.create_namespaced_secret(namespace, secret)
    assert (error.value.status, status_of(error.value)["reason"]) == (409, "AlreadyExists")


def test_create_in_missing_namespace_is_not_found(api: ApiClient) -> None:
    with pytest.raises(ApiException) as error:
        client.AppsV1Api(api).create_namespaced_deployment(
            "nowhere", client.V1Deployment.from_dict(deployment("app"))
        )
    body = status_of(error.value)
    assert (error.value.status, body["reason"]) == (404, "NotFound")
    assert body["details"] == {"name": "nowhere", "kind": "namespaces"}


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/v1/namespaces", {"metadata": {}}, "metadata.name"),
        ("/api/v1/namespaces", {"metadata": {"name": "x" * 64}}, "metadata.name"),
        ("/api/v1/namespaces", {"metadata": {"name": "a.b"}}, "metadata.name"),
        (f"/api/v1/namespaces/{NS}/configmaps", {"metadata": {"name": "Upper_Case"}}, "metadata.name"),
        (f"/api/v1/namespaces/{NS}/services", {"metadata": {"name": "1st"}}, "metadata.name"),
        (
            f"/api/v1/namespaces/{NS}/configmaps",
            {"metadata": {"name": "c", "labels": {"a": "-x"}}},
            "metadata.labels[a]",
        ),
        (
            f"/api/v1/namespaces/{NS}/configmaps",
            {"metadata": {"name": "c", "labels": {"a": "x" * 64}}},
            "metadata.labels[a]",
        ),
        (
            f"/api/v1/namespaces/{NS}/configmaps",
            {"metadata": {"name": "c", "labels": {"bad key": "x"}}},
            "metadata.labels",
        ),
        (f"/api/v1/namespaces/{NS}/configmaps", {"kind": "Secret", "metadata": {"name": "c"}}, "kind"),
        (
            f"/apis/apps/v1/namespaces/{NS}/deployments",
            {"apiVersion": "v1", "metadata": {"name": "d"}},
            "apiVersion",
        ),
    ],
)
def test_invalid_objects_are_422(
    api: ApiClient, namespace: str, path: str, body: dict[str, Any], field: str
) -> None:
    with pytest.raises(ApiException) as error:
        call(api, "POST", path, body)
    status = status_of(error.value)
    assert (error.value.status, status["reason"]) == (422, "Invalid")
    assert field in [cause["field"] for cause in status["details"]["causes"]]


def test_unknown_paths_are_404_status(api: ApiClient) -> None:
    for path in (
        "/api/v1/namespaces/x/widgets",
        "/apis/nope/v1/things",
        "/apis/apps/v1/deployments/x",
        "/foo",
    ):
        with pytest.raises(ApiException) as error:
            call(api, "GET", path)
        assert (error.value.status, status_of(error.value)["reason"]) == (404, "NotFound")


def test_dry_run_stores_nothing(core: client.CoreV1Api, namespace: str, kube: KubeAPIServer) -> None:
    core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="c")), dry_run="All"
    )
    assert kube.objects("ConfigMap") == []


# -- server-side apply -------------------------------------------------------------------------


def test_apply_creates_then_reapply_is_a_noop(api: ApiClient, namespace: str, kube: KubeAPIServer) -> None:
    code, created = apply(api, cm_path("cfg"), configmap("cfg", {"a": "1"}))
    assert code == 201
    [entry] = created["metadata"]["managedFields"]
    assert (entry["manager"], entry["operation"]) == (MANAGER, "Apply")
    assert entry["fieldsV1"] == {"f:data": {"f:a": {}}}

    code, again = apply(api, cm_path("cfg"), configmap("cfg", {"a": "1"}))
    assert code == 200
    assert again == created  # resourceVersion, managedFields time and all

    _, changed = apply(api, cm_path("cfg"), configmap("cfg", {"a": "2", "b": "3"}))
    assert int(changed["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    _, dropped = apply(api, cm_path("cfg"), configmap("cfg", {"b": "3"}))
    assert dropped["data"] == {"b": "3"}  # a field the manager stopped applying is removed
    assert kube.get_object("ConfigMap", namespace, "cfg") == dropped


def test_apply_bumps_generation_only_on_spec_changes(api: ApiClient, namespace: str) -> None:
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments/app"
    _, first = apply(api, path, deployment("app"))
    assert first["metadata"]["generation"] == 1

    relabelled = deployment("app")
    relabelled["metadata"]["labels"]["k8s-ee/commit-sha"] = "abc"
    _, second = apply(api, path, relabelled)
    assert second["metadata"]["generation"] == 1
    assert second["metadata"]["resourceVersion"] != first["metadata"]["resourceVersion"]

    relabelled["spec"]["template"]["spec"]["containers"][0]["image"] = "app:2"
    _, third = apply(api, path, relabelled)
    assert third["metadata"]["generation"] == 2
    assert third["spec"]["template"]["spec"]["containers"] == [{"name": "app", "image": "app:2"}]


def test_apply_accepts_a_yaml_body(api: ApiClient, namespace: str) -> None:
    text = yaml.safe_dump(configmap("cfg", {"greeting": "hello"}))
    code, created = apply(api, cm_path("cfg"), text)
    assert code == 201 and created["data"] == {"greeting": "hello"}


def test_apply_conflicts_with_another_manager_unless_forced(api: ApiClient, namespace: str) -> None:
    apply(api, cm_path("cfg"), configmap("cfg", {"a": "1", "shared": "same"}), manager="someone-else")

    with pytest.raises(ApiException) as error:
        apply(api, cm_path("cfg"), configmap("cfg", {"a": "2"}), force=False)
    status = status_of(error.value)
    assert (error.value.status, status["reason"]) == (409, "Conflict")
    assert status["details"]["causes"] == [
        {
            "reason": "FieldManagerConflict",
            "message": 'conflict with "someone-else" using v1',
            "field": ".data.a",
        }
    ]

    # The same value is no conflict: the field becomes shared.
    apply(api, cm_path("cfg"), configmap("cfg", {"shared": "same"}), force=False)

    _, forced = apply(api, cm_path("cfg"), configmap("cfg", {"a": "2", "shared": "same"}))
    assert forced["data"] == {"a": "2", "shared": "same"}
    owners = {entry["manager"]: entry["fieldsV1"] for entry in forced["metadata"]["managedFields"]}
    assert owners == {
        "someone-else": {"f:data": {"f:shared": {}}},
        MANAGER: {"f:data": {"f:a": {}, "f:shared": {}}},
    }


def test_apply_needs_a_field_manager(api: ApiClient, namespace: str) -> None:
    with pytest.raises(ApiException) as error:
        call(api, "PATCH", cm_path("cfg"), configmap("cfg", {}), content_type=APPLY)
    assert (error.value.status, status_of(error.value)["reason"]) == (422, "Invalid")


def test_typed_client_apply_and_update_are_tracked(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="cfg"), data={"a": "1"})
    )
    applied = core.patch_namespaced_config_map(
        "cfg", namespace, configmap("cfg", {"b": "2"}), field_manager=MANAGER, force=True, _content_type=APPLY
    )
    assert applied.data == {"a": "1", "b": "2"}
    managers = {(entry.manager, entry.operation) for entry in applied.metadata.managed_fields}
    assert managers == {("OpenAPI-Generator", "Update"), (MANAGER, "Apply")}


def test_dynamic_client_applies_custom_and_cluster_objects(
    api: ApiClient, tmp_path: Path, kube: KubeAPIServer
) -> None:
    dyn = dynamic.DynamicClient(api, cache_file=str(tmp_path / "discovery.json"))
    namespaces = dyn.resources.get(api_version="v1", kind="Namespace")
    dyn.server_side_apply(
        namespaces,
        body={
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": NS, "labels": {"k8s-ee/type": "ephemeral"}},
        },
        field_manager=MANAGER,
        force_conflicts=True,
    )
    clusters = dyn.resources.get(api_version="postgresql.cnpg.io/v1", kind="Cluster")
    body = {
        "apiVersion": "postgresql.cnpg.io/v1",
        "kind": "Cluster",
        "metadata": {"name": "app-postgresql", "namespace": NS},
        "spec": {"instances": 1, "storage": {"size": "1Gi"}},
    }
    dyn.server_side_apply(clusters, body=body, field_manager=MANAGER, force_conflicts=True)

    got = dyn.get(clusters, name="app-postgresql", namespace=NS)
    assert got.spec.storage.size == "1Gi"
    listed = dyn.get(namespaces, label_selector="k8s-ee/type=ephemeral")
    assert [item.metadata.name for item in listed.items] == [NS]
    assert [obj["kind"] for obj in kube.objects(namespace=NS)] == ["Cluster"]


# -- lists -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("tier=web", ["a", "b"]),
        ("tier==web", ["a", "b"]),
        ("tier!=web", ["c", "d"]),
        ("tier", ["a", "b", "c"]),
        ("!tier", ["d"]),
        ("tier in (web,db)", ["a", "b", "c"]),
        ("tier notin (web, db)", ["d"]),
        ("tier=web,env in (prod)", ["a"]),
        ("tier,!env", ["c"]),
        ("", ["a", "b", "c", "d"]),
    ],
)
def test_label_selectors(core: client.CoreV1Api, namespace: str, selector: str, expected: list[str]) -> None:
    labels = {
        "a": {"tier": "web", "env": "prod"},
        "b": {"tier": "web", "env": "dev"},
        "c": {"tier": "db"},
        "d": {},
    }
    for name, labelset in labels.items():
        core.create_namespaced_config_map(
            namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name, labels=labelset))
        )

    listed = core.list_namespaced_config_map(namespace, label_selector=selector)
    assert [item.metadata.name for item in listed.items] == expected
    assert listed.kind == "ConfigMapList" and int(listed.metadata.resource_version) >= 5


def test_bad_label_selector_is_400(core: client.CoreV1Api, namespace: str) -> None:
    with pytest.raises(ApiException) as error:
        core.list_namespaced_config_map(namespace, label_selector="tier in ()")
    assert (error.value.status, status_of(error.value)["reason"]) == (400, "BadRequest")


def test_list_across_namespaces_and_pages(api: ApiClient, core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="other")))
    for ns in (namespace, "other"):
        for name in ("one", "two"):
            apply(api, f"/apis/apps/v1/namespaces/{ns}/deployments/{name}", deployment(name))

    apps = client.AppsV1Api(api)
    everywhere = apps.list_deployment_for_all_namespaces()
    assert [(d.metadata.namespace, d.metadata.name) for d in everywhere.items] == [
        (namespace, "one"),
        (namespace, "two"),
        ("other", "one"),
        ("other", "two"),
    ]
    _, raw = call(api, "GET", "/apis/apps/v1/deployments")
    assert raw["kind"] == "DeploymentList" and "kind" not in raw["items"][0]  # as the real server lists

    first = apps.list_deployment_for_all_namespaces(limit=3)
    assert len(first.items) == 3 and first.metadata.remaining_item_count == 1
    rest = apps.list_deployment_for_all_namespaces(limit=3, _continue=first.metadata._continue)
    assert [(d.metadata.namespace, d.metadata.name) for d in rest.items] == [("other", "two")]
    assert not rest.metadata._continue


def test_pods_list(core: client.CoreV1Api, namespace: str) -> None:
    assert core.list_namespaced_pod(namespace).items == []


# -- deletion ----------------------------------------------------------------------------------


def test_namespace_deletion_removes_its_objects(
    api: ApiClient, core: client.CoreV1Api, namespace: str, kube: KubeAPIServer
) -> None:
    apply(api, cm_path("cfg"), configmap("cfg", {"a": "1"}))
    apply(api, f"/apis/apps/v1/namespaces/{namespace}/deployments/app", deployment("app"))
    kube.add_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "keep"}})
    kube.add_object(configmap("kept", {}) | {"metadata": {"name": "kept", "namespace": "keep"}})

    answer = core.delete_namespace(namespace)
    assert answer["status"]["phase"] == "Terminating" and answer["metadata"]["deletionTimestamp"]

    with pytest.raises(ApiException) as error:
        core.read_namespace(namespace)
    assert error.value.status == 404
    assert kube.objects(namespace=namespace) == []
    assert [obj["metadata"]["name"] for obj in kube.objects("ConfigMap")] == ["kept"]


def test_held_namespace_deletion(
    api: ApiClient, core: client.CoreV1Api, namespace: str, kube: KubeAPIServer
) -> None:
    apply(api, cm_path("cfg"), configmap("cfg", {"a": "1"}))
    kube.hold_namespace_deletion(namespace, 2)
    core.delete_namespace(namespace)

    assert core.read_namespace(namespace).status.phase == "Terminating"
    with pytest.raises(ApiException) as forbidden:
        apply(api, cm_path("new"), configmap("new", {}))
    assert (forbidden.value.status, status_of(forbidden.value)["reason"]) == (403, "Forbidden")
    with pytest.raises(ApiException) as again:
        core.delete_namespace(namespace)
    assert (again.value.status, status_of(again.value)["reason"]) == (409, "Conflict")
    assert kube.get_object("ConfigMap", namespace, "cfg") is not None  # content stays while held

    assert core.read_namespace(namespace).status.phase == "Terminating"
    with pytest.raises(ApiException) as gone:
        core.read_namespace(namespace)
    assert gone.value.status == 404
    assert kube.objects(namespace=namespace) == []


def test_releasing_a_hold_finishes_deletion(
    core: client.CoreV1Api, namespace: str, kube: KubeAPIServer
) -> None:
    kube.hold_namespace_deletion(namespace, 1000)
    core.delete_namespace(namespace)
    assert core.read_namespace(namespace).status.phase == "Terminating"
    kube.hold_namespace_deletion(namespace, 0)
    assert kube.objects("Namespace") == []


def test_finalizers_hold_objects_and_their_namespace(
    core: client.CoreV1Api, namespace: str, kube: KubeAPIServer
) -> None:
    meta = client.V1ObjectMeta(name="guarded", finalizers=["example.com/cleanup"])
    core.create_namespaced_config_map(namespace, client.V1ConfigMap(metadata=meta))

    pending = core.delete_namespaced_config_map("guarded", namespace)
    assert pending["metadata"]["deletionTimestamp"]
    assert core.read_namespaced_config_map("guarded", namespace).metadata.deletion_timestamp

    core.delete_namespace(namespace)
    assert core.read_namespace(namespace).status.phase == "Terminating"  # content still held

    core.patch_namespaced_config_map(
        "guarded", namespace, {"metadata": {"finalizers": None}}, _content_type="application/merge-patch+json"
    )
    assert kube.objects(namespace=namespace) == []
    assert kube.objects("Namespace") == []


# -- faults and the request log ----------------------------------------------------------------


def test_injected_failure_then_success(core: client.CoreV1Api, namespace: str, kube: KubeAPIServer) -> None:
    kube.reset_requests()
    kube.add_fault("GET", rf"/namespaces/{namespace}$", status=500, times=1)

    with pytest.raises(ApiException) as error:
        core.read_namespace(namespace)
    assert (error.value.status, status_of(error.value)["reason"]) == (500, "InternalError")
    assert core.read_namespace(namespace).metadata.name == namespace
    assert kube.count_requests("GET", f"/namespaces/{namespace}") == 2
    assert kube.faults == []


def test_a_hanging_answer_trips_the_client_timeout(
    api: ApiClient, namespace: str, kube: KubeAPIServer
) -> None:
    kube.add_fault("PATCH", r"/configmaps/cfg$", status=None, delay=8.0)
    started = time.monotonic()
    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        apply(api, cm_path("cfg"), configmap("cfg", {"a": "1"}), timeout=0.3)
    assert time.monotonic() - started < 6.0
    # The next call is answered at once.
    assert apply(api, cm_path("cfg"), configmap("cfg", {"a": "1"}), timeout=2)[0] in (200, 201)


def test_urllib3_retries_a_timed_out_get(core: client.CoreV1Api, namespace: str, kube: KubeAPIServer) -> None:
    """Worth knowing for an applier: the client's default urllib3 retries repeat an idempotent
    call that timed out, so one slow GET costs a second request rather than an exception."""
    kube.reset_requests()
    kube.add_fault("GET", rf"/namespaces/{namespace}$", status=None, delay=3.0)
    assert core.read_namespace(namespace, _request_timeout=0.3).metadata.name == namespace
    assert kube.count_requests("GET") == 2


def test_request_log_counts_calls_per_namespace(
    api: ApiClient, core: client.CoreV1Api, namespace: str, kube: KubeAPIServer
) -> None:
    kube.reset_requests()
    apply(api, cm_path("a"), configmap("a", {}))
    apply(api, cm_path("b"), configmap("b", {}))
    core.list_namespaced_config_map(namespace, label_selector="x=y")

    records = kube.requests
    assert [(r.method, r.content_type) for r in records[:2]] == [("PATCH", APPLY), ("PATCH", APPLY)]
    assert records[0].params == {"fieldManager": MANAGER, "force": "true"}
    assert records[2].params == {"labelSelector": "x=y"}
    assert kube.count_requests(path_contains=f"/namespaces/{namespace}/") == 3
    assert kube.reset_requests() == 3 and kube.requests == []


def test_status_subresource(api: ApiClient, namespace: str, kube: KubeAPIServer) -> None:
    # A custom resource: nothing but its operator (here, the test) writes its status.
    path = f"/apis/postgresql.cnpg.io/v1/namespaces/{namespace}/clusters/db"
    cluster = {"apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster", "metadata": {"name": "db"}}
    apply(api, path, cluster | {"spec": {"instances": 1}})
    custom = client.CustomObjectsApi(api)
    updated = custom.patch_namespaced_custom_object_status(
        "postgresql.cnpg.io", "v1", namespace, "clusters", "db", {"status": {"readyInstances": 1}}
    )
    assert updated["status"] == {"readyInstances": 1}

    with_status = cluster | {"spec": {"instances": 1}, "status": {"readyInstances": 5}}
    _, applied = apply(api, path, with_status)
    assert applied["status"] == {"readyInstances": 1}  # the main resource leaves status alone
    assert kube.set_status("Cluster", namespace, "db", {"phase": "Cluster in healthy state"})["status"] == {
        "phase": "Cluster in healthy state"
    }


def test_concurrent_writes_get_distinct_resource_versions(
    api: ApiClient, core: client.CoreV1Api, kube: KubeAPIServer
) -> None:
    for index in range(4):
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=f"ns-{index}")))

    def work(index: int) -> list[str]:
        return [
            apply(api, cm_path(f"c{n}", f"ns-{index % 4}"), configmap(f"c{n}", {"n": str(index)}))[1][
                "metadata"
            ]["resourceVersion"]
            for n in range(index * 10, index * 10 + 10)
        ]

    with ThreadPoolExecutor(max_workers=8) as pool:
        versions = [version for batch in pool.map(work, range(8)) for version in batch]
    assert len(set(versions)) == 80
    assert len(kube.objects("ConfigMap")) == 80


def test_stop_cuts_kept_alive_connections(kube: KubeAPIServer, core: client.CoreV1Api) -> None:
    core.list_namespace()  # leaves a pooled keep-alive connection
    kube.stop()
    with pytest.raises((urllib3.exceptions.HTTPError, OSError)):
        core.list_namespace(_request_timeout=1)


# -- the HTTP controls and the process entry point ---------------------------------------------


def control(url: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url + path, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_http_controls(kube: KubeAPIServer, core: client.CoreV1Api, namespace: str) -> None:
    url = kube.url
    code, fault = control(
        url, "POST", "/_test/faults", {"method": "GET", "path_regex": "/namespaces$", "status": 503}
    )
    assert code == 201 and fault["times"] == 1
    with pytest.raises(ApiException) as error:
        core.list_namespace()
    assert (error.value.status, status_of(error.value)["reason"]) == (503, "ServiceUnavailable")

    code, requests = control(url, "GET", "/_test/requests")
    assert requests["items"][-1].pop("at") > 0
    assert requests["items"][-1].pop("user_agent").startswith("OpenAPI-Generator/")
    assert requests["items"][-1] == {
        "method": "GET",
        "path": "/api/v1/namespaces",
        "query": "",
        "content_type": "",
    }
    assert control(url, "DELETE", "/_test/requests")[1]["cleared"] >= 1

    code, created = control(
        url,
        "POST",
        "/_test/objects",
        configmap("seeded", {"k": "v"}) | {"metadata": {"name": "seeded", "namespace": namespace}},
    )
    assert code == 201 and created["metadata"]["uid"]
    code, objects = control(url, "GET", f"/_test/objects?kind=ConfigMap&namespace={namespace}")
    assert [obj["metadata"]["name"] for obj in objects["items"]] == ["seeded"]

    assert control(url, "POST", "/_test/holds", {"namespace": namespace, "times": 1})[0] == 200
    core.delete_namespace(namespace)
    assert core.read_namespace(namespace).status.phase == "Terminating"
    with pytest.raises(ApiException):
        core.read_namespace(namespace)

    code, bad = control(url, "POST", "/_test/faults", {"status": 500})
    assert (code, bad["reason"]) == (400, "BadRequest")
    control(url, "POST", "/_test/faults", {"path_regex": ".*", "times": -1})
    assert control(url, "POST", "/_test/reset")[0] == 200
    assert kube.faults == [] and kube.objects() == [] and kube.requests == []


def test_runs_as_its_own_process() -> None:
    root = Path(__file__).resolve().parents[2]
    command = [sys.executable, "-m", "tests.fakes.kubeapi", "--port", "0"]
    with subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            url = process.stdout.readline().strip()
            assert url.startswith("http://127.0.0.1:")
            with ApiClient(client.Configuration(host=url)) as api_client:
                assert client.VersionApi(api_client).get_code().major == "1"
        finally:
            process.terminate()
        assert process.wait(timeout=10) == 0


def test_hang_does_not_block_stop() -> None:
    server = KubeAPIServer()
    server.start()
    server.add_fault("GET", "/version", status=None, delay=30)

    def wait_for_answer() -> None:
        # The stop wakes the call and cuts its connection: an answer, a partial one or none.
        with contextlib.suppress(OSError, http.client.HTTPException):
            control(server.url, "GET", "/version")

    caller = threading.Thread(target=wait_for_answer, daemon=True)
    caller.start()
    time.sleep(0.2)
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 5


# -- what a real server refuses, and what a cluster does after a write ----------------------------


def deploy_path(name: str, namespace: str = NS) -> str:
    return f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}"


def test_apply_merges_keyed_lists_element_by_element(api: ApiClient, namespace: str) -> None:
    """Containers by name, env by name, ports by containerPort and protocol (list-type map)."""
    mine = deployment("app")
    container = mine["spec"]["template"]["spec"]["containers"][0]
    container["env"] = [{"name": "MINE", "value": "1"}]
    container["ports"] = [{"containerPort": 80}]
    apply(api, deploy_path("app"), mine)

    # Another manager adds an env var to the same container, and a container of its own.
    theirs = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "app"},
        "spec": {
            "selector": {"matchLabels": {"app": "app"}},
            "template": {
                "spec": {
                    "containers": [
                        {"name": "app", "env": [{"name": "THEIRS", "value": "2"}]},
                        {"name": "sidecar", "image": "side:1"},
                    ]
                }
            },
        },
    }
    _, merged = apply(api, deploy_path("app"), theirs, manager="someone-else")
    containers = merged["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["app", "sidecar"]
    assert containers[0]["image"] == "app:1"
    assert [e["name"] for e in containers[0]["env"]] == ["MINE", "THEIRS"]
    entry = next(e for e in merged["metadata"]["managedFields"] if e["manager"] == "someone-else")
    owned = entry["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]
    assert set(owned) == {'k:{"name":"app"}', 'k:{"name":"sidecar"}'}

    # We stop applying our env var: only ours goes; theirs and their container stay.
    container.pop("env")
    _, after = apply(api, deploy_path("app"), mine)
    containers = after["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["app", "sidecar"]
    assert containers[0]["env"] == [{"name": "THEIRS", "value": "2"}]
    assert containers[0]["ports"] == [{"containerPort": 80}]


def test_managed_fields_can_be_handed_over_and_then_unapplied_fields_go(
    api: ApiClient, namespace: str, kube: KubeAPIServer
) -> None:
    """As `kubectl apply --server-side` takes over a client-side apply: managedFields rewritten by a
    patch; afterwards, what the new owner does not apply is removed."""
    first = deployment("app")
    first["spec"]["template"]["spec"]["containers"].append({"name": "extra", "image": "x:1"})
    kube.add_object(
        first | {"metadata": {**first["metadata"], "namespace": namespace}}, "kubectl-client-side-apply"
    )
    stored = kube.get_object("Deployment", namespace, "app")
    assert stored is not None
    taken = [
        {**entry, "manager": MANAGER, "operation": "Apply"}
        for entry in stored["metadata"]["managedFields"]
        if entry["manager"] == "kubectl-client-side-apply"
    ]
    patch = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": stored["metadata"]["resourceVersion"]},
        {"op": "replace", "path": "/metadata/managedFields", "value": taken},
    ]
    call(api, "PATCH", deploy_path("app"), patch, content_type="application/json-patch+json")
    _, applied = apply(api, deploy_path("app"), deployment("app"))
    assert [c["name"] for c in applied["spec"]["template"]["spec"]["containers"]] == ["app"]


@pytest.mark.parametrize(
    ("kind", "path", "first", "second", "words"),
    [
        (
            "Deployment",
            deploy_path("app"),
            deployment("app"),
            deployment("app")
            | {"spec": {**deployment("app")["spec"], "selector": {"matchLabels": {"x": "y"}}}},
            "spec.selector: Invalid value",
        ),
        (
            "PersistentVolumeClaim",
            f"/api/v1/namespaces/{NS}/persistentvolumeclaims/data",
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2Gi"}}},
            },
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
            },
            "spec.resources.requests.storage: Forbidden: field can not be less than previous value",
        ),
        (
            "RoleBinding",
            f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/rolebindings/rb",
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": "rb"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "a"},
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": "rb"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "b"},
            },
            "roleRef: Invalid value",
        ),
    ],
)
def test_immutable_fields_and_shrinking_claims_are_422(
    api: ApiClient, namespace: str, kind: str, path: str, first: Any, second: Any, words: str
) -> None:
    apply(api, path, first)
    with pytest.raises(ApiException) as error:
        apply(api, path, second)
    body = status_of(error.value)
    assert (error.value.status, body["reason"]) == (422, "Invalid")
    assert words in body["message"] and body["message"].startswith(kind)


def test_creating_in_a_terminating_namespace_is_403_namespace_terminating(
    api: ApiClient, namespace: str, kube: KubeAPIServer
) -> None:
    kube.delete_namespace(namespace, hold=5)
    with pytest.raises(ApiException) as error:
        apply(api, cm_path("new"), configmap("new", {}))
    body = status_of(error.value)
    assert (error.value.status, body["reason"]) == (403, "Forbidden")
    assert body["details"]["causes"] == [
        {
            "reason": "NamespaceTerminating",
            "message": f"namespace {namespace} is being terminated",
            "field": "metadata.namespace",
        }
    ]
    assert "because it is being terminated" in body["message"]


def test_a_deployment_rolls_and_becomes_available_after_the_delay(
    api: ApiClient, namespace: str, kube: KubeAPIServer
) -> None:
    kube.ready_delay = 0.3
    apply(api, deploy_path("app"), deployment("app"))
    apps = client.AppsV1Api(api)
    first = apps.read_namespaced_deployment("app", namespace).status
    assert not first.available_replicas and first.updated_replicas == 1
    [pod] = kube.objects("Pod", namespace)
    assert pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "ContainerCreating"
    time.sleep(0.6)
    ready = apps.read_namespaced_deployment("app", namespace).status
    assert ready.available_replicas == 1 and ready.observed_generation == 1
    assert {c.type: c.reason for c in ready.conditions}["Progressing"] == "NewReplicaSetAvailable"

    # A new template: a surge pod first (maxSurge 25% of 1 is 1), the old one goes once it is ready.
    apply(api, deploy_path("app"), deployment("app", image="app:2"))
    assert len(kube.objects("Pod", namespace)) == 2
    assert len(kube.objects("ReplicaSet", namespace)) == 2
    time.sleep(0.6)
    [pod] = kube.objects("Pod", namespace)
    assert pod["spec"]["containers"][0]["image"] == "app:2"
    done = apps.read_namespaced_deployment("app", namespace).status
    assert (done.observed_generation, done.updated_replicas, done.available_replicas) == (2, 1, 1)


def test_a_bad_image_waits_with_the_kubelets_reason(
    api: ApiClient, namespace: str, kube: KubeAPIServer
) -> None:
    kube.mark_image("app:404", "ImagePullBackOff")
    apply(api, deploy_path("app"), deployment("app", image="app:404"))
    [pod] = kube.objects("Pod", namespace)
    waiting = pod["status"]["containerStatuses"][0]["state"]["waiting"]
    assert waiting == {"reason": "ImagePullBackOff", "message": 'Back-off pulling image "app:404"'}
    assert pod["status"]["phase"] == "Pending"
    status = client.AppsV1Api(api).read_namespaced_deployment("app", namespace).status
    assert not status.available_replicas


def test_pods_are_admitted_against_limits_and_the_quota(
    api: ApiClient, namespace: str, kube: KubeAPIServer
) -> None:
    kube.add_object(
        {
            "apiVersion": "v1",
            "kind": "LimitRange",
            "metadata": {"name": "limits", "namespace": namespace},
            "spec": {
                "limits": [
                    {
                        "type": "Container",
                        "default": {"cpu": "500m", "memory": "512Mi"},
                        "defaultRequest": {"cpu": "100m", "memory": "128Mi"},
                    }
                ]
            },
        }
    )
    kube.add_object(
        {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {"name": "pr-quota", "namespace": namespace},
            "spec": {"hard": {"limits.cpu": "800m", "requests.memory": "1Gi"}},
        }
    )
    # The first pod (LimitRange defaults: 500m) fits; its surge pod (another 500m) does not.
    apply(api, deploy_path("app"), deployment("app"))
    [pod] = kube.objects("Pod", namespace)
    assert pod["spec"]["containers"][0]["resources"] == {
        "limits": {"cpu": "500m", "memory": "512Mi"},
        "requests": {"cpu": "100m", "memory": "128Mi"},
    }
    apply(api, deploy_path("app"), deployment("app", image="app:2"))
    status = client.AppsV1Api(api).read_namespaced_deployment("app", namespace).status
    failure = next(c for c in status.conditions if c.type == "ReplicaFailure")
    assert failure.reason == "FailedCreate"
    assert (
        "exceeded quota: pr-quota, requested: limits.cpu=500m, used: limits.cpu=500m, limited: limits.cpu=800m"
        in failure.message
    )
    assert len(kube.objects("Pod", namespace)) == 1


def test_custom_resources_get_status_from_a_hook(api: ApiClient, namespace: str, kube: KubeAPIServer) -> None:
    kube.set_status_hook(
        "Cluster", lambda obj: {"phase": "Cluster in healthy state", "instances": obj["spec"]["instances"]}
    )
    path = f"/apis/postgresql.cnpg.io/v1/namespaces/{namespace}/clusters/db"
    apply(
        api,
        path,
        {
            "apiVersion": "postgresql.cnpg.io/v1",
            "kind": "Cluster",
            "metadata": {"name": "db"},
            "spec": {"instances": 1},
        },
    )
    stored = kube.get_object("Cluster", namespace, "db")
    assert stored is not None and stored["status"] == {"phase": "Cluster in healthy state", "instances": 1}


def test_an_uninstalled_kind_is_not_served(api: ApiClient, namespace: str, kube: KubeAPIServer) -> None:
    kube.uninstall("ServiceMonitor")
    _, groups = call(api, "GET", "/apis")
    assert "monitoring.coreos.com" not in [g["name"] for g in groups["groups"]]
    with pytest.raises(ApiException) as error:
        apply(
            api,
            f"/apis/monitoring.coreos.com/v1/namespaces/{namespace}/servicemonitors/m",
            {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor", "metadata": {"name": "m"}},
        )
    assert error.value.status == 404
    assert status_of(error.value)["message"] == "the server could not find the requested resource"


def test_deleting_an_owner_deletes_what_it_owns(api: ApiClient, namespace: str, kube: KubeAPIServer) -> None:
    apply(api, deploy_path("app"), deployment("app"))
    assert kube.objects("Pod", namespace) and kube.objects("ReplicaSet", namespace)
    client.AppsV1Api(api).delete_namespaced_deployment("app", namespace)
    assert kube.objects("Pod", namespace) == [] and kube.objects("ReplicaSet", namespace) == []
