"""Manifests for the cluster back-ends' tests: hand-written ones of every kind the renderer
emits, and a rendered environment."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from handlers import naming
from handlers.config import config_from_mapping
from handlers.render import RenderSettings, RenderTarget, render_environment, required_passwords
from providers.events import Provider

NS = "shop-pr-7"
REPO = "acme/shop"


def b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def labels() -> dict[str, str]:
    return naming.common_labels("shop", 7)


def namespace_manifest(name: str = NS, repository: str = REPO, **extra_labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": name,
            "labels": {
                naming.LABEL_MANAGED_BY: naming.MANAGED_BY,
                naming.LABEL_TYPE: "ephemeral",
                **extra_labels,
            },
            "annotations": {naming.ANNOTATION_REPOSITORY: repository},
        },
    }


def obj(api_version: str, kind: str, name: str, **body: Any) -> dict[str, Any]:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": name, "namespace": NS, "labels": labels()},
        **body,
    }


def environment(mongodb: bool = True, name: str = NS, repository: str = REPO) -> list[dict[str, Any]]:
    """Hand-written manifests of every kind the renderer emits, in its order."""
    app = {"app.kubernetes.io/name": "app"}
    manifests = [
        namespace_manifest(name, repository),
        obj("v1", "ResourceQuota", "pr-quota", spec={"hard": {"pods": "5"}}),
        obj("v1", "LimitRange", "pr-limits", spec={"limits": [{"type": "Container", "max": {"cpu": "1"}}]}),
        obj("networking.k8s.io/v1", "NetworkPolicy", "default-deny", spec={"podSelector": {}}),
        obj(
            "v1", "Secret", "app-redis-credentials", type="Opaque", data={"password": b64("redis-pass-0123")}
        ),
        obj("v1", "PersistentVolumeClaim", "app-data", spec={"accessModes": ["ReadWriteOnce"]}),
        obj("postgresql.cnpg.io/v1", "Cluster", "app-postgresql", spec={"instances": 1}),
        obj("minio.min.io/v2", "Tenant", "app-minio", spec={"pools": []}),
        obj("v1", "ConfigMap", f"{NS}-app-config", data={"PORT": "3000"}),
        obj(
            "apps/v1",
            "Deployment",
            f"{NS}-app",
            spec={
                "replicas": 1,
                "selector": {"matchLabels": app},
                "template": {
                    "metadata": {"labels": app},
                    "spec": {"containers": [{"name": "app", "image": "a:1"}]},
                },
            },
        ),
        obj("v1", "Service", f"{NS}-app", spec={"selector": app, "ports": [{"port": 80}]}),
        obj("networking.k8s.io/v1", "Ingress", f"{NS}-app", spec={"rules": [{"host": "x.example.com"}]}),
        obj("monitoring.coreos.com/v1", "ServiceMonitor", f"{NS}-app", spec={"endpoints": []}),
    ]
    if mongodb:
        mongo = [
            obj(
                "v1",
                "Secret",
                "app-mongodb-credentials",
                type="Opaque",
                data={"password": b64("mongo-pass-0123")},
            ),
            obj("mongodbcommunity.mongodb.com/v1", "MongoDBCommunity", "app-mongodb", spec={"members": 1}),
        ]
        manifests[5:5] = mongo
    for manifest in manifests[1:]:
        manifest["metadata"]["namespace"] = name
        if manifest["kind"] == "Secret":
            manifest["metadata"]["labels"][naming.LABEL_GENERATED_CREDENTIALS] = "true"
    return manifests


def rendered(databases: dict[str, bool], passwords: dict[str, str] | None = None) -> list[dict[str, Any]]:
    return rendered_config({"projectId": "shop", "databases": databases}, passwords)


def rendered_config(mapping: dict[str, Any], passwords: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The environment of change Acme/Shop#42 for a k8s-ee.yaml given as a mapping."""
    config = config_from_mapping(mapping)
    target = RenderTarget(
        provider=Provider.GITHUB,
        repository="Acme/Shop",
        number=42,
        head_sha="0123456789abcdef0123456789abcdef01234567",
        head_ref="feature/login",
        created_at=datetime(2025, 3, 1, tzinfo=UTC),
        now=datetime(2025, 3, 2, tzinfo=UTC),
    )
    passwords = passwords or {name: f"pw-{name}-0123456789" for name in required_passwords(config)}
    return render_environment(target, config, RenderSettings(preview_domain="preview.example.com"), passwords)
