"""The four webhook endpoints, each bound to its adapter(s) and its configured secrets.

A `Source` is what the web layer calls: verify, then pick the adapter that reads
the delivery. The adapters themselves are sans-I/O (see `providers/`).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from gateway.events import Provider
from gateway.settings import Settings
from gateway.verdicts import Outcome, Refusal, unauthorized
from providers import bitbucket, bitbucket_cloud, bitbucket_server, generic, github, gitlab

Headers = Mapping[str, str]
Parse = Callable[[Headers, bytes, str, datetime], Outcome]
DeliveryId = Callable[[Headers], str | None]

logger = logging.getLogger("k8s_ee.gateway")

# Longer ids are refused rather than stored: they are keys in Redis.
MAX_DELIVERY_ID = 200

SETTING_NAMES = {
    Provider.GITHUB: "K8S_EE_GITHUB_WEBHOOK_SECRET",
    Provider.GITLAB: "K8S_EE_GITLAB_WEBHOOK_TOKEN or K8S_EE_GITLAB_SIGNING_TOKEN",
    Provider.BITBUCKET_CLOUD: "K8S_EE_BITBUCKET_WEBHOOK_SECRET",
    Provider.BITBUCKET_SERVER: "K8S_EE_BITBUCKET_WEBHOOK_SECRET",
    Provider.GENERIC: "K8S_EE_GENERIC_TOKEN or K8S_EE_GENERIC_SECRET",
}
INSECURE_NAMES = {
    Provider.GITHUB: "K8S_EE_GITHUB_INSECURE",
    Provider.GITLAB: "K8S_EE_GITLAB_INSECURE",
    Provider.BITBUCKET_CLOUD: "K8S_EE_BITBUCKET_INSECURE",
    Provider.BITBUCKET_SERVER: "K8S_EE_BITBUCKET_INSECURE",
    Provider.GENERIC: "K8S_EE_GENERIC_INSECURE",
}


@dataclass(frozen=True, slots=True)
class Adapter:
    provider: Provider
    delivery_id: DeliveryId
    parse: Parse


@dataclass(frozen=True, slots=True)
class Source:
    name: str
    # The provider this endpoint's deliveries are logged under before the adapter is known.
    provider: Provider
    _verify: Callable[[Headers, bytes, float], None]
    _choose: Callable[[Headers], Adapter]
    configured: bool
    insecure: bool

    def verify(self, headers: Headers, body: bytes, now: float) -> None:
        if self.configured:
            self._verify(headers, body, now)
        elif not self.insecure:
            raise unauthorized(
                f"no secret is configured for {self.name} deliveries: set {SETTING_NAMES[self.provider]}"
            )

    def adapter(self, headers: Headers) -> Adapter:
        return self._choose(headers)

    def guess_delivery_id(self, headers: Headers) -> str | None:
        """The delivery id the headers carry, before anything is verified (for the log only)."""
        try:
            found = self._choose(headers).delivery_id(headers)
        except Refusal:
            return None
        return found if found and len(found) <= MAX_DELIVERY_ID and found.isprintable() else None

    def guess_provider(self, headers: Headers) -> Provider:
        """For logging a refused delivery: the adapter's provider if the headers tell it."""
        try:
            return self._choose(headers).provider
        except Refusal:
            return self.provider


def fallback_delivery_id(provider: Provider, body: bytes) -> str:
    """For senders that give no delivery id: the same body from the same provider is the same delivery."""
    return "sha256-" + hashlib.sha256(provider.value.encode() + b"\0" + body).hexdigest()[:40]


def build_sources(settings: Settings) -> dict[str, Source]:
    def secrets(provider: Provider) -> dict[str, tuple[bytes, ...]]:
        return settings.secrets_for(provider)

    gh = secrets(Provider.GITHUB)
    gl = secrets(Provider.GITLAB)
    bb = secrets(Provider.BITBUCKET_CLOUD)
    ge = secrets(Provider.GENERIC)

    def only(adapter: Adapter) -> Callable[[Headers], Adapter]:
        return lambda _headers: adapter

    cloud = Adapter(Provider.BITBUCKET_CLOUD, bitbucket_cloud.delivery_id, bitbucket_cloud.parse)
    server = Adapter(Provider.BITBUCKET_SERVER, bitbucket_server.delivery_id, bitbucket_server.parse)

    def bitbucket_adapter(headers: Headers) -> Adapter:
        return cloud if bitbucket.flavour(headers) == Provider.BITBUCKET_CLOUD else server

    return {
        "github": Source(
            "github",
            Provider.GITHUB,
            lambda h, b, now: github.verify(h, b, gh["secrets"]),
            only(Adapter(Provider.GITHUB, github.delivery_id, github.parse)),
            configured=bool(gh["secrets"]),
            insecure=settings.github_insecure,
        ),
        "gitlab": Source(
            "gitlab",
            Provider.GITLAB,
            lambda h, b, now: gitlab.verify(h, b, gl["tokens"], gl["signing_tokens"], now),
            only(Adapter(Provider.GITLAB, gitlab.delivery_id, gitlab.parse)),
            configured=bool(gl["tokens"] or gl["signing_tokens"]),
            insecure=settings.gitlab_insecure,
        ),
        "bitbucket": Source(
            "bitbucket",
            Provider.BITBUCKET_CLOUD,
            lambda h, b, now: bitbucket.verify(h, b, bb["secrets"]),
            bitbucket_adapter,
            configured=bool(bb["secrets"]),
            insecure=settings.bitbucket_insecure,
        ),
        "generic": Source(
            "generic",
            Provider.GENERIC,
            lambda h, b, now: generic.verify(h, b, ge["tokens"], ge["secrets"], now),
            only(Adapter(Provider.GENERIC, generic.delivery_id, generic.parse)),
            configured=bool(ge["tokens"] or ge["secrets"]),
            insecure=settings.generic_insecure,
        ),
    }


def warn_insecure(sources: Mapping[str, Source]) -> None:
    for source in sources.values():
        if source.insecure and not source.configured:
            logger.warning(
                "%s deliveries are accepted WITHOUT verification (%s=true); never do this in production",
                source.name,
                INSECURE_NAMES[source.provider],
            )
