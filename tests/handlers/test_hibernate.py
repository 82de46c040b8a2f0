"""Hibernation scales what runs to zero and keeps every object (and so the data)."""

from __future__ import annotations

from datetime import UTC, datetime

from handlers.config import config_from_mapping
from handlers.hibernate import CNPG_HIBERNATION, hibernate
from handlers.render import RenderSettings, RenderTarget, new_password, render_environment, required_passwords
from providers.events import Provider


def rendered() -> list[dict]:
    config = config_from_mapping({"projectId": "web", "databases": {"postgresql": True, "redis": True}})
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
