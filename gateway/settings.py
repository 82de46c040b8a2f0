"""The web process's configuration: the connection section (shared with the worker) and the web section.

Environment variables prefixed `K8S_EE_`. A bad value stops start-up with a message naming
the variable (see `load_gateway_settings`). Secrets are `SecretStr`, so they never print;
every secret setting takes several comma-separated values, so a secret can be rotated
without downtime. The webhook secrets and insecure switches are the endpoints' own
(gateway/endpoints.py): the web section takes them from that table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Self, cast

from pydantic import Field, SecretStr, create_model, field_validator, model_validator

from gateway.endpoints import ENDPOINTS
from handlers.connection import ConnectionSettings
from handlers.keys import Keys
from providers.settings import NameList, SecretList, Section, load_sections, split_commas


class WebBase(Section):
    """The web section's own fields; `WebSettings` adds each endpoint's secrets and insecure switch."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    access_log: bool = False

    admin_token: SecretList = []

    allowlist_mode: Literal["allowlist", "denylist", "disabled"] = "disabled"
    allowlist_organizations: NameList = []
    allowlist_repositories: NameList = []

    max_body_bytes: int = Field(5 * 1024 * 1024, ge=1024, le=25 * 1024 * 1024)
    # Seconds to receive a body once its headers are in; code hosts give up after 10 s anyway.
    body_read_timeout: float = Field(10.0, gt=0, le=300)
    # Body bytes the process holds at once, across all requests; beyond it, 503 + Retry-After.
    max_body_bytes_in_flight: int = Field(32 * 1024 * 1024, ge=1024, le=4 * 1024 * 1024 * 1024)
    delivery_log_max_entries: int = Field(100_000, ge=100)
    delivery_bodies_max: int = Field(10_000, ge=0)

    @field_validator("admin_token", "allowlist_organizations", "allowlist_repositories", mode="before")
    @classmethod
    def split_commas(cls, value: object) -> object:
        return split_commas(value)

    @field_validator("allowlist_repositories")
    @classmethod
    def repositories_have_owner(cls, value: list[str]) -> list[str]:
        for name in value:
            if "/" not in name.strip("/"):
                raise ValueError(f"{name!r} is not 'owner/repo'")
        return value

    @model_validator(mode="after")
    def one_body_fits_in_flight(self) -> Self:
        if self.max_body_bytes_in_flight < self.max_body_bytes:
            raise ValueError(
                "K8S_EE_MAX_BODY_BYTES_IN_FLIGHT must be at least K8S_EE_MAX_BODY_BYTES (one whole body)"
            )
        return self

    def secret_values(self, setting: str) -> tuple[bytes, ...]:
        """An endpoint secret's configured values, as bytes for the HMAC and token checks."""
        values: list[SecretStr] = getattr(self, setting)
        return tuple(v.get_secret_value().encode() for v in values)

    def insecure(self, setting: str) -> bool:
        return bool(getattr(self, setting))


def _endpoint_fields() -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for endpoint in ENDPOINTS:
        for secret in endpoint.secrets:
            fields[secret.setting] = (SecretList, Field([], description=secret.help))
        fields[endpoint.insecure] = (bool, Field(False, description=f"accept {endpoint.name} unverified"))
    return fields


def _split_secrets(cls: type, value: object) -> object:
    return split_commas(value)


# The web section: the fields above, and each endpoint's secrets and insecure switch.
WebSettings = cast(
    type[WebBase],
    create_model(
        "WebSettings",
        __base__=WebBase,
        __validators__={
            "split_secrets": field_validator(
                *(secret.setting for endpoint in ENDPOINTS for secret in endpoint.secrets), mode="before"
            )(_split_secrets)
        },
        **_endpoint_fields(),
    ),
)


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    connection: ConnectionSettings
    web: WebBase

    @property
    def keys(self) -> Keys:
        return self.connection.keys


def load_gateway_settings(**overrides: object) -> GatewaySettings:
    """Read both sections; `SettingsError` names each bad variable, never its value."""
    sections = load_sections({"connection": ConnectionSettings, "web": WebSettings}, overrides)
    return GatewaySettings(**sections)  # type: ignore[arg-type]
