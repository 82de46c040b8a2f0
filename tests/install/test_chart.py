"""The Helm chart: lint, render four value sets and validate every object strictly (core kinds
with kubernetes-validate, the Prometheus Operator's kinds against closed schemas of the fields
the chart writes), the schema refusing typos, and what each value set must and must not make."""

from __future__ import annotations

import json
import typing
from typing import Any

import jsonschema
import pytest
import yaml

from gateway.settings import GatewaySettings, WebSettings
from handlers.settings import WorkerConfig
from providers.hosts.settings import HostSettings
from providers.settings import env_name
from tests.handlers.test_render_schemas import validation_problems
from tests.install.chart import CHART, VALUE_SETS, VALUES, find, one, render, template_args
from tests.support.tools import run

_DURATION = "^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
# The Prometheus Operator's PrometheusRule (monitoring.coreos.com/v1), the fields it defines
# for a rule group and a rule, closed so that a misspelt one fails.
PROMETHEUS_RULE: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PrometheusRule"},
        "metadata": {"type": "object"},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "groups": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "additionalProperties": False,
                        "properties": {
                            "name": {"type": "string", "minLength": 1},
                            "interval": {"type": "string", "pattern": _DURATION},
                            "rules": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["expr"],
                                    "additionalProperties": False,
                                    "oneOf": [{"required": ["record"]}, {"required": ["alert"]}],
                                    "properties": {
                                        "record": {"type": "string", "pattern": "^[a-zA-Z_:][a-zA-Z0-9_:]*$"},
                                        "alert": {"type": "string"},
                                        "expr": {"type": "string"},
                                        "for": {"type": "string", "pattern": _DURATION},
                                        "labels": {
                                            "type": "object",
                                            "additionalProperties": {"type": "string"},
                                        },
                                        "annotations": {
                                            "type": "object",
                                            "additionalProperties": {"type": "string"},
                                        },
                                    },
                                },
                            },
                        },
                    },
                }
            },
        },
    },
}


def problems(obj: dict[str, Any]) -> list[str]:
    if obj.get("kind") == "PrometheusRule":
        validator = jsonschema.Draft202012Validator(PROMETHEUS_RULE)
        return [f"PrometheusRule: {error.message}" for error in validator.iter_errors(obj)]
    return validation_problems(obj)


def test_helm_lint_passes_for_every_value_set() -> None:
    for value_set in VALUE_SETS:
        run("helm", "lint", "--strict", str(CHART), "--values", str(VALUES / f"{value_set}.yaml"))


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_rendered_object_is_valid(value_set: str) -> None:
    objects = render(value_set)
    assert objects
    found = [problem for obj in objects for problem in problems(obj)]
    assert not found, "\n".join(found)
    names = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert len(names) == len(set(names))


def test_the_validation_fails_a_broken_object() -> None:
    deployment = one(render(), "Deployment", "-gateway")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = "/x"
    assert problems(deployment)
    rule = one(render("everything"), "PrometheusRule")
    rule["spec"]["groups"][0]["rules"][0]["recrod"] = rule["spec"]["groups"][0]["rules"][0].pop("record")
    assert problems(rule)


def test_no_template_guesses_what_the_cluster_has() -> None:
    # Monitoring objects are switched on by values, never by probing the API (`.Capabilities`).
    for path in (CHART / "templates").iterdir():
        assert ".Capabilities" not in path.read_text(), path.name


def test_defaults_make_two_gateways_a_drainable_pdb_and_no_monitoring_objects() -> None:
    objects = render()
    gateway = one(objects, "Deployment", "-gateway")
    assert gateway["spec"]["replicas"] == 2
    assert one(objects, "PodDisruptionBudget", "-gateway")["spec"] == {
        "maxUnavailable": 1,
        "selector": gateway["spec"]["selector"],
    }
    kinds = {o["kind"] for o in objects}
    assert not kinds & {"ServiceMonitor", "PrometheusRule", "HorizontalPodAutoscaler", "Ingress"}
    assert not find(objects, "ConfigMap", "-dashboard")
    # The bundled Redis keeps every write in its append-only file, on a volume of its own.
    redis = one(objects, "StatefulSet", "-redis")
    assert redis["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    conf = one(objects, "ConfigMap", "-redis")["data"]["redis.conf"]
    assert "appendonly yes" in conf and "maxmemory-policy noeviction" in conf


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_pod_runs_as_non_root_on_a_read_only_root(value_set: str) -> None:
    for obj in render(value_set):
        if obj["kind"] not in ("Deployment", "StatefulSet"):
            continue
        pod = obj["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"] == {"drop": ["ALL"]}


def test_gateway_probes_health_and_readiness() -> None:
    container = one(render(), "Deployment", "-gateway")["spec"]["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["args"] == ["serve"]


def test_everything_switched_on() -> None:
    objects = render("everything")
    assert "replicas" not in one(objects, "Deployment", "-gateway")["spec"]  # the HPA decides
    assert one(objects, "HorizontalPodAutoscaler")["spec"]["minReplicas"] == 3
    assert one(objects, "PodDisruptionBudget", "-gateway")["spec"]["minAvailable"] == 2
    ingress = one(objects, "Ingress")
    paths = {p["path"] for p in ingress["spec"]["rules"][0]["http"]["paths"]}
    assert paths == {"/webhooks", "/healthz", "/api"}
    assert {m["metadata"]["name"] for m in find(objects, "ServiceMonitor")} == {
        "gw-k8s-ee-gateway-gateway",
        "gw-k8s-ee-gateway-worker",
    }
    dashboard = json.loads(one(objects, "ConfigMap", "-dashboard")["data"]["k8s-ee-gateway.json"])
    assert dashboard["panels"]
    assert not find(objects, "StatefulSet")  # external Redis
    env = {
        e["name"]: e
        for e in one(objects, "Deployment", "-worker")["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["K8S_EE_REDIS_URL"]["value"] == "rediss://redis.example.com:6380/2"
    assert env["K8S_EE_DEPLOY_DRAFTS"]["value"] == "true"


def test_secrets_come_from_the_secret_never_from_the_pod_spec() -> None:
    for value_set in VALUE_SETS:
        objects = render(value_set)
        for obj in objects:
            if obj["kind"] != "Deployment":
                continue
            for env in obj["spec"]["template"]["spec"]["containers"][0]["env"]:
                if any(word in env["name"] for word in ("SECRET", "TOKEN", "PASSWORD", "PRIVATE_KEY")):
                    assert "value" not in env and env["valueFrom"]["secretKeyRef"]["optional"] is True
    # With existingSecret the chart makes no Secret of its own, and points at that one.
    objects = render("sentinel")
    assert not find(objects, "Secret")
    env = {
        e["name"]: e
        for e in one(objects, "Deployment", "-gateway")["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["K8S_EE_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "k8s-ee-credentials",
        "key": "password",
        "optional": True,
    }
    assert env["K8S_EE_REDIS_SENTINELS"]["value"].count(":26379") == 3


def test_the_schema_refuses_a_typo() -> None:
    for extra in (
        ["--set", "gateway.replicass=3"],
        ["--set", "redis.mode=clustered"],
        ["--set", "secrets.values.githubWebhookSecrett=x"],
        ["--set", "config.REDIS_URL=redis://x"],
        # A misspelt setting, and one the chart sets itself from `wake.*`.
        ["--set", "config.PREVIEW_DOMAN=preview.example.com"],
        ["--set", "config.WAKE_PORT=9000"],
    ):
        done = run("helm", *template_args(None, *extra), check=False)
        assert done.returncode != 0 and "values don't meet the specifications of the schema" in done.stderr, (
            extra
        )


def test_a_pdb_that_would_block_drains_is_refused() -> None:
    done = run("helm", *template_args(None, "--set", "gateway.pdb.minAvailable=2"), check=False)
    assert done.returncode != 0 and "would block every node drain" in done.stderr
    hpa = [
        "--set",
        "gateway.hpa.enabled=true",
        "--set",
        "gateway.hpa.minReplicas=2",
        "--set",
        "gateway.pdb.minAvailable=2",
    ]
    assert run("helm", *template_args(None, *hpa), check=False).returncode != 0
    assert (
        one(render(None, "--set", "gateway.pdb.minAvailable=1"), "PodDisruptionBudget", "-gateway")["spec"][
            "minAvailable"
        ]
        == 1
    )


def test_minimal_set_has_no_network_policies_and_a_redis_without_a_password() -> None:
    objects = render("minimal")
    assert not find(objects, "NetworkPolicy") and not find(objects, "PodDisruptionBudget")
    redis = one(objects, "StatefulSet", "-redis")["spec"]["template"]["spec"]["containers"][0]
    assert redis["command"] == ["redis-server", "/etc/redis/redis.conf"]
    assert "include" not in one(objects, "ConfigMap", "-redis")["data"]["redis.conf"]


def test_network_policies_close_redis_to_all_but_the_gateway_and_worker() -> None:
    policy = one(render(), "NetworkPolicy", "-redis")
    sources = [
        peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
        for peer in policy["spec"]["ingress"][0]["from"]
    ]
    assert sources == ["gateway", "worker"] and policy["spec"]["egress"] == []
    worker = one(render(), "NetworkPolicy", "-worker")["spec"]
    assert worker["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 9090}]


def test_the_wake_service_leads_from_the_ingress_controller_to_the_gateways() -> None:
    """The worker names the chart's wake Service in each hibernated environment's ExternalName
    Service; that Service reaches the gateways' wake port, which their network policy opens."""

    def env(objects: list[dict[str, Any]], component: str) -> dict[str, Any]:
        container = one(objects, "Deployment", f"-{component}")["spec"]["template"]["spec"]["containers"][0]
        return {e["name"]: e.get("value") for e in container["env"]}

    objects = render("everything", "--set", "wake.port=8090")
    service = one(objects, "Service", "-wake")
    gateway = one(objects, "Deployment", "-gateway")["spec"]["template"]
    assert service["spec"]["selector"].items() <= gateway["metadata"]["labels"].items()
    assert service["spec"]["ports"] == [
        {"name": "wake", "port": 8090, "targetPort": "wake", "protocol": "TCP"}
    ]
    ports = {p["name"]: p["containerPort"] for p in gateway["spec"]["containers"][0]["ports"]}
    assert ports["wake"] == 8090 and env(objects, "gateway")["K8S_EE_WAKE_PORT"] == "8090"
    worker = env(objects, "worker")
    assert worker["K8S_EE_WAKE_SERVICE_HOST"] == f"{service['metadata']['name']}.k8s-ee.svc.cluster.local"
    assert worker["K8S_EE_WAKE_SERVICE_PORT"] == "8090"
    rules = one(objects, "NetworkPolicy", "-gateway")["spec"]["ingress"]
    assert [r for r in rules if r["ports"] == [{"protocol": "TCP", "port": 8090}]]

    off = render(None, "--set", "wake.enabled=false")
    assert not find(off, "Service", "-wake")
    assert env(off, "gateway")["K8S_EE_WAKE_PORT"] == "0"
    assert "K8S_EE_WAKE_SERVICE_HOST" not in env(off, "worker")
    rules = one(off, "NetworkPolicy", "-gateway")["spec"]["ingress"]
    assert all(r["ports"] != [{"protocol": "TCP", "port": 8081}] for r in rules)


def section_variables(*configs: type) -> set[str]:
    """Every K8S_EE_* variable the sections of these process configurations declare."""
    names: set[str] = set()
    for config in configs:
        for section in typing.get_type_hints(config).values():
            names |= {env_name(field) for field in section.model_fields}
    return names


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_variable_the_chart_sets_is_a_setting_of_that_process(value_set: str) -> None:
    """A misspelt variable in a template would be ignored by the process: none is."""
    objects = render(value_set)
    user = {
        f"K8S_EE_{name}"
        for name in yaml.safe_load((VALUES / f"{value_set}.yaml").read_text()).get("config", {}) or {}
    }
    known = {
        # The web section's endpoint secrets are added to WebBase when it is built (WebSettings).
        "gateway": section_variables(GatewaySettings) | {env_name(f) for f in WebSettings.model_fields},
        "worker": section_variables(WorkerConfig) | {env_name(f) for f in HostSettings.model_fields},
    }
    for component, variables in known.items():
        pod = one(objects, "Deployment", f"-{component}")["spec"]["template"]["spec"]
        # Service links would add K8S_EE_GATEWAY_PORT and the like (a release named k8s-ee), which
        # the processes refuse as unknown settings.
        assert pod["enableServiceLinks"] is False
        env = pod["containers"][0]["env"]
        unknown = {e["name"] for e in env} - user - variables
        assert not unknown, f"{component}: {sorted(unknown)}"
    # The worker never holds a webhook secret or the admin token; the gateway no host credential.
    worker = {
        e["name"]
        for e in one(objects, "Deployment", "-worker")["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert not {"K8S_EE_GITHUB_WEBHOOK_SECRET", "K8S_EE_ADMIN_TOKEN", "K8S_EE_GENERIC_TOKEN"} & worker
    gateway = {
        e["name"]
        for e in one(objects, "Deployment", "-gateway")["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert not {"K8S_EE_GITHUB_TOKEN", "K8S_EE_GITHUB_APP_PRIVATE_KEY", "K8S_EE_STATUS_WEBHOOKS"} & gateway


def test_pod_templates_carry_no_trace_of_a_secret_value() -> None:
    """Not the value, and not a hash of it either (a weak secret's hash can be guessed)."""

    def pods(token: str) -> list[Any]:
        objects = render(None, "--set", f"secrets.values.adminToken={token}")
        return [o["spec"]["template"] for o in objects if o["kind"] in ("Deployment", "StatefulSet")]

    assert pods("first-token") == pods("second-token")
    assert "first-token" not in json.dumps(pods("first-token"))
