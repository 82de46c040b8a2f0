"""Hibernation scales what runs to zero and keeps every object (and so the data)."""

from __future__ import annotations

from datetime import UTC, datetime

from handlers.config import config_from_mapping
from handlers.hibernate import (
    ANNOTATION_REPLICAS,
    CNPG_HIBERNATION,
    WakeRoute,
    hibernate,
    keeps_running,
    postgres_hibernation,
    restore,
    routed_to_wake,
    with_wake_service,
)
from handlers.render import RenderSettings, RenderTarget, new_password, render_environment, required_passwords
from providers.events import Provider


def rendered(*more: str) -> list[dict]:
    databases = {name: True for name in ("postgresql", "redis", *more)}
    config = config_from_mapping({"projectId": "web", "databases": databases})
    now = datetime(2026, 11, 1, tzinfo=UTC)
    target = RenderTarget(
        provider=Provider.GITHUB,
        repository="acme/web",
        number=3,
        head_sha="a" * 40,
        head_ref="main",
        created_at=now,
        now=now,
    )
    passwords = {name: new_password() for name in required_passwords(config)}
    return render_environment(target, config, RenderSettings(preview_domain="preview.example.com"), passwords)


def test_hibernate_scales_to_zero_and_keeps_everything() -> None:
    awake = rendered()
    asleep = hibernate(awake)
    assert [(m["kind"], m["metadata"]["name"]) for m in asleep] == [
        (m["kind"], m["metadata"]["name"]) for m in awake
    ]
    deployments = [m for m in asleep if m["kind"] == "Deployment"]
    assert len(deployments) == 2 and all(d["spec"]["replicas"] == 0 for d in deployments)
    [cluster] = [m for m in asleep if m["kind"] == "Cluster"]
    assert cluster["metadata"]["annotations"][CNPG_HIBERNATION] == "on"
    # Pure: the input is untouched.
    assert all(m["spec"].get("replicas") != 0 for m in awake if m["kind"] == "Deployment")


ROUTE = WakeRoute("k8s-ee-gateway.k8s-ee.svc.cluster.local", 8081)


def test_replicas_are_kept_and_restored_exactly() -> None:
    awake = rendered()
    asleep = hibernate(awake, replicas={"web-pr-3-app": 3})
    app = next(m for m in asleep if m["metadata"]["name"] == "web-pr-3-app" and m["kind"] == "Deployment")
    assert app["spec"]["replicas"] == 0 and app["metadata"]["annotations"][ANNOTATION_REPLICAS] == "3"
    # Another Deployment keeps its rendered count on record.
    redis = next(m for m in asleep if m["kind"] == "Deployment" and m is not app)
    assert redis["metadata"]["annotations"][ANNOTATION_REPLICAS] == "1"
    woken = restore(awake, {"web-pr-3-app": 3})
    assert next(m for m in woken if m["metadata"]["name"] == "web-pr-3-app")["spec"]["replicas"] == 3
    # Nothing known: the rendered count.
    assert restore(awake, {}) == awake


def test_the_wake_route_is_an_external_name_service_both_controllers_follow() -> None:
    asleep = hibernate(rendered(), route=ROUTE)
    kinds = [(m["kind"], m["metadata"]["name"]) for m in asleep]
    # The Service comes before the Ingress that names it (applied in that order).
    assert kinds.index(("Service", "web-pr-3-wake")) < kinds.index(("Ingress", "web-pr-3-app"))
    service = next(m for m in asleep if m["metadata"]["name"] == "web-pr-3-wake")
    assert service["spec"]["type"] == "ExternalName"
    assert service["spec"]["externalName"] == ROUTE.host
    [port] = service["spec"]["ports"]
    # ingress-nginx uses targetPort, Traefik port: equal; named so Traefik speaks plain HTTP.
    assert port == {"name": "http", "port": 8081, "targetPort": 8081, "protocol": "TCP"}
    ingress = next(m for m in asleep if m["kind"] == "Ingress")
    assert routed_to_wake(ingress)
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]
    assert backend == {"service": {"name": "web-pr-3-wake", "port": {"number": 8081}}}
    # The host itself is untouched (so is TLS): only the backend moves.
    assert ingress["spec"]["rules"][0]["host"] == "web-pr-3.preview.example.com"
    # Awake, with the Service kept: the Ingress is the app's again.
    awake = with_wake_service(rendered(), ROUTE)
    assert not routed_to_wake(next(m for m in awake if m["kind"] == "Ingress"))
    assert any(m["metadata"]["name"] == "web-pr-3-wake" for m in awake)


def test_mongodb_and_minio_keep_running() -> None:
    assert keeps_running(rendered("mongodb", "minio")) == ["MongoDB", "MinIO"]
    asleep = hibernate(rendered("mongodb", "minio"))
    mongo = next(m for m in asleep if m["kind"] == "MongoDBCommunity")
    assert mongo == next(m for m in rendered("mongodb", "minio") if m["kind"] == "MongoDBCommunity")


HEALTHY = "Cluster in healthy state"


def condition(reason: str, status: str) -> dict:
    return {"type": "cnpg.io/hibernation", "status": status, "reason": reason, "message": ""}


def test_cloudnativepg_hibernation_as_its_status_tells_it() -> None:
    # Healthy, not yet acted on: it will hibernate.
    assert postgres_hibernation({"status": {"phase": HEALTHY}}) is None
    # Hibernated, or on its way (the condition exists): whatever the phase says.
    assert (
        postgres_hibernation({"status": {"phase": HEALTHY, "conditions": [condition("Hibernated", "True")]}})
        is None
    )
    deleting = {"status": {"phase": "Setting up primary", "conditions": [condition("DeletingPods", "False")]}}
    assert postgres_hibernation(deleting) is None
    # Not healthy and no condition (older operators), or waiting for health (newer ones): deferred.
    unhealthy = postgres_hibernation({"status": {"phase": "Setting up primary"}})
    assert unhealthy is not None and "Setting up primary" in unhealthy
    waiting = {"status": {"phase": "Failing over", "conditions": [condition("WaitingForHealthy", "False")]}}
    assert "Failing over" in (postgres_hibernation(waiting) or "")
    assert "not reporting a phase" in (postgres_hibernation({}) or "")
