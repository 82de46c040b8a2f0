"""K8S_EE_STATUS_WEBHOOKS: who is told about state changes, and which ones.

The variable holds a JSON list of `{"url", "secret", "states"?, "repositories"?}`.
A bad entry stops start-up with a message naming the variable, the entry and the
field, never a secret or a URL (a URL may carry a token in its query).

httpx is imported where a URL is parsed, not here: the web process imports this module (through
the worker's settings, whose names its start-up check needs) and never loads httpx.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import hashlib
import json
from typing import Annotated, Protocol

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    SecretStr,
    TypeAdapter,
    ValidationError,
    field_validator,
)
from pydantic_settings import NoDecode

from handlers.keys import Keys
from providers.states import State
from providers.text import ascii_lower

# Standard Webhooks asks for 24 to 64 random bytes; fewer than this is a password, not a key.
MIN_KEY_BYTES = 16


def redact_url(url: str) -> str:
    """The URL without its query (tokens live there): what records, logs and the API show."""
    import httpx

    parsed = httpx.URL(url)
    shown = parsed.copy_with(query=None, fragment=None)
    return str(shown) + ("?…" if parsed.query else "")


class Subscriber(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    secret: SecretStr
    # None: every state. Otherwise only these (an empty list is refused: it would send nothing).
    states: tuple[State, ...] | None = None
    # None: every repository. Otherwise `owner/repo` names or glob patterns (`acme/*`), any case.
    repositories: tuple[str, ...] | None = None

    @field_validator("url")
    @classmethod
    def http_url(cls, value: str) -> str:
        import httpx

        try:
            url = httpx.URL(value)
        except httpx.InvalidURL:
            raise ValueError("is not a valid URL") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("must be an http:// or https:// URL with a host")
        if url.userinfo:
            raise ValueError("must not carry a user or password: receivers authenticate us by the signature")
        if url.fragment:
            raise ValueError("must not have a #fragment")
        return value

    @field_validator("secret")
    @classmethod
    def usable_key(cls, value: SecretStr) -> SecretStr:
        raw = value.get_secret_value().encode()
        if raw.startswith(b"whsec_"):
            try:
                key = base64.b64decode(raw[len(b"whsec_") :], validate=True)
            except binascii.Error:
                raise ValueError("starts with whsec_ but the rest is not base64") from None
        else:
            key = raw
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(
                f"is shorter than {MIN_KEY_BYTES} bytes (use whsec_ + base64 of 24 to 64 random bytes)"
            )
        return value

    @field_validator("states", "repositories")
    @classmethod
    def not_empty(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None and not value:
            raise ValueError("is empty, so nothing would be sent: leave it out to send everything")
        return value

    @field_validator("repositories")
    @classmethod
    def owner_and_name(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        for pattern in value:
            if "/" not in pattern.strip("/"):
                raise ValueError(f"{pattern!r} is not 'owner/repo' or a pattern like 'owner/*'")
        return tuple(ascii_lower(p.strip("/")) for p in value)

    @property
    def key(self) -> str:
        """Names this subscriber in delivery records without its URL or secret."""
        return hashlib.sha256(self.url.encode()).hexdigest()[:16]

    @property
    def shown_url(self) -> str:
        return redact_url(self.url)

    def wants(self, repository: str, state: State) -> bool:
        if self.states is not None and state not in self.states:
            return False
        if self.repositories is None:
            return True
        name = ascii_lower(repository)
        # fnmatchcase: the patterns were lowercased above; `*` also spans GitLab's subgroups.
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.repositories)


_subscribers = TypeAdapter(list[Subscriber])


def _describe(error: object) -> str:
    assert isinstance(error, dict)
    where = ", ".join(f"entry {part}" if isinstance(part, int) else str(part) for part in error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def parse_subscribers(value: object) -> list[Subscriber]:
    """The variable's JSON, validated here so that the message can say which entry and field is wrong."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
            ) from None
    try:
        subscribers = _subscribers.validate_python(value)
    except ValidationError as exc:
        # Only locations and messages: the errors' inputs would show secrets.
        raise ValueError("; ".join(_describe(e) for e in exc.errors())) from None
    seen: set[str] = set()
    for index, subscriber in enumerate(subscribers):
        if subscriber.key in seen:
            raise ValueError(f"entry {index}: url appears twice (merge the entries' filters instead)")
        seen.add(subscriber.key)
    return subscribers


Subscribers = Annotated[list[Subscriber], NoDecode, BeforeValidator(parse_subscribers)]


# What the status webhooks read of the worker's configuration (handlers.settings.WorkerConfig
# has all of it). Described here rather than imported: handlers.settings imports this module.


class Subscribed(Protocol):
    @property
    def status_webhooks(self) -> list[Subscriber]: ...

    @property
    def status_webhooks_allow_private(self) -> bool: ...

    @property
    def status_webhooks_retry_hours(self) -> float: ...


class Queued(Protocol):
    @property
    def queue_name(self) -> str: ...


class WebhookConfig(Protocol):
    @property
    def worker(self) -> Subscribed: ...

    @property
    def connection(self) -> Queued: ...

    @property
    def keys(self) -> Keys: ...
