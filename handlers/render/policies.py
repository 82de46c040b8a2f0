"""The namespace's guard rails: ResourceQuota, LimitRange and NetworkPolicies (SPEC 2)."""

from __future__ import annotations

from typing import Any

from handlers import naming, quota
from handlers.config import Engine
from handlers.render import workloads
from handlers.render.context import Context, Manifest, selector

DNS_PORTS = ({"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53})
# CloudNativePG's operator polls each instance's status endpoint here.
CNPG_STATUS_PORT = 8000
MINIO_API_PORT = 9000


def resource_quota(ctx: Context, manifests: list[Manifest]) -> Manifest:
    """The first edition's figures for the enabled databases, raised to what `manifests` need."""
    figures = quota.compute_quota(ctx.config.database_names()).covering(workloads.need(manifests))
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": ctx.metadata("pr-quota"),
        "spec": {"hard": figures.hard()},
    }


def limit_range(ctx: Context) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": ctx.metadata("pr-limits"),
        "spec": {
            "limits": [
                {
                    "type": "Container",
                    "default": {"cpu": quota.CONTAINER_DEFAULT_CPU, "memory": quota.CONTAINER_DEFAULT_MEMORY},
                    "defaultRequest": {
                        "cpu": quota.CONTAINER_DEFAULT_REQUEST_CPU,
                        "memory": quota.CONTAINER_DEFAULT_REQUEST_MEMORY,
                    },
                    "max": {"cpu": quota.CONTAINER_MAX_CPU, "memory": quota.CONTAINER_MAX_MEMORY},
                    "min": {"cpu": quota.CONTAINER_MIN_CPU, "memory": quota.CONTAINER_MIN_MEMORY},
                },
                {"type": "Pod", "max": {"cpu": quota.POD_MAX_CPU, "memory": quota.POD_MAX_MEMORY}},
                {
                    "type": "PersistentVolumeClaim",
                    "max": {"storage": quota.PVC_MAX_STORAGE},
                    "min": {"storage": quota.PVC_MIN_STORAGE},
                },
            ]
        },
    }


def network_policies(ctx: Context) -> list[Manifest]:
    settings = ctx.settings
    everything: dict[str, Any] = {}
    policies = [
        _policy(ctx, "default-deny", {"podSelector": everything, "policyTypes": ["Ingress", "Egress"]}),
        _policy(
            ctx,
            "allow-same-namespace",
            {
                "podSelector": everything,
                "ingress": [{"from": [{"podSelector": everything}]}],
                "policyTypes": ["Ingress"],
            },
        ),
        _policy(
            ctx,
            "allow-ingress-controller",
            {
                # Only the app's pods, only on the app's port.
                "podSelector": {"matchLabels": selector("app", ctx.app)},
                "ingress": [
                    {
                        "from": [
                            _pods_in(
                                settings.ingress_controller_namespace, settings.ingress_controller_labels
                            )
                        ],
                        "ports": [{"protocol": "TCP", "port": ctx.config.app.port}],
                    }
                ],
                "policyTypes": ["Ingress"],
            },
        ),
        _policy(
            ctx,
            "allow-observability",
            {
                "podSelector": everything,
                "ingress": [
                    {"from": [_pods_in(settings.observability_namespace, settings.prometheus_labels)]}
                ],
                "policyTypes": ["Ingress"],
            },
        ),
        _policy(
            ctx,
            "allow-egress",
            {"podSelector": everything, "egress": _egress(ctx), "policyTypes": ["Egress"]},
        ),
    ]
    return policies + _operator_policies(ctx)


def _egress(ctx: Context) -> list[dict[str, Any]]:
    settings = ctx.settings
    rules: list[dict[str, Any]] = [
        {"to": [{"podSelector": {}}]},
        {
            "to": [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": settings.dns_namespace}
                    }
                }
            ],
            "ports": [dict(port) for port in DNS_PORTS],
        },
    ]
    if settings.node_local_dns:
        rules.append(
            {
                "to": [{"ipBlock": {"cidr": f"{settings.node_local_dns}/32"}}],
                "ports": [dict(p) for p in DNS_PORTS],
            }
        )
    if settings.api_server_cidrs:
        rules.append(
            {
                "to": [{"ipBlock": {"cidr": cidr}} for cidr in settings.api_server_cidrs],
                "ports": [{"protocol": "TCP", "port": port} for port in settings.api_server_ports],
            }
        )
    internet: dict[str, Any] = {"cidr": "0.0.0.0/0"}
    if settings.egress_except:
        internet["except"] = list(settings.egress_except)
    rules.append({"to": [{"ipBlock": internet}]})
    return rules


def _operator_policies(ctx: Context) -> list[Manifest]:
    """Let the database operators reach the pods they manage through default-deny.

    Only for the databases enabled, and only when the operator's namespace is configured.
    """
    enabled = {db.engine for db in ctx.config.enabled_databases()}
    wanted = [
        (
            Engine.POSTGRESQL,
            "allow-cnpg-operator",
            ctx.settings.cnpg_operator_namespace,
            {"cnpg.io/cluster": "app-postgresql"},
            CNPG_STATUS_PORT,
        ),
        (
            Engine.MINIO,
            "allow-minio-operator",
            ctx.settings.minio_operator_namespace,
            {"v1.min.io/tenant": "app-minio"},
            MINIO_API_PORT,
        ),
    ]
    return [
        _policy(
            ctx,
            name,
            {
                "podSelector": {"matchLabels": pods},
                "ingress": [
                    {"from": [_pods_in(namespace, {})], "ports": [{"protocol": "TCP", "port": port}]}
                ],
                "policyTypes": ["Ingress"],
            },
        )
        for engine, name, namespace, pods, port in wanted
        if engine in enabled and namespace
    ]


def _pods_in(namespace: str, labels: dict[str, str]) -> dict[str, Any]:
    peer: dict[str, Any] = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}}
    if labels:
        peer["podSelector"] = {"matchLabels": dict(labels)}
    return peer


def _policy(ctx: Context, name: str, spec: dict[str, Any]) -> Manifest:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": ctx.metadata(name, labels={naming.LABEL_TYPE: naming.TYPE_NETWORK_POLICY}),
        "spec": spec,
    }
