"""The command line's settings: where the gateway is, and the gateway's own secrets it signs or registers with.

The command line section declares only `K8S_EE_GATEWAY_URL`; the admin token, the generic
trigger's token and secret and the webhook secrets are the web section's (gateway/settings.py),
read from the same variables the gateway reads, so one environment serves both.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from pydantic import field_validator

from gateway.settings import WebBase, WebSettings
from providers.settings import Section, load_sections


class CliSettings(Section):
    # The gateway's base URL (`https://gateway.example.com`): its admin API and generic trigger,
    # and the webhook URLs `hooks` registers (`{gateway_url}/webhooks/{provider}`).
    gateway_url: str | None = None

    @field_validator("gateway_url")
    @classmethod
    def http_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL")
        return value.strip().rstrip("/")


@dataclass(frozen=True, slots=True)
class Settings:
    cli: CliSettings
    web: WebBase

    def first(self, setting: str) -> str | None:
        """The first value of one of the gateway's comma-separated secrets (the one in use; the
        others are old values kept during a rotation)."""
        values = self.web.secret_values(setting)
        return values[0].decode() if values else None


def load_settings() -> Settings:
    sections = load_sections({"cli": CliSettings, "web": WebSettings}, {})
    return Settings(**sections)  # type: ignore[arg-type]
