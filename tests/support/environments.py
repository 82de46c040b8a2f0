"""Driving environments end to end: what a CI sends the generic trigger, and what the admin
API and the test API server then show (GitHub's deliveries: tests/support/pull_requests.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from handlers import naming
from tests.fakes.kubeapi import KubeAPIServer
from tests.support.pull_requests import REPO
from tests.support.senders import ADMIN_TOKEN, GENERIC_TOKEN

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
# The default k8s-ee.yaml of these tests (K8S_EE_DEFAULT_CONFIG): namespaces `shop-pr-<n>`.
CONFIG = "projectId: shop\napp:\n  port: 8080\ndatabases:\n  redis: true\n"


def send_generic(client: httpx.Client, **body: Any) -> dict[str, Any]:
    answer = client.post(
        "/webhooks/generic",
        json={"repository": REPO, **body},
        headers={"Authorization": f"Bearer {GENERIC_TOKEN}"},
    )
    assert answer.status_code == 202, answer.text
    result: dict[str, Any] = answer.json()
    return result


def environment(
    client: httpx.Client, provider: str, number: int, repository: str = REPO
) -> dict[str, Any] | None:
    """The environment by its key (GET /api/v1/environments/{provider}/{repository}/{number})."""
    answer = client.get(
        f"/api/v1/environments/{provider}/{repository.replace('/', '%2F')}/{number}", headers=ADMIN
    )
    if answer.status_code == 404:
        return None
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def kubeconfig(path: Path, url: str) -> Path:
    """A kubeconfig for the test API server at `url` (what a worker process is pointed at)."""
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: test\n"
        f"clusters:\n- name: test\n  cluster:\n    server: {url}\n"
        "users:\n- name: test\n  user:\n    token: test-token\n"
        "contexts:\n- name: test\n  context:\n    cluster: test\n    user: test\n"
    )
    return path


def by_namespace(client: httpx.Client, name: str) -> dict[str, Any] | None:
    answer = client.get(f"/api/v1/environments/{name}", headers=ADMIN)
    if answer.status_code == 404:
        return None
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def namespace(kube: KubeAPIServer, name: str) -> dict[str, Any] | None:
    found = [o for o in kube.objects("Namespace") if o["metadata"]["name"] == name]
    return found[0] if found else None


def app_commit(kube: KubeAPIServer, name: str) -> str | None:
    """The commit the app's ConfigMap says it runs (COMMIT_SHA)."""
    found = kube.get_object("ConfigMap", name, naming.app_config_name(name))
    return None if found is None else str(found["data"]["COMMIT_SHA"])


def app_image(kube: KubeAPIServer, name: str) -> str | None:
    found = kube.get_object("Deployment", name, naming.app_name(name))
    return None if found is None else str(found["spec"]["template"]["spec"]["containers"][0]["image"])
