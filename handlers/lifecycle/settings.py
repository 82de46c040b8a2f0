"""The lifecycle section of the worker's settings: idle time, TTL, the sweeps, activity, wake routing."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field, field_validator

from handlers.durations import Duration
from providers.events import Provider
from providers.settings import NameList, Section, split_commas

DAY = 86400.0


def _interval(seconds: float) -> float:
    if 0 < seconds < 1:
        raise ValueError("must be 0 (off) or at least 1 s")
    return seconds


# How often something periodic runs: 0 (off), or from a second to a day.
Interval = Annotated[Duration, Field(le=DAY), AfterValidator(_interval)]


class LifecycleSettings(Section):
    """How environments are hibernated, expired, swept and resynced. Durations read `90s`, `10m`,
    `4h`, `7d` or seconds; 0 switches the thing off where the README says so."""

    # Without activity for this long an environment hibernates (0: never; a repository's
    # `hibernation.after` overrides it).
    hibernate_after: Duration = 4 * 3600.0
    # Without activity for this long an environment is destroyed, unless preserved (0: never).
    ttl: Duration = 7 * DAY
    # How often the sweep runs (TTLs, preserve expiry, namespaces without a record; 0: never).
    sweep_interval: Interval = 600.0
    # How often each repository's open changes are listed on its host (0: never).
    resync_interval: Interval = 600.0
    # `provider:repository` entries always resynced, even before they have an environment (so a
    # repository whose webhooks are off gets its first one).
    resync_repositories: NameList = []
    # A Prometheus that scrapes the ingress controller: its request counters count as activity.
    activity_prometheus_url: str | None = None
    # Where a hibernated environment's Ingress sends its host: the gateway's wake service, as an
    # ExternalName Service names it (`k8s-ee-gateway.k8s-ee.svc.cluster.local`). Unset: no wake
    # on visit (the Ingress keeps pointing at the sleeping app).
    wake_service_host: str | None = None
    wake_service_port: int = Field(8081, ge=1, le=65535)

    @field_validator("resync_repositories", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return split_commas(value)

    @field_validator("resync_repositories")
    @classmethod
    def _repositories(cls, value: list[str]) -> list[str]:
        for entry in value:
            provider, _, repository = entry.partition(":")
            if provider not in {p.value for p in Provider} or "/" not in repository.strip("/"):
                raise ValueError(f"{entry!r} is not provider:owner/repo")
        return value

    @field_validator("activity_prometheus_url", "wake_service_host")
    @classmethod
    def _blank_is_unset(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None

    @field_validator("activity_prometheus_url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/") if value else value
