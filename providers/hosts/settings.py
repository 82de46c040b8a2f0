"""Credentials and HTTP limits for the worker's calls to the code hosts, from `K8S_EE_*` variables.

A section of its own: the web process never needs these secrets, so it never loads them. A
provider is used only when its credentials are set (see `providers.hosts.build.build_hosts`).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator

from providers.settings import Section, settings_error

_PEM_START = "-----BEGIN"


def _base_url(value: str) -> str:
    value = value.strip().rstrip("/")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL")
    if parts.username or parts.password:
        # Credentials belong in their own variables, where they stay secret.
        raise ValueError("must not carry a user name or password")
    return value


class HostSettings(Section):
    # GitHub or GitHub Enterprise Server (`https://ghe.example.com/api/v3`): a token, or a GitHub App
    # (which wins when both are set).
    github_api_url: str = "https://api.github.com"
    github_token: SecretStr | None = None
    github_app_id: str | None = None
    # PEM text (literal `\n` escapes are accepted), or the path of a PEM file; holds the PEM text once read.
    github_app_private_key: SecretStr | None = None
    # GitHub asks integrators to pace their calls; these are PyGithub's (and GitHub's) defaults.
    github_seconds_between_requests: float = Field(0.25, ge=0, le=10)
    # Writes go through one token bucket per credential, shared by every worker process
    # (providers/hosts/gate.py): `burst` at once (one report's writes), then one per interval.
    github_seconds_between_writes: float = Field(1.0, ge=0, le=60)
    github_write_burst: int = Field(3, ge=1, le=100)

    gitlab_url: str = "https://gitlab.com"
    gitlab_api_token: SecretStr | None = None

    bitbucket_cloud_url: str = "https://api.bitbucket.org"
    # With a user name: HTTP Basic (API token or app password); without: a Bearer access token.
    bitbucket_cloud_username: str | None = None
    bitbucket_cloud_token: SecretStr | None = None

    bitbucket_server_url: str | None = None
    bitbucket_server_token: SecretStr | None = None

    # Every SDK call is bounded: seconds per request, retries of a failed request (connection errors,
    # 429 and 5xx), the first backoff, and the longest wait a host may ask for (Retry-After) before
    # the call gives up with `HostUnavailable` instead of holding a worker.
    host_timeout: float = Field(10.0, gt=0, le=120)
    host_retries: int = Field(2, ge=0, le=10)
    host_retry_backoff: float = Field(0.5, ge=0, le=30)
    host_max_retry_wait: float = Field(10.0, ge=0, le=300)
    # A write that failed without an answer (timeout, 5xx) is not repeated in place: the report
    # job runs again, whole, this many seconds later (it looks for its comment before creating one).
    host_rerun_after: float = Field(30.0, ge=0, le=3600)

    @field_validator("github_api_url", "gitlab_url", "bitbucket_cloud_url", "bitbucket_server_url")
    @classmethod
    def base_urls(cls, value: str | None) -> str | None:
        return None if value is None or not value.strip() else _base_url(value)

    @field_validator("github_app_private_key")
    @classmethod
    def read_private_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        text = value.get_secret_value().strip()
        if not text:
            return None
        if not text.startswith(_PEM_START):
            path = Path(text).expanduser()
            if not path.is_file():
                raise ValueError("must be PEM text or the path of a readable PEM file")
            text = path.read_text().strip()
        if "\n" not in text and "\\n" in text:
            text = text.replace("\\n", "\n")
        if not text.startswith(_PEM_START):
            raise ValueError("is not a PEM private key")
        return SecretStr(text + "\n")

    @field_validator("github_token", "gitlab_api_token", "bitbucket_cloud_token", "bitbucket_server_token")
    @classmethod
    def blank_is_unset(cls, value: SecretStr | None) -> SecretStr | None:
        return value if value is not None and value.get_secret_value().strip() else None

    @model_validator(mode="after")
    def app_is_complete(self) -> HostSettings:
        if bool(self.github_app_id) != bool(self.github_app_private_key):
            raise ValueError("K8S_EE_GITHUB_APP_ID and K8S_EE_GITHUB_APP_PRIVATE_KEY must be set together")
        if self.bitbucket_server_token and not self.bitbucket_server_url:
            raise ValueError("K8S_EE_BITBUCKET_SERVER_TOKEN needs K8S_EE_BITBUCKET_SERVER_URL")
        return self

    @property
    def github_app(self) -> bool:
        return bool(self.github_app_id and self.github_app_private_key)


def load_host_settings(**overrides: object) -> HostSettings:
    """Read the host settings; a bad value raises `SettingsError` naming the variable, never its value."""
    try:
        return HostSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise settings_error(exc, "host configuration") from None
