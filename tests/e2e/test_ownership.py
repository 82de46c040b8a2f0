"""One environment per namespace, whoever sends the news (SPEC 1), and environments by key."""

from __future__ import annotations

from typing import Any

from handlers.settings import WorkerConfig
from tests.fakes.kubeapi import KubeAPIServer
from tests.support.environments import ADMIN, app_commit, by_namespace, environment, namespace, send_generic
from tests.support.pull_requests import REPO, pull_request, send_github, sha
from tests.support.worker import drain, kube_cluster


def test_a_generic_trigger_cannot_take_over_a_code_hosts_namespace(
    gateway: Any, kube: KubeAPIServer, worker_config: WorkerConfig
) -> None:
    client = gateway()
    cluster = kube_cluster(kube.url)
    send_github(client, pull_request("opened", 10, sha(1), 1))
    drain(worker_config, cluster)
    assert app_commit(kube, "shop-pr-10") == sha(1)

    # Same repository, same number, same projectId: the generic environment would be shop-pr-10.
    send_generic(client, action="deploy", number=10, sha=sha(2), branch="main")
    drain(worker_config, cluster)
    refused = environment(client, "generic", 10)
    assert refused is not None and refused["state"] == "failed" and refused["namespace"] is None
    assert "belongs to the github environment" in refused["last_error"]
    assert '"provider": "github"' in refused["last_error"]
    assert app_commit(kube, "shop-pr-10") == sha(1)
    # The namespace route answers with its owner, not with the refused environment.
    owner = by_namespace(client, "shop-pr-10")
    assert owner is not None and (owner["provider"], owner["state"]) == ("github", "deployed")

    # A generic destroy of its own (namespace-less) environment leaves GitHub's alone.
    send_generic(client, action="destroy", number=10)
    drain(worker_config, cluster)
    assert namespace(kube, "shop-pr-10") is not None
    assert environment(client, "github", 10)["state"] == "deployed"  # type: ignore[index]

    # Naming the provider acts on GitHub's environment.
    send_generic(client, action="hibernate", number=10, provider="github")
    drain(worker_config, cluster)
    assert environment(client, "github", 10)["state"] == "hibernated"  # type: ignore[index]
    deployment = kube.get_object("Deployment", "shop-pr-10", "shop-pr-10-app")
    assert deployment is not None and deployment["spec"]["replicas"] == 0
    send_generic(client, action="destroy", number=10, provider="github")
    drain(worker_config, cluster)
    assert namespace(kube, "shop-pr-10") is None
    assert environment(client, "github", 10)["state"] == "destroyed"  # type: ignore[index]

    # Once its owner is destroyed, the namespace can be another environment's.
    send_generic(client, action="deploy", number=10, sha=sha(3), branch="main")
    drain(worker_config, cluster)
    assert environment(client, "generic", 10)["state"] == "deployed"  # type: ignore[index]
    owner = by_namespace(client, "shop-pr-10")
    assert owner is not None and owner["provider"] == "generic"


def test_two_repositories_with_one_project_id_never_share_a_namespace(
    gateway: Any, kube: KubeAPIServer, worker_config: WorkerConfig
) -> None:
    client = gateway()
    cluster = kube_cluster(kube.url)
    send_generic(client, action="deploy", number=11, sha=sha(1), branch="main")
    drain(worker_config, cluster)
    send_generic(client, action="deploy", number=11, sha=sha(2), branch="main", repository="acme/other")
    drain(worker_config, cluster)
    refused = environment(client, "generic", 11, repository="acme/other")
    assert refused is not None and refused["state"] == "failed"
    # The other repository is never named: it may be private.
    assert "another repository" in refused["last_error"] and REPO not in refused["last_error"]
    assert app_commit(kube, "shop-pr-11") == sha(1)


def test_environments_without_a_namespace_are_found_by_key(
    gateway: Any, kube: KubeAPIServer, worker_config: WorkerConfig
) -> None:
    client = gateway()
    payload = pull_request("opened", 12, sha(1), 1)
    payload["pull_request"]["draft"] = True
    send_github(client, payload)
    drain(worker_config, kube_cluster(kube.url))
    skipped = environment(client, "github", 12)
    assert skipped is not None and skipped["state"] == "skipped" and "draft" in skipped["note"]
    # The repository may be given URL-encoded or as it is.
    plain = client.get(f"/api/v1/environments/github/{REPO}/12", headers=ADMIN)
    assert plain.status_code == 200 and plain.json()["number"] == 12
    assert client.get(f"/api/v1/environments/github/{REPO}/13", headers=ADMIN).status_code == 404
    answer = client.get(f"/api/v1/environments/nowhere/{REPO}/12", headers=ADMIN)
    assert answer.status_code == 400 and "provider" in answer.json()["error"]
    answer = client.get(f"/api/v1/environments/github/{REPO}/twelve", headers=ADMIN)
    assert answer.status_code == 400 and "number" in answer.json()["error"]
    assert client.get(f"/api/v1/environments/github/{REPO}/12").status_code == 401
