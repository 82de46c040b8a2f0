"""Every rendered object is valid: core kinds against the official Kubernetes schemas
(kubernetes-validate, strict) of every minor version from 1.28 to the newest it ships,
rendered for that version, custom resources against their operators' CRDs in
shared/crds (made strict: an object schema that lists properties is closed, so a
misspelt field fails), and the ServiceMonitor against a small schema of our own.

The tests at the end break objects on purpose, to show each check can fail.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from handlers.config import RepoConfig, config_from_mapping, load_config
from handlers.render import RenderSettings, RenderTarget, new_password, render_environment, required_passwords
from providers.events import Provider

# The oldest minor version the rendered manifests must be valid for; the newest is what
# kubernetes-validate ships.
OLDEST_MINOR = 28
FIXTURES = Path(__file__).parents[1] / "fixtures" / "configs"
CUSTOM_GROUPS = (
    "postgresql.cnpg.io/",
    "mongodbcommunity.mongodb.com/",
    "minio.min.io/",
    "monitoring.coreos.com/",
)


def crds_dir() -> Path:
    """shared/crds beside the repository's checkout, or under $K8S_EE_SHARED_DIR."""
    beside = Path(__file__).resolve().parents[3] / "shared" / "crds"
    if beside.is_dir():
        return beside
    shared = os.environ.get("K8S_EE_SHARED_DIR")
    if shared and (Path(shared) / "crds").is_dir():
        return Path(shared) / "crds"
    pytest.fail(f"no CRDs: neither {beside} nor $K8S_EE_SHARED_DIR/crds exists")


# ---------------------------------------------------------------- schemas


def close_objects(schema: Any) -> Any:
    """A copy of an OpenAPI schema where objects that list `properties` allow nothing else.

    CRD schemas leave `additionalProperties` out (the API server prunes unknown
    fields silently), so a typo would pass a plain validation and vanish on apply.
    Objects that preserve unknown fields, or say what extra properties may be, stay as they are.
    """
    if isinstance(schema, list):
        return [close_objects(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    closed = {
        key: (
            {name: close_objects(sub) for name, sub in value.items()}
            if key == "properties"
            else close_objects(value)
            if key in ("items", "additionalProperties", "allOf", "anyOf", "oneOf", "not")
            else value
        )
        for key, value in schema.items()
    }
    if (
        "properties" in closed
        and "additionalProperties" not in closed
        and not closed.get("x-kubernetes-preserve-unknown-fields")
    ):
        closed["additionalProperties"] = False
    return closed


@cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> strict schema, for every served version of every CRD in shared/crds."""
    schemas: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(crds_dir().glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if not document or document.get("kind") != "CustomResourceDefinition":
                continue
            spec = document["spec"]
            for version in spec["versions"]:
                if version.get("served"):
                    api_version = f"{spec['group']}/{version['name']}"
                    raw = version["schema"]["openAPIV3Schema"]
                    schemas[(api_version, spec["names"]["kind"])] = close_objects(raw)
    return schemas


SCHEMAS = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"


def k8s_versions() -> list[str]:
    """`1.28.0` ... the newest: one strict schema set per minor version kubernetes-validate ships."""
    found = set()
    for path in SCHEMAS.glob("v1.*.*-local-strict"):
        minor = int(path.name.split(".")[1])
        if minor >= OLDEST_MINOR:
            found.add(minor)
    assert found, "kubernetes-validate ships no strict schemas"
    return [f"1.{minor}.0" for minor in sorted(found)]


NEWEST = k8s_versions()[-1]


@cache
def k8s_definitions(version: str = NEWEST) -> dict[str, Any]:
    minor = ".".join(version.split(".")[:2])
    matches = sorted(SCHEMAS.glob(f"v{minor}.*-local-strict"))
    assert matches, f"kubernetes-validate ships no strict schemas for {version}"
    return json.loads((matches[0] / "_definitions.json").read_text())


def definition_validator(name: str, version: str = NEWEST) -> jsonschema.Draft202012Validator:
    """A validator for one type of the official schemas, e.g. io.k8s.api.core.v1.Container."""
    schema = {**k8s_definitions(version), "$ref": f"#/$defs/{name}"}
    return jsonschema.Draft202012Validator(schema)


# The Prometheus Operator's CRD is not in shared/; the fields we render, closed.
_SERVICE_MONITOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {"type": "object"},
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}},
                    },
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string", "pattern": "^/"},
                            "interval": {
                                "type": "string",
                                "pattern": "^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?"
                                "(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$",
                            },
                            "scrapeTimeout": {"type": "string"},
                        },
                    },
                },
            },
        },
    },
}


# ---------------------------------------------------------------- checks

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# Service names are DNS-1035 labels: they start with a letter.
_DNS_1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
# How the API server checks names, where it is stricter than a DNS-1123 subdomain.
_NAME_RULES = {"Namespace": (_DNS_LABEL, 63), "Service": (_DNS_1035_LABEL, 63)}


def _qualified_name_problems(key: str, what: str) -> list[str]:
    prefix, _, name = key.rpartition("/")
    problems = []
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        problems.append(f"{what} key {key!r}: bad prefix")
    if len(name) > 63 or not _LABEL_NAME.match(name):
        problems.append(f"{what} key {key!r}: bad name")
    return problems


def metadata_problems(obj: dict[str, Any]) -> list[str]:
    """What the API server checks beyond the schemas: names, label keys and values."""
    meta = obj.get("metadata", {})
    problems = []
    name = meta.get("name", "")
    pattern, limit = _NAME_RULES.get(obj.get("kind", ""), (_DNS_SUBDOMAIN, 253))
    if len(name) > limit or not pattern.match(name):
        problems.append(f"name {name!r} is not valid for a {obj.get('kind')}")
    for key, value in (meta.get("labels") or {}).items():
        problems += _qualified_name_problems(key, "label")
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            problems.append(f"label {key}={value!r}: bad value")
    for key, value in (meta.get("annotations") or {}).items():
        problems += _qualified_name_problems(key, "annotation")
        if not isinstance(value, str):
            problems.append(f"annotation {key}: value is not a string")
    return problems


def _errors(validator: jsonschema.protocols.Validator, instance: Any, where: str) -> list[str]:
    return [
        f"{where}.{'.'.join(str(p) for p in error.absolute_path)}: {error.message}"
        for error in validator.iter_errors(instance)
    ]


def validation_problems(obj: dict[str, Any], version: str = NEWEST) -> list[str]:
    """Every reason `obj` would be refused by a server of `version`; empty when it is valid."""
    label = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
    problems = [f"{label}: {problem}" for problem in metadata_problems(obj)]
    api_version, kind = obj.get("apiVersion", ""), obj.get("kind", "")
    if api_version == "monitoring.coreos.com/v1" and kind == "ServiceMonitor":
        problems += _errors(jsonschema.Draft202012Validator(_SERVICE_MONITOR_SCHEMA), obj, label)
        problems += _errors(
            definition_validator("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"), obj["metadata"], label
        )
    elif api_version.startswith(CUSTOM_GROUPS):
        schema = crd_schemas().get((api_version, kind))
        if schema is None:
            return [*problems, f"{label}: no CRD for {api_version} {kind} in shared/crds"]
        problems += _errors(jsonschema.Draft202012Validator(schema), obj, label)
        # A CRD's metadata is the API server's ObjectMeta, whatever the CRD says of it.
        problems += _errors(
            definition_validator("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"), obj["metadata"], label
        )
        problems += _embedded_problems(obj, label)
    else:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(p) for p in error.path)
            problems.append(f"{label}.{path}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError as error:
            problems.append(f"{label}: {error.message}")
    return problems


def _embedded_problems(obj: dict[str, Any], label: str) -> list[str]:
    """Parts of custom resources that their CRDs leave open but that are Kubernetes types.

    MongoDBCommunity's `statefulSet.spec` is merged into a StatefulSet by the operator,
    so its containers and claim templates must be valid Container and PersistentVolumeClaim objects.
    """
    if obj["kind"] != "MongoDBCommunity":
        return []
    spec = obj["spec"].get("statefulSet", {}).get("spec", {})
    problems = []
    pod = spec.get("template", {}).get("spec", {})
    for field in ("containers", "initContainers"):
        for index, container in enumerate(pod.get(field, [])):
            where = f"{label}.spec.statefulSet.spec.template.spec.{field}[{index}]"
            problems += _errors(definition_validator("io.k8s.api.core.v1.Container"), container, where)
    for index, claim in enumerate(spec.get("volumeClaimTemplates", [])):
        where = f"{label}.spec.statefulSet.spec.volumeClaimTemplates[{index}]"
        problems += _errors(definition_validator("io.k8s.api.core.v1.PersistentVolumeClaim"), claim, where)
    unknown = set(pod) - {"containers", "initContainers"}
    if unknown:
        problems.append(f"{label}: unexpected pod fields {sorted(unknown)}")
    return problems


# ---------------------------------------------------------------- what is rendered


def target(**changes: Any) -> RenderTarget:
    fields: dict[str, Any] = {
        "provider": Provider.GITHUB,
        "repository": "Acme-Corp/Web.Shop",
        "number": 1234,
        "head_sha": "0123456789abcdef0123456789abcdef01234567",
        "head_ref": "feature/ünïcode--and spaces/" + "x" * 80,
        "created_at": datetime(2025, 3, 1, 9, 30, tzinfo=UTC),
        "now": datetime(2025, 3, 2, 10, 0, tzinfo=UTC),
    }
    return RenderTarget(**{**fields, **changes})


SETTINGS = RenderSettings(preview_domain="preview.example.com")
SETTINGS_EVERYTHING = RenderSettings(
    preview_domain="preview.example.com",
    ingress_class="nginx",
    ingress_annotations={"cert-manager.io/cluster-issuer": "letsencrypt"},
    ingress_tls_secret="{namespace}-tls",
    ingress_controller_namespace="ingress-nginx",
    ingress_controller_labels={"app.kubernetes.io/name": "ingress-nginx"},
    service_monitor_labels={"release": "kube-prometheus-stack"},
    api_server_cidrs=("10.0.0.1/32", "192.168.1.10/32"),
    image_registry="registry.example.com:5000/previews",
)


def inline(**fields: Any) -> RepoConfig:
    return config_from_mapping({"projectId": "shop", **fields})


CONFIGS: dict[str, RepoConfig] = {
    "minimal": load_config((FIXTURES / "minimal.yaml").read_text()),
    "full": load_config((FIXTURES / "full.yaml").read_text()),
    "no-ingress-metrics": load_config((FIXTURES / "no-ingress-metrics.yaml").read_text()),
    "all-databases-defaults": inline(
        databases={name: True for name in ("postgresql", "mongodb", "redis", "minio", "mariadb")}
    ),
    "metrics-on": inline(metrics={"enabled": True, "interval": "15s"}, app={"metricsPath": "/prom"}),
    "ingress-off": inline(ingress={"enabled": False}),
    "writable-dirs": inline(writableDirs=["/data", "/app/.next/cache", "/tmp", "/data/"]),
    "env-from": inline(
        envFrom=[{"secretRef": {"name": "api-keys"}}, {"configMapRef": {"name": "feature-flags"}}],
        env={"FEATURE_X": "on", "PORT": "1"},
    ),
    "postgresql-bootstrap": inline(
        databases={"postgresql": {"version": "17", "storage": "5Gi", "bootstrap": {"initSQL": "SELECT 1"}}}
    ),
}


def render(config: RepoConfig, settings: RenderSettings = SETTINGS, **changes: Any) -> list[dict[str, Any]]:
    passwords = {name: new_password() for name in required_passwords(config)}
    return render_environment(target(**changes), config, settings, passwords)


def rendered_cases() -> Iterator[Any]:
    for name, config in CONFIGS.items():
        yield pytest.param(config, SETTINGS, {}, id=name)
    yield pytest.param(CONFIGS["full"], SETTINGS_EVERYTHING, {}, id="full-all-settings")
    yield pytest.param(
        CONFIGS["all-databases-defaults"],
        SETTINGS_EVERYTHING,
        {
            "provider": Provider.GITLAB,
            "repository": "group/sub/project",
            "image": "registry.gitlab.com/g/p@sha256:" + "b" * 64,
        },
        id="gitlab-image-override",
    )
    yield pytest.param(
        CONFIGS["minimal"],
        RenderSettings(preview_domain="p.example.org", api_server_cidrs=(), cnpg_operator_namespace=None),
        {"provider": Provider.BITBUCKET_SERVER, "repository": "PROJ/repo", "head_ref": "-", "number": 1},
        id="bitbucket-bare-settings",
    )


# ---------------------------------------------------------------- the tests


@pytest.mark.parametrize("version", k8s_versions())
@pytest.mark.parametrize(("config", "settings", "changes"), list(rendered_cases()))
def test_every_rendered_object_is_valid(
    config: RepoConfig, settings: RenderSettings, changes: dict[str, Any], version: str
) -> None:
    for_version = settings.model_copy(update={"kubernetes_version": version.rsplit(".", 1)[0]})
    manifests = render(config, for_version, **changes)
    problems = [problem for obj in manifests for problem in validation_problems(obj, version)]
    assert problems == [], "\n".join(problems)


def test_the_sleep_action_is_refused_before_1_30() -> None:
    """Why the app's preStop hook depends on the version: 1.28's schema has no sleep action."""
    deployment = _one("Deployment", CONFIGS["minimal"])
    assert deployment["spec"]["template"]["spec"]["containers"][0]["lifecycle"]["preStop"] == {
        "sleep": {"seconds": 5}
    }
    assert validation_problems(deployment, "1.30.0") == []
    assert any("sleep" in problem for problem in validation_problems(deployment, "1.28.0"))


def test_the_checks_cover_every_kind_rendered() -> None:
    kinds = {(obj["apiVersion"], obj["kind"]) for config in CONFIGS.values() for obj in render(config)}
    custom = {kind for kind in kinds if kind[0].startswith(CUSTOM_GROUPS)}
    assert custom == {
        ("postgresql.cnpg.io/v1", "Cluster"),
        ("mongodbcommunity.mongodb.com/v1", "MongoDBCommunity"),
        ("minio.min.io/v2", "Tenant"),
        ("monitoring.coreos.com/v1", "ServiceMonitor"),
    }
    # Every custom resource but the ServiceMonitor has its CRD here.
    assert custom - {("monitoring.coreos.com/v1", "ServiceMonitor")} <= set(crd_schemas())


def test_crd_schemas_were_closed() -> None:
    cluster = crd_schemas()[("postgresql.cnpg.io/v1", "Cluster")]
    assert cluster["properties"]["spec"]["additionalProperties"] is False
    mongodb = crd_schemas()[("mongodbcommunity.mongodb.com/v1", "MongoDBCommunity")]
    # Left open where the CRD says so.
    stateful_set_spec = mongodb["properties"]["spec"]["properties"]["statefulSet"]["properties"]["spec"]
    assert "additionalProperties" not in stateful_set_spec


# ---------------------------------------------------------------- each check can fail


def _one(kind: str, config: RepoConfig | None = None) -> dict[str, Any]:
    manifests = render(config or CONFIGS["all-databases-defaults"])
    return copy.deepcopy(next(obj for obj in manifests if obj["kind"] == kind))


def test_a_misspelt_core_field_fails() -> None:
    deployment = _one("Deployment")
    assert validation_problems(deployment) == []
    deployment["spec"]["replica"] = deployment["spec"].pop("replicas")
    assert any("replica" in problem for problem in validation_problems(deployment))


def test_a_wrong_type_in_a_container_fails() -> None:
    deployment = _one("Deployment", CONFIGS["minimal"])
    deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "3000"
    assert validation_problems(deployment) != []


def test_a_misspelt_custom_resource_field_fails_only_because_schemas_are_closed() -> None:
    cluster = _one("Cluster")
    assert validation_problems(cluster) == []
    cluster["spec"]["storage"]["sizee"] = cluster["spec"]["storage"].pop("size")
    assert any("sizee" in problem for problem in validation_problems(cluster))
    # The CRD as published would have let it through (and the API server would prune it).
    raw = yaml.safe_load((crds_dir() / "postgresql.cnpg.io_clusters.yaml").read_text())
    published = raw["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert list(jsonschema.Draft202012Validator(published).iter_errors(cluster)) == []


def test_a_wrong_type_in_a_custom_resource_fails() -> None:
    tenant = _one("Tenant")
    tenant["spec"]["pools"][0]["servers"] = "1"
    assert validation_problems(tenant) != []
    mongodb = _one("MongoDBCommunity")
    del mongodb["spec"]["users"][0]["roles"]
    assert any("roles" in problem for problem in validation_problems(mongodb))


def test_a_broken_embedded_container_fails() -> None:
    mongodb = _one("MongoDBCommunity")
    containers = mongodb["spec"]["statefulSet"]["spec"]["template"]["spec"]["containers"]
    containers[0]["resource"] = containers[0].pop("resources")
    assert any("resource" in problem for problem in validation_problems(mongodb))


def test_a_broken_service_monitor_fails() -> None:
    monitor = _one("ServiceMonitor", CONFIGS["metrics-on"])
    assert validation_problems(monitor) == []
    monitor["spec"]["endpoints"][0]["prot"] = monitor["spec"]["endpoints"][0].pop("port")
    assert validation_problems(monitor) != []
    monitor = _one("ServiceMonitor", CONFIGS["metrics-on"])
    monitor["spec"]["endpoints"][0]["interval"] = "30 seconds"
    assert validation_problems(monitor) != []


def test_bad_names_and_labels_fail() -> None:
    config_map = _one("ConfigMap", CONFIGS["minimal"])
    config_map["metadata"]["labels"]["k8s-ee/branch"] = "feature/x"
    assert validation_problems(config_map) == [
        "ConfigMap/myapp-pr-1234-app-config: label k8s-ee/branch='feature/x': bad value"
    ]
    service = _one("Service", CONFIGS["minimal"])
    service["metadata"]["name"] = "a.b"
    assert validation_problems(service) == ["Service/a.b: name 'a.b' is not valid for a Service"]
    service["metadata"]["name"] = "7app-pr-1-app"
    assert validation_problems(service) == [
        "Service/7app-pr-1-app: name '7app-pr-1-app' is not valid for a Service"
    ]


def test_an_unknown_kind_is_not_waved_through() -> None:
    unknown = {"apiVersion": "v1", "kind": "Frobnicator", "metadata": {"name": "x"}}
    assert validation_problems(unknown) != []
    no_crd = {"apiVersion": "minio.min.io/v2", "kind": "Bucket", "metadata": {"name": "x"}, "spec": {}}
    assert validation_problems(no_crd) == ["Bucket/x: no CRD for minio.min.io/v2 Bucket in shared/crds"]
