"""Label and field selectors as the real API server parses them in list calls."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from .status import bad_request
from .validation import label_key_error, label_value_error

Predicate = Callable[[Mapping[str, str]], bool]

_SET = re.compile(r"^(?P<key>[^\s!=<>(),]+)\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)$")
_EQUALITY = re.compile(r"^(?P<key>[^\s!=<>(),]+)\s*(?P<op>==|=|!=)\s*(?P<value>[^\s!=<>(),]*)$")
_ORDER = re.compile(r"^(?P<key>[^\s!=<>(),]+)\s*(?P<op>[<>])\s*(?P<value>-?[0-9]+)$")
_EXISTS = re.compile(r"^(?P<not>!?)\s*(?P<key>[^\s!=<>(),]+)$")

# Fields every kind can be selected on, plus the few extra ones the real server accepts per kind.
_COMMON_FIELDS = ("metadata.name", "metadata.namespace")
_KIND_FIELDS: dict[str, tuple[str, ...]] = {
    "Namespace": ("status.phase",),
    "Pod": ("status.phase", "spec.nodeName", "spec.restartPolicy"),
    "Secret": ("type",),
}


def _split(selector: str) -> list[str]:
    """Split on the commas that separate requirements, not the ones inside `in (a,b)`."""
    parts: list[str] = []
    depth = 0
    current = ""
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [part.strip() for part in parts if part.strip()]


def _check(selector: str, key: str, values: list[str]) -> None:
    problem = label_key_error(key) or next(filter(None, (label_value_error(v) for v in values)), None)
    if problem:
        raise bad_request(
            f"unable to parse requirement: values[0][{key}]: Invalid value: {selector!r}: {problem}"
        )


def _requirement(part: str) -> Predicate:
    if match := _SET.match(part):
        key, op = match["key"], match["op"]
        values = {v.strip() for v in match["values"].split(",") if v.strip()}
        if not values:
            raise bad_request(
                f"unable to parse requirement: {part!r}: "
                "for 'in', 'notin' operators, values set can't be empty"
            )
        _check(part, key, sorted(values))
        if op == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    if match := _EQUALITY.match(part):
        key, op, value = match["key"], match["op"], match["value"]
        _check(part, key, [value])
        if op == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: key in labels and labels[key] == value
    if match := _ORDER.match(part):
        key, op, bound = match["key"], match["op"], int(match["value"])
        _check(part, key, [])

        def ordered(labels: Mapping[str, str]) -> bool:
            try:
                number = int(labels[key])
            except (KeyError, ValueError):
                return False
            return number > bound if op == ">" else number < bound

        return ordered
    if match := _EXISTS.match(part):
        key = match["key"]
        _check(part, key, [])
        if match["not"]:
            return lambda labels: key not in labels
        return lambda labels: key in labels
    raise bad_request(
        f"unable to parse requirement: found {part!r}, expected: a valid label selector requirement"
    )


def label_selector(selector: str | None) -> Predicate:
    """Parse a label selector; the result is true for the label sets it selects."""
    requirements = [_requirement(part) for part in _split(selector or "")]
    return lambda labels: all(requirement(labels) for requirement in requirements)


def _field_value(obj: Mapping[str, Any], path: str) -> str:
    node: Any = obj
    for step in path.split("."):
        node = node.get(step) if isinstance(node, Mapping) else None
    return "" if node is None else str(node)


def field_selector(selector: str | None, kind: str) -> Callable[[Mapping[str, Any]], bool]:
    """Parse a field selector (`metadata.name=x,status.phase!=Active`) for objects of `kind`."""
    allowed = _COMMON_FIELDS + _KIND_FIELDS.get(kind, ())
    checks: list[tuple[str, bool, str]] = []
    for part in _split(selector or ""):
        match = re.match(r"^(?P<field>[A-Za-z.]+)\s*(?P<op>==|=|!=)\s*(?P<value>.*)$", part)
        if not match:
            raise bad_request(f"invalid selector: {part!r}; can't understand")
        if match["field"] not in allowed:
            raise bad_request(f"field label not supported: {match['field']}")
        checks.append((match["field"], match["op"] != "!=", match["value"].strip()))

    def selects(obj: Mapping[str, Any]) -> bool:
        return all((_field_value(obj, field) == value) is equal for field, equal, value in checks)

    return selects
