"""Settings are sections, each declared once, every field reachable from the environment."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.cli.settings import CliSettings
from gateway.cli.variables import process_sections
from gateway.endpoints import ENDPOINTS
from gateway.settings import WebSettings, load_gateway_settings
from handlers.connection import ConnectionSettings
from handlers.render.models import RenderSettings
from handlers.settings import WorkerSettings, load_worker_config
from providers.hosts.settings import HostSettings
from providers.settings import SettingsError

# A value other than the default for every render setting, as the environment spells it,
# and what the setting then holds.
RENDER_VALUES: dict[str, tuple[str, Any]] = {
    "preview_domain": ("previews.example.org", "previews.example.org"),
    "ingress_class": ("nginx", "nginx"),
    "ingress_annotations": ("a.example/x=1,b=two", {"a.example/x": "1", "b": "two"}),
    "ingress_tls_secret": ("tls-{namespace}", "tls-{namespace}"),
    "ingress_controller_namespace": ("ingress-nginx", "ingress-nginx"),
    "ingress_controller_labels": ("app=nginx", {"app": "nginx"}),
    "observability_namespace": ("monitoring", "monitoring"),
    "prometheus_labels": ("app=prom", {"app": "prom"}),
    "service_monitor_labels": ("release=kube-prometheus", {"release": "kube-prometheus"}),
    "dns_namespace": ("dns-system", "dns-system"),
    "node_local_dns": ("169.254.20.10", "169.254.20.10"),
    "egress_except": ("10.0.0.0/8, 169.254.0.0/16", ("10.0.0.0/8", "169.254.0.0/16")),
    "pod_security_enforce": ("restricted", "restricted"),
    "pod_security_warn": ("baseline", "baseline"),
    "pod_security_audit": ("privileged", "privileged"),
    "pod_security_version": ("v1.30", "v1.30"),
    "kubernetes_version": ("v1.29.6", "1.29"),
    "api_server_cidrs": ("10.0.0.1/32, 10.0.0.2/32", ("10.0.0.1/32", "10.0.0.2/32")),
    "api_server_ports": ("6443", (6443,)),
    "cnpg_operator_namespace": ("cnpg", "cnpg"),
    "minio_operator_namespace": ("minio", "minio"),
    "image_registry": ("registry.example.org/team", "registry.example.org/team"),
    "wait_image": ("busybox:1.37", "busybox:1.37"),
    "dashboard_url": ("https://grafana.example.org/d/x", "https://grafana.example.org/d/x"),
    "mongodb_cluster_role": ("previews-mongodb-agent", "previews-mongodb-agent"),
}


def test_every_render_setting_is_covered_here() -> None:
    assert set(RENDER_VALUES) == set(RenderSettings.model_fields)


@pytest.mark.parametrize("field", sorted(RENDER_VALUES))
def test_every_render_setting_is_read_from_the_environment(
    field: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    text, expected = RENDER_VALUES[field]
    monkeypatch.setenv(f"K8S_EE_{field.upper()}", text)
    render = load_worker_config().render
    assert getattr(render, field) == expected
    assert RenderSettings.model_fields[field].get_default(call_default_factory=True) != expected


def test_no_field_is_declared_by_two_sections() -> None:
    sections = [*process_sections(), CliSettings]
    assert {ConnectionSettings, WebSettings, WorkerSettings, RenderSettings, HostSettings} <= set(sections)
    seen: dict[str, str] = {}
    for section in sections:
        for field in section.model_fields:
            assert field not in seen, f"{field} is in {seen.get(field)} and {section.__name__}"
            seen[field] = section.__name__


def test_command_and_admission_settings_are_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in {
        "MAX_ENVIRONMENTS": "5",
        "MAX_ENVIRONMENTS_PER_REPOSITORY": "2",
        "ADMISSION_COUNT_HIBERNATED": "true",
        "ADMISSION_QUEUE_SIZE": "7",
        "PERMISSION_CACHE_SECONDS": "5",
        "PRESERVE_HOURS": "24",
        "PRESERVE_MAX_HOURS": "72",
        "MAX_PRESERVED_PER_REPOSITORY": "1",
    }.items():
        monkeypatch.setenv(f"K8S_EE_{name}", value)
    config = load_worker_config()
    assert (config.admission.max_environments, config.admission.max_environments_per_repository) == (5, 2)
    assert config.admission.admission_count_hibernated and config.admission.admission_queue_size == 7
    assert config.commands.permission_cache_seconds == 5 and config.commands.preserve_hours == 24
    assert config.commands.preserve_max_hours == 72 and config.commands.max_preserved_per_repository == 1
    monkeypatch.setenv("K8S_EE_PRESERVE_HOURS", "100")
    with pytest.raises(SettingsError, match="K8S_EE_PRESERVE_HOURS"):
        load_worker_config()


def test_the_worker_holds_no_webhook_secret_and_no_admin_token() -> None:
    config = load_worker_config()
    held = {
        field
        for section in (config.connection, config.worker, config.render)
        for field in type(section).model_fields
    }
    secrets = {secret.setting for endpoint in ENDPOINTS for secret in endpoint.secrets}
    assert not held & (secrets | {"admin_token"})
    with pytest.raises(TypeError, match="github_webhook_secret"):
        load_worker_config(github_webhook_secret="x")


def test_each_endpoint_row_gives_the_web_section_its_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for endpoint in ENDPOINTS:
        for secret in endpoint.secrets:
            monkeypatch.setenv(f"K8S_EE_{secret.setting.upper()}", f"{secret.setting}-1, {secret.setting}-2")
        monkeypatch.setenv(f"K8S_EE_{endpoint.insecure.upper()}", "true")
    web = load_gateway_settings().web
    for endpoint in ENDPOINTS:
        for secret in endpoint.secrets:
            assert web.secret_values(secret.setting) == (
                f"{secret.setting}-1".encode(),
                f"{secret.setting}-2".encode(),
            )
        assert web.insecure(endpoint.insecure)


def test_a_bad_value_in_each_section_is_named_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("K8S_EE_REDIS_URL", "http://nope")
    monkeypatch.setenv("K8S_EE_MAX_JOBS", "0")
    monkeypatch.setenv("K8S_EE_API_SERVER_CIDRS", "10.0.0.1/8")
    with pytest.raises(SettingsError) as raised:
        load_worker_config()
    message = str(raised.value)
    for name in ("K8S_EE_REDIS_URL", "K8S_EE_MAX_JOBS", "K8S_EE_API_SERVER_CIDRS"):
        assert name in message
    assert "http://nope" not in message


ALL_SECTIONS = (ConnectionSettings, WorkerSettings, RenderSettings, HostSettings, WebSettings)


def enumerated_fields() -> list[tuple[type, str, tuple[str, ...]]]:
    from providers.settings import choices

    return [
        (section, name, choices(field.annotation))
        for section in ALL_SECTIONS
        for name, field in section.model_fields.items()
        if choices(field.annotation)
    ]


def test_the_enumerated_settings_are_found() -> None:
    names = {name for _, name, _ in enumerated_fields()}
    assert {"log_level", "allowlist_mode", "cluster"} <= names


@pytest.mark.parametrize(("section", "name", "allowed"), enumerated_fields())
def test_enumerated_settings_ignore_case(
    monkeypatch: pytest.MonkeyPatch, section: type, name: str, allowed: tuple[str, ...]
) -> None:
    for value in allowed:
        for spelt in (value.lower(), value.upper(), f" {value.title()} "):
            monkeypatch.setenv(f"K8S_EE_{name.upper()}", spelt)
            assert getattr(section(), name) == value
    # ASCII only: the Kelvin sign is not a `k`.
    if any("k" in value for value in allowed):
        value = next(v for v in allowed if "k" in v)
        monkeypatch.setenv(f"K8S_EE_{name.upper()}", value.replace("k", "\u212a"))
        with pytest.raises(Exception, match=name):
            section()


def test_log_level_in_lower_case_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("K8S_EE_LOG_LEVEL", "debug")
    monkeypatch.setenv("K8S_EE_ALLOWLIST_MODE", "AllowList")
    settings = load_gateway_settings()
    assert (settings.connection.log_level, settings.web.allowlist_mode) == ("DEBUG", "allowlist")
    monkeypatch.setenv("K8S_EE_CLUSTER", "Directory")
    assert load_worker_config().worker.cluster == "directory"
