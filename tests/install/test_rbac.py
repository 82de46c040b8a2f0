"""The chart's RBAC is exactly what the worker uses: every (verb, group, resource) the worker sent
to the test API server during the end-to-end suites is granted, and nothing else is.

The worker's requests are those carrying its User-Agent (handlers/cluster/transport.py); the
test API servers record every request of the session (tests/fakes/kubeapi/controls.py). This test
runs after every other one (tests/conftest.py). When its session did not run all the suites
that drive the worker against the API server (a run of this file alone, or with -k), it runs
them itself in a subprocess and reads their record. A new kind of call in the worker (a read
of pods, a list of namespaces) thus fails here until the chart grants it, and a grant the code
stopped using fails until it is removed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from handlers.config import config_from_mapping
from handlers.render import RenderSettings, RenderTarget, render_environment, required_passwords
from providers.events import Provider
from providers.hosts.http import USER_AGENT
from tests.install.api_requests import Permission, permissions
from tests.install.chart import one, render
from tests.support.tools import ROOT

pytestmark = pytest.mark.after_all_others

Grant = tuple[str, str, str, tuple[str, ...]]  # verb, group, resource, resourceNames
THIS = Path(__file__).resolve()
# Paths every authenticated client may read (the default system:discovery ClusterRole).
DISCOVERY = ("/api", "/apis", "/version", "/openapi")


def worker_suites() -> list[Path]:
    """Test files that drive the worker's cluster code against the test API server."""
    found = []
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        text = path.read_text()
        if path.resolve() == THIS or path.name == "test_kubeapi.py":
            continue  # the API server's own tests send requests of their own, not the worker's
        if "KubeAPIServer" in text and ("kube_cluster" in text or "KubernetesCluster" in text):
            found.append(path)
    return found


def session_ran(request: pytest.FixtureRequest, suites: list[Path]) -> bool:
    config = request.config
    if config.option.keyword or config.option.markexpr or config.getoption("deselect", None):
        return False
    ran = {Path(str(item.path)).resolve() for item in request.session.items}
    return all(path.resolve() in ran for path in suites)


def recorded(request: pytest.FixtureRequest, tmp_path: Path) -> list[tuple[str, str, str, str, str]]:
    suites = worker_suites()
    assert suites, "no test drives the worker against the test API server"
    if session_ran(request, suites):
        from tests.fakes.kubeapi.controls import SESSION_REQUESTS

        return sorted(SESSION_REQUESTS)
    log = tmp_path / "requests.json"
    env = {**os.environ, "K8S_EE_KUBE_REQUEST_LOG": str(log)}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-m",
            "not cluster",
            *map(str, suites),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    return [tuple(row) for row in json.loads(log.read_text())]  # type: ignore[misc]


def mongodb_bindings(cluster_role: str) -> set[Permission]:
    """`bind` on each role the rendered RoleBindings refer to: creating a RoleBinding needs it
    (or every permission of the role, which the worker must not hold)."""
    config = config_from_mapping({"projectId": "shop", "databases": {"mongodb": True}})
    target = RenderTarget(
        provider=Provider.GITHUB, repository="acme/shop", number=1, head_sha="0" * 40, head_ref="main",
        created_at=datetime(2026, 1, 1, tzinfo=UTC), now=datetime(2026, 1, 1, tzinfo=UTC),
    )  # fmt: skip
    settings = RenderSettings(mongodb_cluster_role=cluster_role)
    passwords = {name: "x" * 24 for name in required_passwords(config)}
    refs = [
        m["roleRef"]
        for m in render_environment(target, config, settings, passwords)
        if m["kind"] == "RoleBinding"
    ]
    assert refs
    return {
        Permission("bind", "rbac.authorization.k8s.io", f"{ref['kind'].lower()}s", ref["name"])
        for ref in refs
    }


def granted(rules: list[dict[str, Any]]) -> set[Grant]:
    grants: set[Grant] = set()
    for rule in rules:
        for field in ("apiGroups", "resources", "verbs", "resourceNames"):
            assert "*" not in rule.get(field, []), f"a wildcard in {rule}"
        assert not {"escalate", "impersonate"} & set(rule["verbs"]), rule
        assert "nonResourceURLs" not in rule
        names = tuple(sorted(rule.get("resourceNames", [])))
        if "bind" in rule["verbs"]:
            assert names, f"bind on any role: {rule}"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    grants.add((verb, group, resource, names))
    return grants


def covers(grant: Grant, need: Permission) -> bool:
    """As the authorizer decides: same verb, group and resource; a rule with resourceNames only
    for requests that name one of them (a list or a create of a new name never matches one)."""
    verb, group, resource, names = grant
    return (verb, group, resource) == need[:3] and (not names or need.name in names)


def test_the_chart_grants_exactly_what_the_worker_sends(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    rows = recorded(request, tmp_path)
    needed: set[Permission] = set()
    other: set[str] = set()
    for method, path, query, content_type, agent in rows:
        if agent != USER_AGENT:
            continue
        found = permissions(method, path, query, content_type)
        if found is None:
            other.add(path)
        else:
            needed |= found
    assert needed, "the worker sent nothing to the test API server"
    assert all(path.startswith(DISCOVERY) for path in other), sorted(other)

    objects = render()
    worker_env = {
        e["name"]: e.get("value")
        for e in one(objects, "Deployment", "-worker")["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    role = one(objects, "ClusterRole", "-worker")
    needed |= mongodb_bindings(worker_env["K8S_EE_MONGODB_CLUSTER_ROLE"])
    grants = granted(role["rules"])
    missing = sorted(
        {tuple(need[:3]) for need in needed if not any(covers(g, need) for g in grants)}, key=str
    )
    unused = sorted(g for g in grants if not any(covers(g, need) for need in needed))
    assert not missing and not unused, f"not granted: {missing}\ngranted, never used: {unused}"

    # The worker's ServiceAccount is bound to that role and nothing else; the MongoDB agent's
    # ClusterRole is bound by the worker, per namespace, never by the chart.
    binding = one(objects, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    account = one(objects, "Deployment", "-worker")["spec"]["template"]["spec"]["serviceAccountName"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": "k8s-ee"}]
    agent = one(objects, "ClusterRole", "-mongodb-database")
    assert agent["metadata"]["name"] == worker_env["K8S_EE_MONGODB_CLUSTER_ROLE"]
    assert not [
        o
        for o in objects
        if o["kind"] in ("RoleBinding", "ClusterRoleBinding")
        and o["roleRef"]["name"] == agent["metadata"]["name"]
    ]
    # The gateway never talks to the API.
    gateway = one(objects, "Deployment", "-gateway")["spec"]["template"]["spec"]
    assert gateway["automountServiceAccountToken"] is False


def test_every_rule_is_explained() -> None:
    text = (ROOT / "charts" / "k8s-ee-gateway" / "templates" / "rbac.yaml").read_text()
    lines = text.splitlines()
    for number, line in enumerate(lines):
        if line.strip().startswith("- apiGroups:"):
            above = lines[number - 1].strip()
            assert (
                above.startswith("#")
                or lines[number - 2].strip().startswith("#")
                or above.startswith("- apiGroups")
            ), line
