"""The lifecycle's settings and k8s-ee.yaml's `hibernation.after`: durations as people write them."""

from __future__ import annotations

import pytest

from handlers.config import ConfigError, config_from_mapping
from handlers.durations import describe, parse_duration
from handlers.lifecycle.wake_watch import deployment_ready
from handlers.settings import load_worker_config
from providers.settings import SettingsError


def test_durations() -> None:
    assert parse_duration("4h") == 14400.0
    assert parse_duration("10m") == 600.0
    assert parse_duration("7d") == 604800.0
    assert parse_duration("90") == parse_duration("90s") == 90.0
    assert parse_duration(" 2H ") == 7200.0
    for bad in ("4 hours", "-1h", "h", "1e9999", True):
        with pytest.raises(ValueError):
            parse_duration(bad)
    assert describe(14400) == "4 h" and describe(604800) == "7 days" and describe(1800) == "30 min"


def test_the_defaults_and_a_bad_value_named_never_shown() -> None:
    lifecycle = load_worker_config().lifecycle
    assert (lifecycle.hibernate_after, lifecycle.ttl) == (4 * 3600, 7 * 86400)
    assert (lifecycle.sweep_interval, lifecycle.resync_interval) == (600, 600)
    assert lifecycle.activity_prometheus_url is None and lifecycle.wake_service_host is None
    with pytest.raises(SettingsError) as caught:
        load_worker_config(hibernate_after="four-hours-secret", sweep_interval="0.5s")
    message = str(caught.value)
    assert "K8S_EE_HIBERNATE_AFTER" in message and "K8S_EE_SWEEP_INTERVAL" in message
    assert "four-hours-secret" not in message
    with pytest.raises(SettingsError, match="K8S_EE_RESYNC_REPOSITORIES"):
        load_worker_config(resync_repositories="nowhere:acme/web")
    assert load_worker_config(
        resync_repositories="github:acme/web, gitlab:a/b/c"
    ).lifecycle.resync_repositories == [
        "github:acme/web",
        "gitlab:a/b/c",
    ]


def test_a_repository_sets_its_own_idle_time_within_bounds() -> None:
    assert (
        config_from_mapping({"projectId": "a", "hibernation": {"after": "30m"}}).hibernation.after_seconds
        == 1800
    )
    assert config_from_mapping({"projectId": "a"}).hibernation.after_seconds is None
    for value, message in (("4m", "between 5m and 7d"), ("8d", "between 5m and 7d"), ("2w", "must match")):
        with pytest.raises(ConfigError, match=message):
            config_from_mapping({"projectId": "a", "hibernation": {"after": value}})


def test_a_deployment_is_ready_when_its_controller_says_every_replica_is() -> None:
    def deployment(replicas: int, **status: int) -> dict:
        return {"metadata": {"generation": 2}, "spec": {"replicas": replicas}, "status": status}

    assert deployment_ready(None) == (False, "the app's Deployment is missing")
    assert not deployment_ready(deployment(0))[0]
    assert not deployment_ready(deployment(1, observedGeneration=1, readyReplicas=1, updatedReplicas=1))[0]
    assert not deployment_ready(deployment(2, observedGeneration=2, readyReplicas=1, updatedReplicas=2))[0]
    assert not deployment_ready(deployment(1, observedGeneration=2, readyReplicas=1, updatedReplicas=0))[0]
    assert deployment_ready(deployment(2, observedGeneration=2, readyReplicas=2, updatedReplicas=2)) == (
        True,
        "app 2/2 ready",
    )
