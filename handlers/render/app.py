"""The app: its ConfigMap, Deployment, Service, Ingress and ServiceMonitor (SPEC 2)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from handlers import naming
from handlers.config import DatabaseConfig
from handlers.render import pods
from handlers.render.context import Context, Manifest, selector
from handlers.render.databases import ENDPOINTS, database_env
from providers.fields import IMAGE_REPOSITORY

APP_CONTAINER = "app"
# Changes with the ConfigMap's content, so a new commit (COMMIT_SHA) or a changed
# `env` rolls the pods even though the image tag `pr-<n>` stays the same.
CONFIG_HASH_ANNOTATION = "k8s-ee/config-hash"
DEFAULT_METRICS_PATH = "/metrics"


def image(ctx: Context) -> str:
    """The target's image if given, else `<repository>:pr-<number>`."""
    if ctx.target.image:
        return ctx.target.image
    repository = ctx.config.image.repository
    if repository is None:
        repository = f"{ctx.settings.image_registry}/{ctx.target.repository}/{ctx.project_id}".lower()
        if not IMAGE_REPOSITORY.fullmatch(repository):
            # e.g. a Bitbucket Data Center personal repository, `~user/repo`.
            raise ValueError(
                f"cannot derive an image repository from {ctx.target.repository!r} "
                f"(got {repository!r}); set image.repository in k8s-ee.yaml"
            )
    return f"{repository}:pr-{ctx.target.number}"


def _labels(ctx: Context) -> dict[str, str]:
    return {**selector("app", ctx.app), "app.kubernetes.io/component": "app"}


def config_map(ctx: Context) -> Manifest:
    target = ctx.target
    platform = {
        "PORT": str(ctx.config.app.port),
        "PR_NUMBER": str(target.number),
        "COMMIT_SHA": target.head_sha,
        "BRANCH_NAME": target.head_ref,
        "APP_VERSION": target.app_version or target.head_sha[:7],
        "PREVIEW_URL": ctx.url,
    }
    # The platform's values win: the probes and the Service depend on PORT.
    data = {**ctx.config.env, **platform}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": ctx.metadata(naming.app_config_name(ctx.namespace), labels=_labels(ctx)),
        "data": dict(sorted(data.items())),
    }


def deployment(ctx: Context, config: Manifest) -> Manifest:
    app = ctx.config.app
    databases = ctx.config.enabled_databases()
    volumes, mounts = _writable_volumes(ctx)
    container: dict[str, Any] = {
        "name": APP_CONTAINER,
        "image": image(ctx),
        # `pr-<n>` is pushed again for every commit; a digest never changes.
        "imagePullPolicy": "IfNotPresent" if "@sha256:" in image(ctx) else "Always",
        "ports": [{"name": "http", "containerPort": app.port, "protocol": "TCP"}],
        "envFrom": [*_user_env_from(ctx), {"configMapRef": {"name": config["metadata"]["name"]}}],
        "resources": pods.resources(
            (ctx.config.resources.requests.cpu, ctx.config.resources.requests.memory),
            (ctx.config.resources.limits.cpu, ctx.config.resources.limits.memory),
        ),
        "securityContext": pods.container_security(),
        "startupProbe": _http_probe(app.health_path, period=5, failures=60),
        "livenessProbe": _http_probe(app.health_path, period=10, failures=3),
        "readinessProbe": _http_probe(app.health_path, period=5, failures=3),
        # Let the ingress controller stop sending traffic before the app stops.
        "lifecycle": {"preStop": _pre_stop(ctx)},
        "volumeMounts": mounts,
    }
    env = [var for db in databases for var in database_env(db)]
    if env:
        container["env"] = env
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        # No `<SERVICE>_PORT`-style variables to collide with the app's own.
        "enableServiceLinks": False,
        "securityContext": pods.pod_security(pods.APP_UID, pods.APP_UID, pods.APP_UID),
        "terminationGracePeriodSeconds": 30,
        "containers": [container],
        "volumes": volumes,
    }
    if databases:
        pod_spec["initContainers"] = [_wait_for(ctx, db) for db in databases]
    labels = _labels(ctx)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": ctx.metadata(ctx.app, labels=labels),
        "spec": {
            "replicas": 1,
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": selector("app", ctx.app)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {
                    "labels": ctx.labels(labels),
                    "annotations": {CONFIG_HASH_ANNOTATION: _hash(config["data"])},
                },
                "spec": pod_spec,
            },
        },
    }


def service(ctx: Context) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": ctx.metadata(ctx.app, labels=_labels(ctx)),
        "spec": {
            "type": "ClusterIP",
            "selector": selector("app", ctx.app),
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def ingress(ctx: Context) -> Manifest:
    settings = ctx.settings
    # The gateway's annotations (TLS, security middlewares) win over the repository's.
    annotations = {**ctx.config.ingress.annotations, **settings.ingress_annotations}
    spec: dict[str, Any] = {
        "ingressClassName": settings.ingress_class,
        "rules": [
            {
                "host": ctx.host,
                "http": {
                    "paths": [
                        {
                            "path": "/",
                            "pathType": "Prefix",
                            "backend": {"service": {"name": ctx.app, "port": {"name": "http"}}},
                        }
                    ]
                },
            }
        ],
    }
    if settings.ingress_tls_secret:
        secret = settings.ingress_tls_secret.replace("{namespace}", ctx.namespace)
        spec["tls"] = [{"hosts": [ctx.host], "secretName": secret}]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": ctx.metadata(ctx.app, labels=_labels(ctx), annotations=dict(sorted(annotations.items()))),
        "spec": spec,
    }


def service_monitor(ctx: Context) -> Manifest:
    metrics = ctx.config.metrics
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": ctx.metadata(ctx.app, labels={**_labels(ctx), **ctx.settings.service_monitor_labels}),
        "spec": {
            "selector": {"matchLabels": selector("app", ctx.app)},
            "endpoints": [
                {
                    "port": "http",
                    "path": ctx.config.app.metrics_path or DEFAULT_METRICS_PATH,
                    "interval": metrics.interval,
                }
            ],
        },
    }


PRE_STOP_SECONDS = 5


def _pre_stop(ctx: Context) -> dict[str, Any]:
    """The hook's own sleep action where the cluster has it (1.30+); before, a `sleep` in the
    container (a missing binary makes the hook fail, which only skips the wait)."""
    if ctx.settings.sleep_action:
        return {"sleep": {"seconds": PRE_STOP_SECONDS}}
    return {"exec": {"command": ["sleep", str(PRE_STOP_SECONDS)]}}


def _http_probe(path: str, *, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": 3,
        "failureThreshold": failures,
    }


def _user_env_from(ctx: Context) -> list[dict[str, Any]]:
    sources: list[dict[str, Any]] = []
    for source in ctx.config.env_from:
        if source.secret_ref is not None:
            sources.append({"secretRef": {"name": source.secret_ref.name}})
        elif source.config_map_ref is not None:
            sources.append({"configMapRef": {"name": source.config_map_ref.name}})
    return sources


def _writable_volumes(ctx: Context) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """emptyDir volumes for /tmp and each `writableDirs` entry (the root filesystem is read-only)."""
    paths = [pods.TMP_DIR]
    for path in ctx.config.writable_dirs:
        normalised = path.rstrip("/") or path
        if normalised not in paths:
            paths.append(normalised)
    volumes = [pods.empty_dir("tmp")]
    mounts = [{"name": "tmp", "mountPath": pods.TMP_DIR}]
    for index, path in enumerate(paths[1:]):
        volumes.append(pods.empty_dir(f"writable-{index}"))
        mounts.append({"name": f"writable-{index}", "mountPath": path})
    return volumes, mounts


def _wait_for(ctx: Context, db: DatabaseConfig) -> dict[str, Any]:
    endpoint = ENDPOINTS[db.engine]
    script = (
        f"until nc -z -w 2 {endpoint.host} {endpoint.port}; do "
        f"echo 'waiting for {db.name} at {endpoint.host}:{endpoint.port}'; sleep 2; done"
    )
    return {
        "name": f"wait-for-{db.name}",
        "image": ctx.settings.wait_image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["sh", "-c", script],
        "resources": pods.resources(("10m", "32Mi"), ("50m", "64Mi")),
        "securityContext": pods.container_security(),
    }


def _hash(data: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode("utf-8")).hexdigest()[:16]
