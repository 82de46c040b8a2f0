"""The webhook endpoints: one row per endpoint, naming its secrets, its insecure switch and its adapters.

`ENDPOINTS` is the one place a provider is described to the web process: its secrets and
the headers that carry them, how a delivery it cannot use is answered, what a delivery
without an id is, and any check beyond the event model. The web settings take their
secret and insecure variables from it (gateway/settings.py), and `receivers` binds each
row to the secrets configured. A `Receiver` is what the web layer calls: check that a
credential was sent at all (before the body is read), verify, then pick the adapter that
reads the delivery. The adapters themselves are sans-I/O (see `providers/`).
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from handlers.config import ConfigError, config_from_mapping
from providers import bitbucket, bitbucket_cloud, bitbucket_server, generic, github, gitlab
from providers.events import LifecycleEvent, Provider
from providers.fields import MAX_DELIVERY_ID
from providers.settings import env_name
from providers.verdicts import Outcome, Refusal, Unusable, unauthorized

Headers = Mapping[str, str]
Parse = Callable[[Headers, bytes, str, datetime], Outcome]
DeliveryId = Callable[[Headers], str | None]
# The configured values of an endpoint's secrets, by the name its verify function gives them.
Secrets = Mapping[str, tuple[bytes, ...]]
Verify = Callable[[Headers, bytes, Secrets, float], None]

logger = logging.getLogger("k8s_ee.gateway")


def body_hash_id(provider: Provider, body: bytes) -> str:
    """For code hosts that give no delivery id: the same body from the same provider is the same delivery."""
    return "sha256-" + hashlib.sha256(provider.value.encode() + b"\0" + body).hexdigest()[:40]


def fresh_id(provider: Provider, body: bytes) -> str:
    """For commands without an id: each request is its own delivery (deploy, destroy, deploy
    of one body are three commands; the desired state makes a repeated one harmless)."""
    return "req-" + uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class Adapter:
    provider: Provider
    delivery_id: DeliveryId
    parse: Parse
    # The id of a delivery whose headers carry none.
    fallback_id: Callable[[Provider, bytes], str] = body_hash_id


@dataclass(frozen=True, slots=True)
class Secret:
    """One secret setting of an endpoint: `K8S_EE_<SETTING>`, comma-separated values."""

    kind: str  # what the endpoint's verify function calls it
    setting: str
    help: str
    # The request header that carries this credential (its token, or its signature).
    header: str


def _no_check(event: LifecycleEvent) -> None:
    return None


def inline_config(event: LifecycleEvent) -> None:
    """The generic trigger's inline `config` is checked as the worker will check it
    (handlers/config.py, the same messages), so a mistake is a 400 now, not a failure later."""
    if event.config is None:
        return
    try:
        config_from_mapping(event.config)
    except ConfigError as exc:
        raise Unusable(
            "; ".join(
                f"field config.{problem.path}: {problem.message}"
                if problem.path
                else f"field config: {problem.message}"
                for problem in exc.problems[:5]
            )
            + (f"; and {len(exc.problems) - 5} more" if len(exc.problems) > 5 else "")
        ) from None


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
    # How a verified delivery the gateway cannot use is answered: False, 200 `unusable` (a
    # code host disables a hook whose deliveries keep failing, and one odd payload would
    # stop every preview of the repository); True, 400 (a CI's script should fail loudly).
    refuses_unusable: bool = False
    # What an accepted event must also pass (raises `Unusable`).
    check: Callable[[LifecycleEvent], None] = field(default=_no_check)
    # Other providers whose deliveries come to this endpoint (Data Center's, to `bitbucket`).
    also: tuple[Provider, ...] = ()

    def secret_names(self) -> str:
        return " or ".join(env_name(secret.setting) for secret in self.secrets)

    def credential_headers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(secret.header for secret in self.secrets))


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
        secrets=(
            Secret("secrets", "github_webhook_secret", "GitHub webhook secret(s)", github.SIGNATURE_HEADER),
        ),
        insecure="github_insecure",
        verify=lambda h, b, s, now: github.verify(h, b, s["secrets"]),
        choose=_only(Adapter(Provider.GITHUB, github.delivery_id, github.parse)),
    ),
    Endpoint(
        name="gitlab",
        provider=Provider.GITLAB,
        secrets=(
            Secret("tokens", "gitlab_webhook_token", "GitLab secret token(s)", gitlab.TOKEN_HEADER),
            Secret(
                "signing_tokens",
                "gitlab_signing_token",
                "GitLab signing token(s), `whsec_…`",
                gitlab.SIGNATURE_HEADER,
            ),
        ),
        insecure="gitlab_insecure",
        verify=lambda h, b, s, now: gitlab.verify(h, b, s["tokens"], s["signing_tokens"], now),
        choose=_only(Adapter(Provider.GITLAB, gitlab.delivery_id, gitlab.parse)),
    ),
    Endpoint(
        name="bitbucket",
        provider=Provider.BITBUCKET_CLOUD,
        secrets=(
            Secret(
                "secrets",
                "bitbucket_webhook_secret",
                "Bitbucket Cloud / Data Center secret(s)",
                bitbucket.SIGNATURE_HEADER,
            ),
        ),
        insecure="bitbucket_insecure",
        verify=lambda h, b, s, now: bitbucket.verify(h, b, s["secrets"]),
        choose=_bitbucket_adapter,
        also=(Provider.BITBUCKET_SERVER,),
    ),
    Endpoint(
        name="generic",
        provider=Provider.GENERIC,
        secrets=(
            Secret(
                "tokens",
                "generic_token",
                "bearer token(s) of the generic trigger",
                generic.AUTHORIZATION_HEADER,
            ),
            Secret(
                "secrets",
                "generic_secret",
                "Standard Webhooks secret(s) of the generic trigger",
                generic.SIGNATURE_HEADER,
            ),
        ),
        insecure="generic_insecure",
        verify=lambda h, b, s, now: generic.verify(h, b, s["tokens"], s["secrets"], now),
        choose=_only(Adapter(Provider.GENERIC, generic.delivery_id, generic.parse, fresh_id)),
        refuses_unusable=True,
        check=inline_config,
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
    # The headers `precheck` looks for, on every delivery: worked out once.
    expected: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "expected", self.endpoint.credential_headers())

    @property
    def name(self) -> str:
        return self.endpoint.name

    @property
    def provider(self) -> Provider:
        return self.endpoint.provider

    @property
    def configured(self) -> bool:
        return any(self.secrets.values())

    def precheck(self, headers: Headers) -> None:
        """Refuse (401) before the body is read: no secret configured, or no credential header
        of this endpoint's kind at all. An unauthenticated request never costs a body read."""
        if not self.configured:
            if not self.insecure:
                raise unauthorized(
                    f"no secret is configured for {self.name} deliveries: set {self.endpoint.secret_names()}"
                )
            return
        if not any(headers.get(name) for name in self.expected):
            raise unauthorized(f"missing {' or '.join(self.expected)} header")

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


def receivers(
    secret_values: Callable[[str], tuple[bytes, ...]],
    insecure: Callable[[str], bool],
    endpoints: tuple[Endpoint, ...] = ENDPOINTS,
) -> dict[str, Receiver]:
    """Every endpoint bound to its configuration: `secret_values(setting)` and `insecure(setting)`
    read the web settings."""
    return {
        endpoint.name: Receiver(
            endpoint,
            {secret.kind: secret_values(secret.setting) for secret in endpoint.secrets},
            insecure(endpoint.insecure),
        )
        for endpoint in endpoints
    }


def warn_insecure(found: Mapping[str, Receiver]) -> None:
    for receiver in found.values():
        if receiver.insecure and not receiver.configured:
            logger.warning(
                "%s deliveries are accepted WITHOUT verification (%s=true); never do this in production",
                receiver.name,
                env_name(receiver.endpoint.insecure),
            )
