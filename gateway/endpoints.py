"""The webhook endpoints: one row per endpoint, naming its secrets, its insecure switch and its adapters.

`ENDPOINTS` is the one place a provider is described to the web process. The web settings
take their secret and insecure variables from it (gateway/settings.py), and `receivers`
binds each row to the secrets configured. A `Receiver` is what the web layer calls:
verify, then pick the adapter that reads the delivery. The adapters themselves are
sans-I/O (see `providers/`).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from providers import bitbucket, bitbucket_cloud, bitbucket_server, generic, github, gitlab
from providers.events import Provider
from providers.settings import env_name
from providers.verdicts import Outcome, Refusal, unauthorized

Headers = Mapping[str, str]
Parse = Callable[[Headers, bytes, str, datetime], Outcome]
DeliveryId = Callable[[Headers], str | None]
# The configured values of an endpoint's secrets, by the name its verify function gives them.
Secrets = Mapping[str, tuple[bytes, ...]]
Verify = Callable[[Headers, bytes, Secrets, float], None]

logger = logging.getLogger("k8s_ee.gateway")

# Longer ids are refused rather than stored: they are keys in Redis.
MAX_DELIVERY_ID = 200


@dataclass(frozen=True, slots=True)
class Adapter:
    provider: Provider
    delivery_id: DeliveryId
    parse: Parse


@dataclass(frozen=True, slots=True)
class Secret:
    """One secret setting of an endpoint: `K8S_EE_<SETTING>`, comma-separated values."""

    kind: str  # what the endpoint's verify function calls it
    setting: str
    help: str


@dataclass(frozen=True, slots=True)
class Endpoint:
    name: str  # POST /webhooks/{name}
    # The provider its deliveries are logged under before the adapter is known.
    provider: Provider
    secrets: tuple[Secret, ...]
    # `K8S_EE_<INSECURE>=true` accepts unverified deliveries while no secret is set.
    insecure: str
    verify: Verify
    choose: Callable[[Headers], Adapter]
    # Other providers whose deliveries come to this endpoint (Data Center's, to `bitbucket`).
    also: tuple[Provider, ...] = ()

    def secret_names(self) -> str:
        return " or ".join(env_name(secret.setting) for secret in self.secrets)


def _only(adapter: Adapter) -> Callable[[Headers], Adapter]:
    return lambda _headers: adapter


_CLOUD = Adapter(Provider.BITBUCKET_CLOUD, bitbucket_cloud.delivery_id, bitbucket_cloud.parse)
_SERVER = Adapter(Provider.BITBUCKET_SERVER, bitbucket_server.delivery_id, bitbucket_server.parse)


def _bitbucket_adapter(headers: Headers) -> Adapter:
    return _CLOUD if bitbucket.flavour(headers) == Provider.BITBUCKET_CLOUD else _SERVER


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        name="github",
        provider=Provider.GITHUB,
        secrets=(Secret("secrets", "github_webhook_secret", "GitHub webhook secret(s)"),),
        insecure="github_insecure",
        verify=lambda h, b, s, now: github.verify(h, b, s["secrets"]),
        choose=_only(Adapter(Provider.GITHUB, github.delivery_id, github.parse)),
    ),
    Endpoint(
        name="gitlab",
        provider=Provider.GITLAB,
        secrets=(
            Secret("tokens", "gitlab_webhook_token", "GitLab secret token(s)"),
            Secret("signing_tokens", "gitlab_signing_token", "GitLab signing token(s), `whsec_…`"),
        ),
        insecure="gitlab_insecure",
        verify=lambda h, b, s, now: gitlab.verify(h, b, s["tokens"], s["signing_tokens"], now),
        choose=_only(Adapter(Provider.GITLAB, gitlab.delivery_id, gitlab.parse)),
    ),
    Endpoint(
        name="bitbucket",
        provider=Provider.BITBUCKET_CLOUD,
        secrets=(Secret("secrets", "bitbucket_webhook_secret", "Bitbucket Cloud / Data Center secret(s)"),),
        insecure="bitbucket_insecure",
        verify=lambda h, b, s, now: bitbucket.verify(h, b, s["secrets"]),
        choose=_bitbucket_adapter,
        also=(Provider.BITBUCKET_SERVER,),
    ),
    Endpoint(
        name="generic",
        provider=Provider.GENERIC,
        secrets=(
            Secret("tokens", "generic_token", "bearer token(s) of the generic trigger"),
            Secret("secrets", "generic_secret", "Standard Webhooks secret(s) of the generic trigger"),
        ),
        insecure="generic_insecure",
        verify=lambda h, b, s, now: generic.verify(h, b, s["tokens"], s["secrets"], now),
        choose=_only(Adapter(Provider.GENERIC, generic.delivery_id, generic.parse)),
    ),
)


def endpoint_for(provider: Provider) -> Endpoint:
    """The endpoint a provider's deliveries are sent to (`POST /webhooks/{name}`)."""
    for endpoint in ENDPOINTS:
        if provider == endpoint.provider or provider in endpoint.also:
            return endpoint
    raise ValueError(f"no endpoint receives {provider.value} deliveries")


@dataclass(frozen=True, slots=True)
class Receiver:
    """An endpoint bound to the secrets configured for it."""

    endpoint: Endpoint
    secrets: Secrets
    insecure: bool

    @property
    def name(self) -> str:
        return self.endpoint.name

    @property
    def provider(self) -> Provider:
        return self.endpoint.provider

    @property
    def configured(self) -> bool:
        return any(self.secrets.values())

    def verify(self, headers: Headers, body: bytes, now: float) -> None:
        if self.configured:
            self.endpoint.verify(headers, body, self.secrets, now)
        elif not self.insecure:
            raise unauthorized(
                f"no secret is configured for {self.name} deliveries: set {self.endpoint.secret_names()}"
            )

    def adapter(self, headers: Headers) -> Adapter:
        return self.endpoint.choose(headers)

    def guess_delivery_id(self, headers: Headers) -> str | None:
        """The delivery id the headers carry, before anything is verified (for the log only)."""
        try:
            found = self.adapter(headers).delivery_id(headers)
        except Refusal:
            return None
        return found if found and len(found) <= MAX_DELIVERY_ID and found.isprintable() else None

    def guess_provider(self, headers: Headers) -> Provider:
        """For logging a refused delivery: the adapter's provider if the headers tell it."""
        try:
            return self.adapter(headers).provider
        except Refusal:
            return self.provider


def fallback_delivery_id(provider: Provider, body: bytes) -> str:
    """For senders that give no delivery id: the same body from the same provider is the same delivery."""
    return "sha256-" + hashlib.sha256(provider.value.encode() + b"\0" + body).hexdigest()[:40]


def receivers(
    secret_values: Callable[[str], tuple[bytes, ...]], insecure: Callable[[str], bool]
) -> dict[str, Receiver]:
    """Every endpoint bound to its configuration: `secret_values(setting)` and `insecure(setting)`
    read the web settings."""
    return {
        endpoint.name: Receiver(
            endpoint,
            {secret.kind: secret_values(secret.setting) for secret in endpoint.secrets},
            insecure(endpoint.insecure),
        )
        for endpoint in ENDPOINTS
    }


def warn_insecure(found: Mapping[str, Receiver]) -> None:
    for receiver in found.values():
        if receiver.insecure and not receiver.configured:
            logger.warning(
                "%s deliveries are accepted WITHOUT verification (%s=true); never do this in production",
                receiver.name,
                env_name(receiver.endpoint.insecure),
            )
