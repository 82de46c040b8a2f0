"""What the renderer produces (SPEC 1 and 2): names, labels, quota, wiring, order, determinism.

Also the pure helpers it is built on: naming (namespace, branch label, URL) and the quota formula.
"""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from handlers import naming, quota
from handlers.config import RepoConfig, config_from_mapping, load_config
from handlers.render import (
    MissingPasswords,
    RenderSettings,
    RenderTarget,
    UnusablePasswords,
    new_password,
    passwords_from_secrets,
    render_environment,
    required_passwords,
)
from providers.events import Provider

FIXTURES = Path(__file__).parents[1] / "fixtures" / "configs"
SHA = "0123456789abcdef0123456789abcdef01234567"
ALL_DATABASES = ["postgresql", "mongodb", "redis", "minio", "mariadb"]
CREATED = datetime(2025, 3, 1, 9, 30, 15, tzinfo=UTC)
NOW = datetime(2025, 3, 2, 10, 0, 0, tzinfo=UTC)
SETTINGS = RenderSettings(preview_domain="preview.example.com")


def make_target(**changes: Any) -> RenderTarget:
    fields: dict[str, Any] = {
        "provider": Provider.GITHUB,
        "repository": "Acme/Shop",
        "number": 42,
        "head_sha": SHA,
        "head_ref": "feature/login-page",
        "created_at": CREATED,
        "now": NOW,
    }
    return RenderTarget(**{**fields, **changes})


def make_config(**fields: Any) -> RepoConfig:
    return config_from_mapping({"projectId": "shop", **fields})


def all_databases(**fields: Any) -> RepoConfig:
    return make_config(databases={name: True for name in ALL_DATABASES}, **fields)


def passwords_for(config: RepoConfig) -> dict[str, str]:
    return {name: f"pw-{name}-0123456789" for name in required_passwords(config)}


def render(
    config: RepoConfig | None = None, settings: RenderSettings = SETTINGS, **changes: Any
) -> list[dict[str, Any]]:
    config = config or make_config()
    return render_environment(make_target(**changes), config, settings, passwords_for(config))


def find(manifests: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    matches = [m for m in manifests if m["kind"] == kind and (name is None or m["metadata"]["name"] == name)]
    assert len(matches) == 1, f"{len(matches)} {kind} named {name}"
    return matches[0]


def app_container(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    deployment = find(manifests, "Deployment", "shop-pr-42-app")
    containers: list[dict[str, Any]] = deployment["spec"]["template"]["spec"]["containers"]
    return containers[0]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {var["name"]: var.get("value", var.get("valueFrom")) for var in container.get("env", [])}


def secret_ref(name: str, key: str) -> dict[str, Any]:
    return {"secretKeyRef": {"name": name, "key": key}}


# ================================================================ naming


@pytest.mark.parametrize(
    ("project_id", "number", "expected"),
    [("shop", 42, "shop-pr-42"), ("a", 1, "a-pr-1"), ("x" * 20, 10**30, "x" * 20 + "-pr-" + "1" + "0" * 30)],
)
def test_namespace_name(project_id: str, number: int, expected: str) -> None:
    assert naming.namespace_name(project_id, number) == expected


@pytest.mark.parametrize(
    ("project_id", "number"),
    [("x" * 20, 10**40), ("Shop", 1), ("shop_", 1), ("", 1), ("shop", -1), ("shop", True)],
)
def test_namespace_name_refuses_what_is_not_a_dns_label(project_id: str, number: int) -> None:
    with pytest.raises(ValueError):
        naming.namespace_name(project_id, number)


def test_namespace_name_at_the_63_character_limit() -> None:
    assert len(naming.namespace_name("x" * 20, int("9" * 39))) == 63
    with pytest.raises(ValueError, match="DNS-1123"):
        naming.namespace_name("x" * 20, int("9" * 40))


@pytest.mark.parametrize(
    ("branch", "expected"),
    [
        ("main", "main"),
        ("feature/login-page", "feature-login-page"),
        ("release/1.2.3", "release-1.2.3"),
        ("snake_case.and-dots", "snake_case.and-dots"),
        ("fix/ünïcödé", "fix-n-c-d"),
        ("日本語", "unknown"),
        ("emoji-🚀-launch", "emoji-launch"),
        ("--leading/junk", "leading-junk"),
        ("._.start", "start"),
        ("trailing/junk/._-", "trailing-junk"),
        ("a//b\\\\c  d", "a-b-c-d"),
        ("", "unknown"),
        ("///", "unknown"),
        ("-._", "unknown"),
        ("x" * 100, "x" * 63),
        # Cut at 63, then the trailing dash that the cut exposed goes too.
        ("a" * 62 + "/b", "a" * 62),
        ("a" * 61 + "._b", "a" * 61),
        ("A1-B2", "A1-B2"),
    ],
)
def test_sanitize_branch(branch: str, expected: str) -> None:
    assert naming.sanitize_branch(branch) == expected


_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


@given(st.text())
def test_sanitized_branch_is_always_a_label_value(branch: str) -> None:
    value = naming.sanitize_branch(branch)
    assert value and len(value) <= 63 and _LABEL_VALUE.match(value)
    assert "--" not in value
    assert naming.sanitize_branch(value) == value


def test_preview_url() -> None:
    assert naming.preview_url("shop-pr-42", "preview.example.com") == "https://shop-pr-42.preview.example.com"
    assert naming.preview_host("shop-pr-42", "preview.example.com") == "shop-pr-42.preview.example.com"


def test_timestamps_are_utc_to_the_second() -> None:
    moment = datetime(2025, 1, 31, 14, 0, 5, 999, tzinfo=timezone(timedelta(hours=2)))
    assert naming.timestamp(moment) == "2025-01-31T12:00:05Z"
    with pytest.raises(ValueError):
        naming.timestamp(datetime(2025, 1, 31))


# ================================================================ quota


def test_quota_app_only_worked_example() -> None:
    figures = quota.compute_quota([])
    assert (figures.requests_cpu_m, figures.requests_memory_mi) == (200, 512)
    # (300 + 300) * 1.15 = 690; (512 + 512) * 1.15 = 1177.6, rounded down.
    assert (figures.limits_cpu_m, figures.limits_memory_mi) == (690, 1177)
    assert figures.hard() == {
        "requests.cpu": "200m",
        "requests.memory": "512Mi",
        "limits.cpu": "690m",
        "limits.memory": "1177Mi",
        "requests.storage": "1Gi",
        "persistentvolumeclaims": "1",
        "pods": "5",
        "services": "3",
        "configmaps": "15",
        "secrets": "25",
        "replicationcontrollers": "5",
    }


def test_quota_app_and_postgresql_worked_example() -> None:
    figures = quota.compute_quota(["postgresql"])
    assert (figures.requests_cpu_m, figures.requests_memory_mi) == (450, 768)
    # (300 + 500 + 300) * 1.15 = 1265 (a float would give 1264.99...); 1536 * 1.15 = 1766.4.
    assert (figures.limits_cpu_m, figures.limits_memory_mi) == (1265, 1766)
    assert (figures.storage_mi // 1024, figures.pvcs, figures.pods, figures.services) == (3, 2, 7, 6)


def test_quota_all_databases() -> None:
    figures = quota.compute_quota(ALL_DATABASES)
    assert (figures.requests_cpu_m, figures.requests_memory_mi) == (1400, 1664)
    # (3300 + 300) * 1.15 = 4140; (3072 + 512) * 1.15 = 4121.6.
    assert (figures.limits_cpu_m, figures.limits_memory_mi) == (4140, 4121)
    assert (figures.storage_mi // 1024, figures.pvcs, figures.pods, figures.services) == (10, 6, 13, 11)
    assert (figures.configmaps, figures.secrets, figures.replicationcontrollers) == (15, 25, 5)


@pytest.mark.parametrize(
    ("database", "requests", "limits", "counts"),
    [
        ("mongodb", (700, 832), (1840, 1913), (4, 3, 7, 4)),
        ("redis", (300, 576), (920, 1324), (1, 1, 6, 4)),
        ("minio", (400, 896), (1840, 2355), (3, 2, 7, 5)),
        ("mariadb", (350, 640), (1035, 1472), (3, 2, 6, 4)),
    ],
)
def test_quota_each_database(
    database: str, requests: tuple[int, int], limits: tuple[int, int], counts: tuple[int, int, int, int]
) -> None:
    figures = quota.compute_quota([database])
    assert (figures.requests_cpu_m, figures.requests_memory_mi) == requests
    assert (figures.limits_cpu_m, figures.limits_memory_mi) == limits
    assert (figures.storage_mi // 1024, figures.pvcs, figures.pods, figures.services) == counts


def test_quota_ignores_order_and_repeats() -> None:
    assert quota.compute_quota(["redis", "postgresql"]) == quota.compute_quota(
        ["postgresql", "redis", "redis"]
    )


def test_quota_refuses_unknown_databases() -> None:
    with pytest.raises(ValueError, match="unknown database"):
        quota.compute_quota(["postgresql", "cassandra"])


def test_quantities() -> None:
    assert [quota.cpu_millicores(q) for q in ("250m", "1", "2")] == [250, 1000, 2000]
    assert [quota.mebibytes(q) for q in ("512Mi", "1Gi", "1Ti")] == [512, 1024, 1024 * 1024]
    with pytest.raises(ValueError):
        quota.cpu_millicores("0.5")
    with pytest.raises(ValueError):
        quota.mebibytes("1G")


# ================================================================ apply order and identity


def test_apply_order_minimal() -> None:
    assert [(m["kind"], m["metadata"]["name"]) for m in render()] == [
        ("Namespace", "shop-pr-42"),
        ("ResourceQuota", "pr-quota"),
        ("LimitRange", "pr-limits"),
        ("NetworkPolicy", "default-deny"),
        ("NetworkPolicy", "allow-same-namespace"),
        ("NetworkPolicy", "allow-ingress-controller"),
        ("NetworkPolicy", "allow-observability"),
        ("NetworkPolicy", "allow-egress"),
        ("ConfigMap", "shop-pr-42-app-config"),
        ("Deployment", "shop-pr-42-app"),
        ("Service", "shop-pr-42-app"),
        ("Ingress", "shop-pr-42-app"),
    ]


def test_apply_order_everything() -> None:
    manifests = render(all_databases(metrics={"enabled": True}))
    assert [(m["kind"], m["metadata"]["name"]) for m in manifests] == [
        ("Namespace", "shop-pr-42"),
        ("ResourceQuota", "pr-quota"),
        ("LimitRange", "pr-limits"),
        ("NetworkPolicy", "default-deny"),
        ("NetworkPolicy", "allow-same-namespace"),
        ("NetworkPolicy", "allow-ingress-controller"),
        ("NetworkPolicy", "allow-observability"),
        ("NetworkPolicy", "allow-egress"),
        ("NetworkPolicy", "allow-cnpg-operator"),
        ("NetworkPolicy", "allow-minio-operator"),
        ("Secret", "app-mongodb-credentials"),
        ("Secret", "app-redis-credentials"),
        ("Secret", "app-minio-credentials"),
        ("Secret", "app-mariadb-credentials"),
        ("Cluster", "app-postgresql"),
        ("ServiceAccount", "mongodb-database"),
        ("RoleBinding", "mongodb-database"),
        ("MongoDBCommunity", "app-mongodb"),
        ("Deployment", "app-redis"),
        ("Service", "app-redis"),
        ("Tenant", "app-minio"),
        ("PersistentVolumeClaim", "app-mariadb-data"),
        ("Deployment", "app-mariadb"),
        ("Service", "app-mariadb"),
        ("ConfigMap", "shop-pr-42-app-config"),
        ("Deployment", "shop-pr-42-app"),
        ("Service", "shop-pr-42-app"),
        ("Ingress", "shop-pr-42-app"),
        ("ServiceMonitor", "shop-pr-42-app"),
    ]


@pytest.mark.parametrize(
    "config",
    [
        make_config(),
        all_databases(metrics={"enabled": True}),
        load_config((FIXTURES / "full.yaml").read_text()),
    ],
)
def test_every_object_is_labelled_and_namespaced(config: RepoConfig) -> None:
    manifests = render(config)
    for obj in manifests:
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "k8s-ee-gateway", obj["kind"]
        assert labels["k8s-ee/project-id"] == config.project_id, obj["kind"]
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == f"{config.project_id}-pr-42"
    names = [(m["kind"], m["metadata"]["name"]) for m in manifests]
    assert len(names) == len(set(names)), "no object rendered twice"


def test_rendering_is_deterministic() -> None:
    config = load_config((FIXTURES / "full.yaml").read_text())
    first = render(config)
    second = render(config)
    assert first == second
    assert json.dumps(first) == json.dumps(second)


def test_returned_manifests_share_nothing() -> None:
    manifests = render(all_databases())
    seen: set[int] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict | list):
            assert id(node) not in seen, "a dict or list appears twice"
            seen.add(id(node))
            for child in node.values() if isinstance(node, dict) else node:
                walk(child)

    walk(manifests)
    manifests[3]["spec"]["podSelector"]["matchLabels"] = {"mutated": "yes"}
    for policy in render(all_databases())[3:8]:
        assert "mutated" not in json.dumps(policy)
    again = render(all_databases())
    assert again[3]["spec"]["podSelector"] == {}


# ================================================================ the namespace


def test_namespace_labels_and_annotations() -> None:
    manifests = render(
        head_ref="feature/Ünïcode Branch!", provider=Provider.BITBUCKET_SERVER, repository="PROJ/web-shop"
    )
    namespace = find(manifests, "Namespace")
    assert namespace["metadata"] == {
        "name": "shop-pr-42",
        "labels": {
            "app.kubernetes.io/managed-by": "k8s-ee-gateway",
            "k8s-ee/type": "ephemeral",
            "k8s-ee/project-id": "shop",
            "k8s-ee/pr-number": "42",
            "k8s-ee/branch": "feature-n-code-Branch",
            "k8s-ee/commit-sha": SHA,
            "k8s-ee/provider": "bitbucket-server",
            # Pods are held to baseline; restricted is what they are warned and audited against.
            "pod-security.kubernetes.io/enforce": "baseline",
            "pod-security.kubernetes.io/enforce-version": "latest",
            "pod-security.kubernetes.io/warn": "restricted",
            "pod-security.kubernetes.io/warn-version": "latest",
            "pod-security.kubernetes.io/audit": "restricted",
            "pod-security.kubernetes.io/audit-version": "latest",
        },
        "annotations": {
            "k8s-ee/created-at": "2025-03-01T09:30:15Z",
            "k8s-ee/last-updated": "2025-03-02T10:00:00Z",
            "k8s-ee/repository": "PROJ/web-shop",
            "k8s-ee/created-by": "k8s-ee-gateway",
        },
    }
    assert "preserve" not in namespace["metadata"]["labels"]


@pytest.mark.parametrize("provider", list(Provider))
def test_provider_label(provider: Provider) -> None:
    assert (
        find(render(provider=provider), "Namespace")["metadata"]["labels"]["k8s-ee/provider"]
        == provider.value
    )


def test_gitlab_path_with_subgroups_is_the_repository_annotation() -> None:
    namespace = find(render(repository="group/sub/project", provider=Provider.GITLAB), "Namespace")
    assert namespace["metadata"]["annotations"]["k8s-ee/repository"] == "group/sub/project"


def test_upper_case_sha_is_normalised() -> None:
    namespace = find(render(head_sha=SHA.upper()), "Namespace")
    assert namespace["metadata"]["labels"]["k8s-ee/commit-sha"] == SHA


# ================================================================ quota, limits, network


def test_rendered_quota_follows_the_enabled_databases() -> None:
    assert find(render(), "ResourceQuota")["spec"]["hard"] == quota.compute_quota([]).hard()
    hard = find(render(make_config(databases={"postgresql": True})), "ResourceQuota")["spec"]["hard"]
    assert (hard["requests.cpu"], hard["requests.memory"], hard["limits.cpu"], hard["limits.memory"]) == (
        "450m",
        "768Mi",
        "1265m",
        "1766Mi",
    )
    assert (
        find(render(all_databases()), "ResourceQuota")["spec"]["hard"]
        == quota.compute_quota(ALL_DATABASES).hard()
    )


def test_limit_range() -> None:
    assert find(render(), "LimitRange")["spec"]["limits"] == [
        {
            "type": "Container",
            "default": {"cpu": "500m", "memory": "512Mi"},
            "defaultRequest": {"cpu": "100m", "memory": "128Mi"},
            "max": {"cpu": "1", "memory": "1Gi"},
            "min": {"cpu": "10m", "memory": "32Mi"},
        },
        {"type": "Pod", "max": {"cpu": "2", "memory": "2Gi"}},
        {"type": "PersistentVolumeClaim", "max": {"storage": "5Gi"}, "min": {"storage": "100Mi"}},
    ]


def _policies(manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == "NetworkPolicy"}


def test_network_policies() -> None:
    policies = _policies(render(make_config(app={"port": 8080})))
    assert list(policies) == [
        "default-deny",
        "allow-same-namespace",
        "allow-ingress-controller",
        "allow-observability",
        "allow-egress",
    ]
    for policy in policies.values():
        assert policy["metadata"]["labels"]["k8s-ee/type"] == "network-policy"
    assert policies["default-deny"]["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    assert policies["allow-same-namespace"]["spec"]["ingress"] == [{"from": [{"podSelector": {}}]}]
    ingress_controller = policies["allow-ingress-controller"]["spec"]
    assert ingress_controller["ingress"] == [
        {
            "from": [
                {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "traefik"}},
                }
            ],
            "ports": [{"protocol": "TCP", "port": 8080}],
        }
    ]
    assert ingress_controller["podSelector"] == {
        "matchLabels": {"app.kubernetes.io/name": "app", "app.kubernetes.io/instance": "shop-pr-42-app"}
    }
    assert policies["allow-observability"]["spec"]["ingress"] == [
        {
            "from": [
                {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "observability"}},
                    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
                }
            ]
        }
    ]
    assert policies["allow-egress"]["spec"] == {
        "podSelector": {},
        "policyTypes": ["Egress"],
        "egress": [
            {"to": [{"podSelector": {}}]},
            {
                "to": [
                    {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}
                ],
                "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
            },
            # No API-server rule: unset, the worker fills in the `kubernetes` Service's endpoints.
            {
                "to": [
                    {
                        "ipBlock": {
                            "cidr": "0.0.0.0/0",
                            # Private ranges, the metadata service's link-local range, carrier-grade NAT.
                            "except": [
                                "10.0.0.0/8",
                                "172.16.0.0/12",
                                "192.168.0.0/16",
                                "169.254.0.0/16",
                                "100.64.0.0/10",
                            ],
                        }
                    }
                ]
            },
        ],
    }


def test_network_policies_follow_settings() -> None:
    settings = RenderSettings(
        preview_domain="preview.example.com",
        ingress_controller_namespace="ingress-nginx",
        ingress_controller_labels={"app.kubernetes.io/component": "controller"},
        observability_namespace="monitoring",
        prometheus_labels={"app": "prometheus"},
        api_server_cidrs=("10.43.0.1/32", "172.20.0.5/32"),
        api_server_ports=(6443,),
        cnpg_operator_namespace="postgres-operator",
        minio_operator_namespace=None,
    )
    policies = _policies(render(all_databases(), settings))
    assert policies["allow-ingress-controller"]["spec"]["ingress"][0]["from"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/component": "controller"}},
        }
    ]
    assert policies["allow-observability"]["spec"]["ingress"][0]["from"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
            "podSelector": {"matchLabels": {"app": "prometheus"}},
        }
    ]
    assert policies["allow-egress"]["spec"]["egress"][2] == {
        "to": [{"ipBlock": {"cidr": "10.43.0.1/32"}}, {"ipBlock": {"cidr": "172.20.0.5/32"}}],
        "ports": [{"protocol": "TCP", "port": 6443}],
    }
    assert policies["allow-cnpg-operator"]["spec"] == {
        "podSelector": {"matchLabels": {"cnpg.io/cluster": "app-postgresql"}},
        "ingress": [
            {
                "from": [
                    {
                        "namespaceSelector": {
                            "matchLabels": {"kubernetes.io/metadata.name": "postgres-operator"}
                        }
                    }
                ],
                "ports": [{"protocol": "TCP", "port": 8000}],
            }
        ],
        "policyTypes": ["Ingress"],
    }
    assert "allow-minio-operator" not in policies


def test_egress_exceptions_and_node_local_dns_follow_settings() -> None:
    settings = RenderSettings(
        preview_domain="preview.example.com",
        egress_except="10.0.0.0/8,169.254.0.0/16",  # type: ignore[arg-type]
        node_local_dns="169.254.20.10",
    )
    egress = _policies(render(settings=settings))["allow-egress"]["spec"]["egress"]
    assert egress[2] == {
        "to": [{"ipBlock": {"cidr": "169.254.20.10/32"}}],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
    }
    assert egress[-1] == {
        "to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8", "169.254.0.0/16"]}}]
    }
    with pytest.raises(ValueError, match="not an IPv4 CIDR"):
        RenderSettings(egress_except=("fd00::/8",))
    with pytest.raises(ValueError, match="not an IPv4 address"):
        RenderSettings(node_local_dns="dns.local")


def test_api_server_cidrs_come_from_the_cluster_unless_set() -> None:
    unset = RenderSettings(preview_domain="preview.example.com")
    learnt = unset.for_cluster(api_server_addresses=("172.18.0.2", "172.18.0.3"), kubernetes_version=None)
    assert learnt.api_server_cidrs == ("172.18.0.2/32", "172.18.0.3/32")
    egress = _policies(render(settings=learnt))["allow-egress"]["spec"]["egress"]
    assert egress[2]["to"] == [{"ipBlock": {"cidr": "172.18.0.2/32"}}, {"ipBlock": {"cidr": "172.18.0.3/32"}}]
    chosen = RenderSettings(api_server_cidrs=("10.43.0.1/32",))
    assert chosen.for_cluster(api_server_addresses=("172.18.0.2",), kubernetes_version=None) == chosen


def test_no_api_server_rule_without_cidrs() -> None:
    settings = RenderSettings(preview_domain="preview.example.com", api_server_cidrs=())
    egress = _policies(render(settings=settings))["allow-egress"]["spec"]["egress"]
    assert len(egress) == 3
    assert all("ipBlock" not in peer or "except" in peer["ipBlock"] for rule in egress for peer in rule["to"])


def test_settings_refuse_bad_cidrs() -> None:
    with pytest.raises(ValueError, match="not a CIDR block"):
        RenderSettings(preview_domain="preview.example.com", api_server_cidrs=("10.0.0.1/33",))


# ================================================================ the app


def test_config_map() -> None:
    config = make_config(env={"NODE_ENV": "production", "PORT": "9999"}, app={"port": 8080})
    config_map = find(render(config, head_ref="feature/Löwe"), "ConfigMap")
    assert config_map["metadata"]["name"] == "shop-pr-42-app-config"
    assert config_map["data"] == {
        "APP_VERSION": SHA[:7],
        "BRANCH_NAME": "feature/Löwe",
        "COMMIT_SHA": SHA,
        "NODE_ENV": "production",
        # The platform's PORT wins over the repository's env.
        "PORT": "8080",
        "PREVIEW_URL": "https://shop-pr-42.preview.example.com",
        "PR_NUMBER": "42",
    }
    assert find(render(app_version="v1.2.3"), "ConfigMap")["data"]["APP_VERSION"] == "v1.2.3"


def test_deployment_security_and_shape() -> None:
    manifests = render()
    deployment = find(manifests, "Deployment", "shop-pr-42-app")
    assert deployment["spec"]["replicas"] == 1
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == (1001, 1001)
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    container = pod["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["lifecycle"] == {"preStop": {"sleep": {"seconds": 5}}}
    # Before 1.30 the hook has no sleep action (a server would refuse a handler with none).
    older = RenderSettings(preview_domain="preview.example.com", kubernetes_version="v1.29.4")
    old_container = find(render(settings=older), "Deployment", "shop-pr-42-app")["spec"]["template"]["spec"]
    assert old_container["containers"][0]["lifecycle"] == {"preStop": {"exec": {"command": ["sleep", "5"]}}}
    assert container["ports"] == [{"name": "http", "containerPort": 3000, "protocol": "TCP"}]
    assert container["resources"] == {
        "requests": {"cpu": "50m", "memory": "128Mi"},
        "limits": {"cpu": "200m", "memory": "384Mi"},
    }
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {}}]
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert "initContainers" not in pod
    assert "env" not in container
    # Selector and template labels agree, and the selector has nothing that changes per deploy.
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector == {"app.kubernetes.io/name": "app", "app.kubernetes.io/instance": "shop-pr-42-app"}
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


def test_probes_use_the_health_path_and_port() -> None:
    container = app_container(render(make_config(app={"port": 8080, "healthPath": "/healthz"})))
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["ports"][0]["containerPort"] == 8080


def test_resources_come_from_the_config() -> None:
    config = make_config(
        resources={"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": 1, "memory": "1Gi"}}
    )
    assert app_container(render(config))["resources"] == {
        "requests": {"cpu": "100m", "memory": "256Mi"},
        "limits": {"cpu": "1", "memory": "1Gi"},
    }


def test_writable_dirs_get_empty_dirs() -> None:
    config = make_config(writableDirs=["/app/.cache", "/tmp", "/data/", "/data", "/var/run/app"])
    manifests = render(config)
    pod = find(manifests, "Deployment", "shop-pr-42-app")["spec"]["template"]["spec"]
    assert app_container(manifests)["volumeMounts"] == [
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "writable-0", "mountPath": "/app/.cache"},
        {"name": "writable-1", "mountPath": "/data"},
        {"name": "writable-2", "mountPath": "/var/run/app"},
    ]
    assert [volume["name"] for volume in pod["volumes"]] == ["tmp", "writable-0", "writable-1", "writable-2"]
    assert all(volume["emptyDir"] == {} for volume in pod["volumes"])


def test_env_from_keeps_the_users_sources_and_adds_the_config_map_last() -> None:
    config = make_config(envFrom=[{"secretRef": {"name": "api-keys"}}, {"configMapRef": {"name": "flags"}}])
    assert app_container(render(config))["envFrom"] == [
        {"secretRef": {"name": "api-keys"}},
        {"configMapRef": {"name": "flags"}},
        {"configMapRef": {"name": "shop-pr-42-app-config"}},
    ]


def test_a_new_commit_rolls_the_pods() -> None:
    def config_hash(**changes: Any) -> str:
        deployment = find(render(**changes), "Deployment", "shop-pr-42-app")
        value: str = deployment["spec"]["template"]["metadata"]["annotations"]["k8s-ee/config-hash"]
        return value

    assert config_hash() == config_hash()
    assert config_hash() != config_hash(head_sha="f" * 40)
    # The namespace's last-updated time alone does not restart anything.
    assert config_hash() == config_hash(now=NOW + timedelta(hours=1))


def test_image_defaults_to_the_registry_path_lower_cased() -> None:
    container = app_container(render())
    assert container["image"] == "ghcr.io/acme/shop/shop:pr-42"
    assert container["imagePullPolicy"] == "Always"
    settings = RenderSettings(
        preview_domain="preview.example.com", image_registry="Registry.Example.com:5000/Previews/"
    )
    assert (
        app_container(render(settings=settings))["image"]
        == "registry.example.com:5000/previews/acme/shop/shop:pr-42"
    )


def test_image_from_the_config_then_the_target() -> None:
    config = make_config(image={"repository": "registry.example.com/team/shop"})
    assert app_container(render(config))["image"] == "registry.example.com/team/shop:pr-42"
    digest = "registry.example.com/team/shop@sha256:" + "a" * 64
    container = app_container(render(config, image=digest))
    assert (container["image"], container["imagePullPolicy"]) == (digest, "IfNotPresent")


def test_image_that_cannot_be_derived_is_refused() -> None:
    with pytest.raises(ValueError, match=r"set image\.repository"):
        render(repository="~jdoe/repo", provider=Provider.BITBUCKET_SERVER)


def test_service() -> None:
    service = find(render(make_config(app={"port": 8080})), "Service", "shop-pr-42-app")
    assert service["spec"] == {
        "type": "ClusterIP",
        "selector": {"app.kubernetes.io/name": "app", "app.kubernetes.io/instance": "shop-pr-42-app"},
        "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
    }


def test_ingress_by_default() -> None:
    ingress = find(render(), "Ingress")
    assert ingress["spec"] == {
        "ingressClassName": "traefik",
        "rules": [
            {
                "host": "shop-pr-42.preview.example.com",
                "http": {
                    "paths": [
                        {
                            "path": "/",
                            "pathType": "Prefix",
                            "backend": {"service": {"name": "shop-pr-42-app", "port": {"name": "http"}}},
                        }
                    ]
                },
            }
        ],
    }
    assert "annotations" not in ingress["metadata"]


def test_ingress_annotations_and_tls() -> None:
    settings = RenderSettings(
        preview_domain="preview.example.com",
        ingress_class="nginx",
        ingress_annotations={"cert-manager.io/cluster-issuer": "letsencrypt"},
        ingress_tls_secret="{namespace}-tls",
    )
    config = make_config(
        ingress={
            "annotations": {
                "cert-manager.io/cluster-issuer": "mine",
                "nginx.ingress.kubernetes.io/rewrite": "x",
            }
        }
    )
    ingress = find(render(config, settings), "Ingress")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["metadata"]["annotations"] == {
        # The gateway's TLS issuer is not the repository's to change.
        "cert-manager.io/cluster-issuer": "letsencrypt",
        "nginx.ingress.kubernetes.io/rewrite": "x",
    }
    assert ingress["spec"]["tls"] == [
        {"hosts": ["shop-pr-42.preview.example.com"], "secretName": "shop-pr-42-tls"}
    ]


def test_ingress_disabled() -> None:
    manifests = render(make_config(ingress={"enabled": False}))
    assert [m for m in manifests if m["kind"] == "Ingress"] == []


def test_service_monitor_only_with_metrics() -> None:
    assert [m for m in render() if m["kind"] == "ServiceMonitor"] == []
    monitor = find(render(make_config(metrics={"enabled": True})), "ServiceMonitor")
    assert monitor["spec"] == {
        "selector": {
            "matchLabels": {"app.kubernetes.io/name": "app", "app.kubernetes.io/instance": "shop-pr-42-app"}
        },
        "endpoints": [{"port": "http", "path": "/metrics", "interval": "30s"}],
    }
    settings = RenderSettings(preview_domain="preview.example.com", service_monitor_labels={"release": "kps"})
    config = make_config(metrics={"enabled": True, "interval": "1m"}, app={"metricsPath": "/prom"})
    monitor = find(render(config, settings), "ServiceMonitor")
    assert monitor["spec"]["endpoints"] == [{"port": "http", "path": "/prom", "interval": "1m"}]
    assert monitor["metadata"]["labels"]["release"] == "kps"
    # It selects the app's Service by labels the Service carries.
    service = find(render(config, settings), "Service", "shop-pr-42-app")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()


# ================================================================ databases wired into the app


def test_wait_for_init_containers() -> None:
    manifests = render(all_databases())
    pod = find(manifests, "Deployment", "shop-pr-42-app")["spec"]["template"]["spec"]
    init = pod["initContainers"]
    assert [c["name"] for c in init] == [f"wait-for-{name}" for name in ALL_DATABASES]
    targets = [c["command"][2].split("nc -z -w 2 ")[1].split(";")[0] for c in init]
    assert targets == [
        "app-postgresql-rw 5432",
        "app-mongodb-svc 27017",
        "app-redis 6379",
        "app-minio-hl 9000",
        "app-mariadb 3306",
    ]
    for container in init:
        assert container["image"] == "busybox:1.36"
        assert container["command"][:2] == ["sh", "-c"]
        assert container["securityContext"] == pod["containers"][0]["securityContext"]
        assert container["resources"] == {
            "requests": {"cpu": "10m", "memory": "32Mi"},
            "limits": {"cpu": "50m", "memory": "64Mi"},
        }


def test_postgresql_env_comes_from_the_operators_secret() -> None:
    env = env_of(app_container(render(make_config(databases={"postgresql": True}))))
    assert env == {
        "DATABASE_URL": secret_ref("app-postgresql-app", "uri"),
        "PGHOST": secret_ref("app-postgresql-app", "host"),
        "PGPORT": secret_ref("app-postgresql-app", "port"),
        "PGDATABASE": secret_ref("app-postgresql-app", "dbname"),
        "PGUSER": secret_ref("app-postgresql-app", "user"),
        "PGPASSWORD": secret_ref("app-postgresql-app", "password"),
    }


def test_mongodb_env_comes_from_the_connection_string_secret() -> None:
    manifests = render(make_config(databases={"mongodb": True}))
    assert env_of(app_container(manifests)) == {
        "MONGODB_URI": secret_ref("app-mongodb-admin-app", "connectionString.standard"),
        "MONGODB_DATABASE": "app",
    }
    # The name the operator gives that Secret: <resource>-<auth db>-<user>.
    user = find(manifests, "MongoDBCommunity")["spec"]["users"][0]
    assert f"{find(manifests, 'MongoDBCommunity')['metadata']['name']}-{user['db']}-{user['name']}" == (
        "app-mongodb-admin-app"
    )


def test_redis_env() -> None:
    assert env_of(app_container(render(make_config(databases={"redis": True})))) == {
        "REDIS_HOST": "app-redis",
        "REDIS_PORT": "6379",
        "REDIS_PASSWORD": secret_ref("app-redis-credentials", "password"),
        "REDIS_URL": "redis://:$(REDIS_PASSWORD)@app-redis:6379/0",
    }


def test_minio_env() -> None:
    env = env_of(app_container(render(make_config(databases={"minio": True}))))
    for prefix in ("S3", "MINIO"):
        assert env[f"{prefix}_ENDPOINT"] == "http://app-minio-hl:9000"
        assert env[f"{prefix}_BUCKET"] == "data"
        assert env[f"{prefix}_ACCESS_KEY"] == secret_ref("app-minio-credentials", "accesskey")
        assert env[f"{prefix}_SECRET_KEY"] == secret_ref("app-minio-credentials", "secretkey")
    assert len(env) == 8


def test_mariadb_env() -> None:
    assert env_of(app_container(render(make_config(databases={"mariadb": True})))) == {
        "MYSQL_HOST": "app-mariadb",
        "MYSQL_PORT": "3306",
        "MYSQL_DATABASE": "app",
        "MYSQL_USER": "app",
        "MYSQL_PASSWORD": secret_ref("app-mariadb-credentials", "password"),
        "MYSQL_URL": "mysql://app:$(MYSQL_PASSWORD)@app-mariadb:3306/app",
    }


def test_dependent_variables_come_after_what_they_expand() -> None:
    names = [var["name"] for var in app_container(render(all_databases()))["env"]]
    assert names.index("REDIS_PASSWORD") < names.index("REDIS_URL")
    assert names.index("MYSQL_PASSWORD") < names.index("MYSQL_URL")


# ================================================================ the databases themselves


def test_postgresql_cluster() -> None:
    config = make_config(
        databases={
            "postgresql": {
                "version": "17",
                "storage": "3Gi",
                "bootstrap": {
                    "initSQL": ["CREATE ROLE r"],
                    "postInitApplicationSQL": ["CREATE TABLE t (id int)"],
                },
            }
        }
    )
    cluster = find(render(config), "Cluster")
    assert cluster["apiVersion"] == "postgresql.cnpg.io/v1"
    assert cluster["metadata"]["name"] == "app-postgresql"
    spec = cluster["spec"]
    assert spec["instances"] == 1
    assert spec["imageName"] == "ghcr.io/cloudnative-pg/postgresql:17"
    assert spec["storage"] == {"size": "3Gi"}
    assert spec["bootstrap"] == {
        "initdb": {
            "database": "app",
            "owner": "app",
            "postInitSQL": ["CREATE ROLE r"],
            "postInitApplicationSQL": ["CREATE TABLE t (id int)"],
        }
    }
    assert spec["resources"] == {
        "requests": {"cpu": "250m", "memory": "256Mi"},
        "limits": {"cpu": "500m", "memory": "512Mi"},
    }


def test_postgresql_defaults() -> None:
    spec = find(render(make_config(databases={"postgresql": True})), "Cluster")["spec"]
    assert spec["imageName"] == "ghcr.io/cloudnative-pg/postgresql:16"
    assert spec["storage"] == {"size": "1Gi"}
    assert spec["bootstrap"] == {"initdb": {"database": "app", "owner": "app"}}


def test_mongodb_community() -> None:
    manifests = render(make_config(databases={"mongodb": {"storage": "2Gi"}}))
    mongodb = find(manifests, "MongoDBCommunity")
    spec = mongodb["spec"]
    assert (spec["members"], spec["type"], spec["version"]) == (1, "ReplicaSet", "7.0.14")
    assert spec["security"] == {"authentication": {"modes": ["SCRAM"]}}
    user = spec["users"][0]
    assert user["name"] == "app"
    assert user["passwordSecretRef"] == {"name": "app-mongodb-credentials", "key": "password"}
    assert {"name": "readWrite", "db": "app"} in user["roles"]
    claims = {c["metadata"]["name"]: c["spec"] for c in spec["statefulSet"]["spec"]["volumeClaimTemplates"]}
    assert claims["data-volume"]["resources"] == {"requests": {"storage": "2Gi"}}
    assert set(claims) == {"data-volume", "logs-volume"}
    # The service account the operator runs the pods under, with what its agent needs.
    assert find(manifests, "ServiceAccount", "mongodb-database")
    binding = find(manifests, "RoleBinding", "mongodb-database")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "mongodb-database"}]
    # The installation's ClusterRole, bound in this namespace: the worker writes no Role.
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "k8s-ee-mongodb-database",
    }
    assert not [m for m in manifests if m["kind"] == "Role"]


def test_minio_tenant_and_its_credentials() -> None:
    config = make_config(databases={"minio": {"storage": "2Gi", "version": "RELEASE.2025-04-22T22-12-26Z"}})
    manifests = render(config)
    tenant = find(manifests, "Tenant")
    spec = tenant["spec"]
    assert spec["configuration"] == {"name": "app-minio-credentials"}
    assert spec["buckets"] == [{"name": "data"}]
    assert spec["image"] == "quay.io/minio/minio:RELEASE.2025-04-22T22-12-26Z"
    pool = spec["pools"][0]
    assert (pool["servers"], pool["volumesPerServer"]) == (1, 1)
    assert pool["volumeClaimTemplate"]["spec"]["resources"] == {"requests": {"storage": "2Gi"}}
    secret = find(manifests, "Secret", "app-minio-credentials")
    data = {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}
    passwords = passwords_for(config)
    assert data == {
        "accesskey": passwords["minio-access-key"],
        "secretkey": passwords["minio-secret-key"],
        "config.env": (
            f"export MINIO_ROOT_USER={passwords['minio-access-key']}\n"
            f"export MINIO_ROOT_PASSWORD={passwords['minio-secret-key']}\n"
        ),
    }
    assert "image" not in find(render(make_config(databases={"minio": True})), "Tenant")["spec"]


def test_redis_deployment() -> None:
    manifests = render(make_config(databases={"redis": {"version": "7.2"}}))
    pod = find(manifests, "Deployment", "app-redis")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "redis:7.2-alpine"
    assert container["args"] == [
        "--requirepass",
        "$(REDIS_PASSWORD)",
        "--maxmemory",
        "100mb",
        "--maxmemory-policy",
        "allkeys-lru",
    ]
    assert env_of(container) == {"REDIS_PASSWORD": secret_ref("app-redis-credentials", "password")}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    service = find(manifests, "Service", "app-redis")
    assert service["spec"]["ports"] == [
        {"name": "redis", "port": 6379, "targetPort": "redis", "protocol": "TCP"}
    ]
    assert find(render(make_config(databases={"redis": True})), "Deployment", "app-redis")["spec"][
        "template"
    ]["spec"]["containers"][0]["image"] == ("redis:7.4-alpine")


def test_mariadb_deployment() -> None:
    manifests = render(make_config(databases={"mariadb": {"storage": "512Mi"}}))
    claim = find(manifests, "PersistentVolumeClaim", "app-mariadb-data")
    assert claim["spec"] == {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "512Mi"}},
    }
    deployment = find(manifests, "Deployment", "app-mariadb")
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "mariadb:11.4"
    assert env_of(container) == {
        "MARIADB_ROOT_PASSWORD": secret_ref("app-mariadb-credentials", "root-password"),
        "MARIADB_DATABASE": "app",
        "MARIADB_USER": "app",
        "MARIADB_PASSWORD": secret_ref("app-mariadb-credentials", "password"),
    }
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "app-mariadb-data"}} in pod["volumes"]
    assert pod["securityContext"]["runAsUser"] == 999
    assert find(manifests, "Service", "app-mariadb")["spec"]["ports"][0]["port"] == 3306


def _containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod.get("containers", []), *pod.get("initContainers", [])]


def _pod_specs(manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    pods = [m["spec"]["template"]["spec"] for m in manifests if m["kind"] == "Deployment"]
    mongodb = [m for m in manifests if m["kind"] == "MongoDBCommunity"]
    pods += [m["spec"]["statefulSet"]["spec"]["template"]["spec"] for m in mongodb]
    return pods


def test_every_pod_fits_the_limit_range() -> None:
    manifests = render(load_config((FIXTURES / "full.yaml").read_text()))
    resources = [c["resources"] for pod in _pod_specs(manifests) for c in _containers(pod)]
    resources += [m["spec"]["resources"] for m in manifests if m["kind"] == "Cluster"]
    resources += [
        pool["resources"] for m in manifests if m["kind"] == "Tenant" for pool in m["spec"]["pools"]
    ]
    # app + 5 wait-for, redis, mariadb, mongod + agent + 2 init, the Cluster's, the Tenant pool's.
    assert len(resources) == 14
    for resource in resources:
        assert quota.cpu_millicores(resource["requests"]["cpu"]) >= 10
        assert quota.mebibytes(resource["requests"]["memory"]) >= 32
        assert quota.cpu_millicores(resource["limits"]["cpu"]) <= 1000
        assert quota.mebibytes(resource["limits"]["memory"]) <= 1024
        assert quota.cpu_millicores(resource["requests"]["cpu"]) <= quota.cpu_millicores(
            resource["limits"]["cpu"]
        )
    for pod in _pod_specs(manifests):
        limits = [c["resources"]["limits"] for c in pod["containers"]]
        assert sum(quota.cpu_millicores(limit["cpu"]) for limit in limits) <= 2000
        assert sum(quota.mebibytes(limit["memory"]) for limit in limits) <= 2048


def test_database_pods_fit_their_share_of_the_quota() -> None:
    manifests = render(all_databases())

    def usage(pod: dict[str, Any], which: str) -> tuple[int, int]:
        # As the quota counts a pod: its containers' sum, or its largest init container if larger.
        def cpu(c: dict[str, Any]) -> int:
            return quota.cpu_millicores(c["resources"][which]["cpu"])

        def memory(c: dict[str, Any]) -> int:
            return quota.mebibytes(c["resources"][which]["memory"])

        init = pod.get("initContainers", [])
        return (
            max([sum(cpu(c) for c in pod["containers"]), *(cpu(c) for c in init)]),
            max([sum(memory(c) for c in pod["containers"]), *(memory(c) for c in init)]),
        )

    def fits(pod: dict[str, Any], database: str) -> None:
        cost = quota.DATABASE_COSTS[database]
        requests, limits = usage(pod, "requests"), usage(pod, "limits")
        assert requests[0] <= cost.requests_cpu_m and requests[1] <= cost.requests_memory_mi, database
        assert limits[0] <= cost.limits_cpu_m and limits[1] <= cost.limits_memory_mi, database

    shares = {"app-redis": "redis", "app-mariadb": "mariadb"}
    for deployment in (m for m in manifests if m["kind"] == "Deployment" and m["metadata"]["name"] in shares):
        fits(deployment["spec"]["template"]["spec"], shares[deployment["metadata"]["name"]])
    fits(find(manifests, "MongoDBCommunity")["spec"]["statefulSet"]["spec"]["template"]["spec"], "mongodb")


# ================================================================ passwords


def test_required_passwords() -> None:
    assert required_passwords(make_config()) == []
    assert required_passwords(make_config(databases={"postgresql": True})) == []
    assert required_passwords(all_databases()) == [
        "mongodb",
        "redis",
        "minio-access-key",
        "minio-secret-key",
        "mariadb",
        "mariadb-root",
    ]


def test_generated_secrets_hold_the_given_passwords() -> None:
    config = all_databases()
    manifests = render(config)
    secrets = [m for m in manifests if m["kind"] == "Secret"]
    assert all(s["metadata"]["labels"]["k8s-ee/generated-credentials"] == "true" for s in secrets)
    assert naming.GENERATED_CREDENTIALS_SELECTOR == "k8s-ee/generated-credentials=true"
    assert passwords_from_secrets(secrets) == passwords_for(config)
    mariadb = find(manifests, "Secret", "app-mariadb-credentials")
    assert {k: base64.b64decode(v).decode() for k, v in mariadb["data"].items()} == {
        "password": "pw-mariadb-0123456789",
        "root-password": "pw-mariadb-root-0123456789",
    }


def test_passwords_are_reused_not_rotated() -> None:
    config = all_databases()
    first = render_environment(
        make_target(), config, SETTINGS, {n: new_password() for n in required_passwords(config)}
    )
    # What the worker does on the next deploy: read them back and pass them in again.
    reused = passwords_from_secrets([m for m in first if m["kind"] == "Secret"])
    second = render_environment(make_target(now=NOW + timedelta(days=1)), config, SETTINGS, reused)
    assert [m for m in first if m["kind"] == "Secret"] == [m for m in second if m["kind"] == "Secret"]


def test_passwords_from_secrets_skips_what_it_does_not_know() -> None:
    good = base64.b64encode(b"abcdefgh12345678").decode()
    secrets = [
        {"metadata": {"name": "app-redis-credentials"}, "data": {"password": good, "other": good}},
        {"metadata": {"name": "unrelated"}, "data": {"password": good}},
        {
            "metadata": {"name": "app-mariadb-credentials"},
            "data": {"password": "not base64!", "root-password": None},
        },
        {
            "metadata": {"name": "app-mongodb-credentials"},
            "data": {"password": base64.b64encode(b"short").decode()},
        },
        {"metadata": {}, "data": None},
    ]
    assert passwords_from_secrets(secrets) == {"redis": "abcdefgh12345678"}


def test_missing_passwords_are_named_and_values_never_shown() -> None:
    config = all_databases()
    passwords = passwords_for(config)
    del passwords["redis"]
    del passwords["mariadb-root"]
    with pytest.raises(MissingPasswords, match="missing generated passwords: redis, mariadb-root") as caught:
        render_environment(make_target(), config, SETTINGS, passwords)
    assert caught.value.names == ["redis", "mariadb-root"]
    assert isinstance(caught.value, ValueError)
    assert "pw-" not in str(caught.value)


def test_unusable_passwords_are_refused_without_showing_them() -> None:
    config = make_config(databases={"redis": True})
    with pytest.raises(UnusablePasswords, match="unusable generated passwords") as caught:
        render_environment(make_target(), config, SETTINGS, {"redis": "has space and $ecret"})
    assert caught.value.names == ["redis"]
    assert "$ecret" not in str(caught.value)


def test_new_passwords() -> None:
    passwords = {new_password() for _ in range(20)}
    assert len(passwords) == 20
    assert all(re.fullmatch(r"[A-Za-z0-9]{32}", p) for p in passwords)


# ================================================================ inputs


def test_target_needs_aware_times_and_a_sha() -> None:
    with pytest.raises(ValueError):
        make_target(now=datetime(2025, 1, 1))
    with pytest.raises(ValueError):
        make_target(head_sha="not-a-sha")


def test_settings_normalise_the_domain_and_registry() -> None:
    settings = RenderSettings(preview_domain="Preview.Example.COM.", image_registry="GHCR.io/")
    assert (settings.preview_domain, settings.image_registry) == ("preview.example.com", "ghcr.io")
    with pytest.raises(ValueError):
        RenderSettings(preview_domain="not a domain")


def test_a_trailing_newline_does_not_slip_past_a_check() -> None:
    with pytest.raises(ValueError):
        quota.cpu_millicores("250m\n")
    with pytest.raises(ValueError):
        make_target(head_sha=SHA + "\n")
    config = make_config(databases={"redis": True})
    with pytest.raises(ValueError, match="unusable"):
        render_environment(make_target(), config, SETTINGS, {"redis": "abcdefgh12345678\n"})
    encoded = base64.b64encode(b"abcdefgh12345678\n").decode()
    assert (
        passwords_from_secrets(
            [{"metadata": {"name": "app-redis-credentials"}, "data": {"password": encoded}}]
        )
        == {}
    )


def test_names_kubernetes_would_refuse_are_refused_before_anything_is_applied() -> None:
    # Valid per SPEC 3, but the app's Service name must start with a letter.
    with pytest.raises(ValueError, match="start with a letter"):
        render(config_from_mapping({"projectId": "7shop"}))
    # The namespace itself fits in 63 characters, `{namespace}-app` does not.
    with pytest.raises(ValueError, match="longer than 63"):
        render(config_from_mapping({"projectId": "x" * 20}), number=int("9" * 38))
    assert find(render(config_from_mapping({"projectId": "x" * 20}), number=int("9" * 35)), "Service")
