"""What every settings section shares: the value shapes, loading, and one error message.

Settings come from environment variables prefixed `K8S_EE_`. Each process composes the
sections it needs (the gateway: connection and web; the worker: connection, worker and
render; the host clients their own), and each section is declared once. A bad value stops
start-up with one message naming every bad variable, never its value.
"""

from __future__ import annotations

import enum
import types
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from providers.text import ascii_lower

ENV_PREFIX = "K8S_EE_"

# `hide_input_in_errors`: a rejected value (a mistyped secret, say) is never echoed back.
SECTION_CONFIG = SettingsConfigDict(
    env_prefix=ENV_PREFIX, extra="ignore", frozen=True, hide_input_in_errors=True
)

# Comma-separated in the environment (`NoDecode`: not JSON), so a secret rotates without downtime.
SecretList = Annotated[list[SecretStr], NoDecode]
NameList = Annotated[list[str], NoDecode]
# `a=b,c=d`: labels and annotations in one environment variable.
KeyValues = Annotated[dict[str, str], NoDecode]


def choices(annotation: Any) -> tuple[str, ...]:
    """The values an enumerated setting may take (a `Literal` of strings or a string enum,
    optional or not); empty for any other type."""
    origin = get_origin(annotation)
    if origin is Literal:
        return tuple(arg for arg in get_args(annotation) if isinstance(arg, str))
    if origin in (Union, types.UnionType):
        return tuple(value for arg in get_args(annotation) for value in choices(arg))
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return tuple(member.value for member in annotation if isinstance(member.value, str))
    return ()


class Section(BaseSettings):
    """A settings section. Enumerated settings ignore case and surrounding spaces
    (`K8S_EE_LOG_LEVEL=debug`, `K8S_EE_CLUSTER=Kubernetes`): the value is what is meant,
    whatever the shift key did."""

    model_config = SECTION_CONFIG

    @model_validator(mode="before")
    @classmethod
    def _enumerations_ignore_case(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for name, field in cls.model_fields.items():
            allowed = choices(field.annotation)
            value = data.get(name)
            if not allowed or not isinstance(value, str):
                continue
            wanted = ascii_lower(value.strip())
            data[name] = next((choice for choice in allowed if ascii_lower(choice) == wanted), value)
        return data


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def split_commas(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def key_values(value: object) -> object:
    if not isinstance(value, str):
        return value
    pairs: dict[str, str] = {}
    for item in value.split(","):
        if not item.strip():
            continue
        key, sep, val = item.partition("=")
        if not sep or not key.strip():
            raise ValueError("expected key=value pairs separated by commas")
        pairs[key.strip()] = val.strip()
    return pairs


class SettingsError(Exception):
    """Start-up refused: names each bad variable, never its value."""


def problems(exc: ValidationError) -> list[str]:
    """`K8S_EE_NAME: what is wrong` for each error; pydantic's messages do not repeat the value."""
    found = []
    for error in exc.errors():
        name = env_name(str(error["loc"][0])) if error["loc"] else "settings"
        found.append(f"{name}: {error['msg']}")
    return found


def settings_error(exc: ValidationError, what: str = "configuration") -> SettingsError:
    return SettingsError(f"invalid {what}: " + "; ".join(problems(exc)))


def load_sections(
    sections: Mapping[str, type[BaseSettings]], overrides: Mapping[str, object], what: str = "configuration"
) -> dict[str, BaseSettings]:
    """Read each section from the environment. An override (tests, the command line) goes to the
    section that declares its field; every bad variable of every section is named at once."""
    routed: dict[str, dict[str, object]] = {name: {} for name in sections}
    for field, value in overrides.items():
        owners = [name for name, section in sections.items() if field in section.model_fields]
        if not owners:
            raise TypeError(f"no settings section declares {field!r}")
        for owner in owners:
            routed[owner][field] = value
    built: dict[str, BaseSettings] = {}
    found: list[str] = []
    for name, section in sections.items():
        try:
            built[name] = section(**routed[name])  # type: ignore[arg-type]
        except ValidationError as exc:
            found += problems(exc)
    if found:
        raise SettingsError(f"invalid {what}: " + "; ".join(found))
    return built
