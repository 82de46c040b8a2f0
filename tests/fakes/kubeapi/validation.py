"""The object-metadata checks the real API server answers with 422 Invalid."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .kinds import NameRule, ResourceType
from .status import invalid

_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

_NAME_RULES: dict[NameRule, tuple[re.Pattern[str], int, str]] = {
    "label": (
        _LABEL,
        63,
        "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
        "start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
        "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
    ),
    "subdomain": (
        _SUBDOMAIN,
        253,
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
        "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
        "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
    ),
    "dns1035": (
        _DNS1035,
        63,
        "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
        "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', "
        "regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')",
    ),
}


def name_error(name: str, rule: NameRule) -> str | None:
    pattern, longest, explanation = _NAME_RULES[rule]
    if len(name) > longest:
        return f"must be no more than {longest} characters"
    if not pattern.match(name):
        return explanation
    return None


def label_key_error(key: str) -> str | None:
    """Why `key` is not a valid label or annotation key (`[prefix/]name`), or None."""
    prefix, _, name = key.rpartition("/")
    if "/" in key and not prefix:
        return "prefix part must be non-empty"
    if prefix and name_error(prefix, "subdomain"):
        return "prefix part " + (name_error(prefix, "subdomain") or "")
    if not name:
        return "name part must be non-empty"
    if len(name) > 63:
        return "name part must be no more than 63 characters"
    if not _QUALIFIED_NAME.match(name):
        return (
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
            "with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
            "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
        )
    return None


def label_value_error(value: str) -> str | None:
    if len(value) > 63:
        return "must be no more than 63 characters"
    if not _LABEL_VALUE.match(value):
        return (
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
            "and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or "
            "'12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
        )
    return None


def _cause(field: str, value: object, message: str, reason: str = "FieldValueInvalid") -> dict[str, str]:
    shown = f"Invalid value: {value!r}: " if reason == "FieldValueInvalid" else ""
    return {"reason": reason, "message": shown + message, "field": field}


def _string_map_causes(field: str, value: object, check_values: bool) -> list[dict[str, str]]:
    if value is None:
        return []
    if not isinstance(value, Mapping):
        return [_cause(field, value, "must be a map of string keys to string values")]
    causes: list[dict[str, str]] = []
    for key, item in value.items():
        if problem := label_key_error(str(key)):
            causes.append(_cause(field, key, problem))
        if not isinstance(item, str):
            causes.append(_cause(f"{field}[{key}]", item, "must be a string"))
        elif check_values and (problem := label_value_error(item)):
            causes.append(_cause(f"{field}[{key}]", item, problem))
    return causes


def validate(resource: ResourceType, obj: Mapping[str, Any]) -> None:
    """Raise 422 Invalid for what the real server would refuse in an object's metadata."""
    metadata = obj.get("metadata") or {}
    name = metadata.get("name") or ""
    causes: list[dict[str, str]] = []
    if not name:
        causes.append(_cause("metadata.name", "", "name or generateName is required", "FieldValueRequired"))
    elif problem := name_error(str(name), resource.name_rule):
        causes.append(_cause("metadata.name", name, problem))
    causes += _string_map_causes("metadata.labels", metadata.get("labels"), check_values=True)
    causes += _string_map_causes("metadata.annotations", metadata.get("annotations"), check_values=False)
    finalizers = metadata.get("finalizers")
    if finalizers is not None and (
        not isinstance(finalizers, list) or not all(isinstance(f, str) and f for f in finalizers)
    ):
        causes.append(_cause("metadata.finalizers", finalizers, "must be a list of non-empty strings"))
    if causes:
        raise invalid(resource, str(name), causes)


def check_type(resource: ResourceType, obj: Mapping[str, Any], required: bool) -> None:
    """The body must name the kind and apiVersion of the URL it is sent to (422 otherwise).

    A create or update may leave them out (the server fills them in); an apply must carry them.
    """
    name = str((obj.get("metadata") or {}).get("name") or "")
    causes: list[dict[str, str]] = []
    for field, expected in (("apiVersion", resource.api_version), ("kind", resource.kind)):
        given = obj.get(field)
        if given is None and not required:
            continue
        if given != expected:
            causes.append(_cause(field, given, f"must be {expected!r} for this URL"))
    if causes:
        raise invalid(resource, name, causes)
