"""Configuration, from environment variables prefixed `K8S_EE_`.

A bad value stops start-up with a message naming the variable (see `load_settings`).
Secrets are `SecretStr`, so they never print; every secret setting takes several
comma-separated values, so a secret can be rotated without downtime.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from gateway.events import Provider

SecretList = Annotated[list[SecretStr], NoDecode]
NameList = Annotated[list[str], NoDecode]


def _split(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="K8S_EE_", extra="ignore", frozen=True)

    redis_url: str = "redis://127.0.0.1:6379/0"
    # Seconds to wait on Redis before answering 503: well inside the providers' 10 s timeout.
    redis_timeout: float = Field(2.0, gt=0, le=9)
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    access_log: bool = False

    github_webhook_secret: SecretList = []
    gitlab_webhook_token: SecretList = []
    gitlab_signing_token: SecretList = []
    bitbucket_webhook_secret: SecretList = []
    generic_token: SecretList = []
    generic_secret: SecretList = []
    # Accept unauthenticated deliveries for a provider with no secret. For local experiments only.
    github_insecure: bool = False
    gitlab_insecure: bool = False
    bitbucket_insecure: bool = False
    generic_insecure: bool = False

    admin_token: SecretList = []

    allowlist_mode: Literal["allowlist", "denylist", "disabled"] = "disabled"
    allowlist_organizations: NameList = []
    allowlist_repositories: NameList = []

    max_body_bytes: int = Field(5 * 1024 * 1024, ge=1024, le=25 * 1024 * 1024)
    delivery_retention_hours: float = Field(72.0, gt=0)
    delivery_log_max_entries: int = Field(100_000, ge=100)
    delivery_bodies_max: int = Field(10_000, ge=0)
    key_prefix: str = Field("k8s-ee:", min_length=1)
    queue_name: str = Field("k8s-ee:queue", min_length=1)

    @field_validator(
        "github_webhook_secret",
        "gitlab_webhook_token",
        "gitlab_signing_token",
        "bitbucket_webhook_secret",
        "generic_token",
        "generic_secret",
        "admin_token",
        "allowlist_organizations",
        "allowlist_repositories",
        mode="before",
    )
    @classmethod
    def split_commas(cls, value: object) -> object:
        return _split(value)

    @field_validator("allowlist_repositories")
    @classmethod
    def repositories_have_owner(cls, value: list[str]) -> list[str]:
        for name in value:
            if "/" not in name.strip("/"):
                raise ValueError(f"{name!r} is not 'owner/repo'")
        return value

    @model_validator(mode="after")
    def redis_url_scheme(self) -> Settings:
        if not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("K8S_EE_REDIS_URL must start with redis://, rediss:// or unix://")
        return self

    @property
    def retention_ms(self) -> int:
        return int(self.delivery_retention_hours * 3_600_000)

    def secrets_for(self, provider: Provider) -> dict[str, tuple[bytes, ...]]:
        """The configured secrets of one provider, as bytes for the HMAC and token checks."""

        def raw(values: list[SecretStr]) -> tuple[bytes, ...]:
            return tuple(v.get_secret_value().encode() for v in values)

        match provider:
            case Provider.GITHUB:
                return {"secrets": raw(self.github_webhook_secret)}
            case Provider.GITLAB:
                return {
                    "tokens": raw(self.gitlab_webhook_token),
                    "signing_tokens": raw(self.gitlab_signing_token),
                }
            case Provider.BITBUCKET_CLOUD | Provider.BITBUCKET_SERVER:
                return {"secrets": raw(self.bitbucket_webhook_secret)}
            case Provider.GENERIC:
                return {"tokens": raw(self.generic_token), "secrets": raw(self.generic_secret)}

    def insecure(self, provider: Provider) -> bool:
        match provider:
            case Provider.GITHUB:
                return self.github_insecure
            case Provider.GITLAB:
                return self.gitlab_insecure
            case Provider.BITBUCKET_CLOUD | Provider.BITBUCKET_SERVER:
                return self.bitbucket_insecure
            case Provider.GENERIC:
                return self.generic_insecure


class SettingsError(Exception):
    """Start-up refused: names each bad variable, never its value."""


def settings_error(exc: ValidationError, what: str = "configuration") -> SettingsError:
    """One message naming every bad variable; pydantic's messages do not repeat the value."""
    problems = []
    for error in exc.errors():
        name = "K8S_EE_" + str(error["loc"][0]).upper() if error["loc"] else "settings"
        problems.append(f"{name}: {error['msg']}")
    return SettingsError(f"invalid {what}: " + "; ".join(problems))


def load_settings(**overrides: object) -> Settings:
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise settings_error(exc) from None
