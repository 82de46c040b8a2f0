"""Reading provider payloads: JSON decoding and field access that names what is missing.

An adapter reads a few dozen fields of a body that may hold thousands (GitHub's pull
request payload is 31 KB). `Fields` decodes only those, into the same nested dicts a
full parse gives (absent fields read as null, which `field` and `optional` already treat
alike), at less than half the cost; whatever it cannot decode that way is parsed in full
by `load_json_object`, so every delivery ends exactly as the full parse would have it end.

Every failure here is a 400 whose reason names the field by its dotted path, so that
the sender's "recent deliveries" page says what was wrong: `unreadable` when the body is
not JSON (or form) at all, `Unusable` (verdicts.py) when it is but a field is wrong.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar
from urllib.parse import parse_qs

import msgspec
import orjson
from pydantic import ValidationError
from pydantic_core import PydanticCustomError

from providers.fields import event_time
from providers.verdicts import Outcome, Unusable, bad_request, unreadable, unsupported_media_type

T = TypeVar("T")

# A body with many mistakes gets the first few named, not a reason the size of the body.
_MAX_REPORTED_ERRORS = 5

JSON_TYPES = ("application/json",)
FORM_TYPE = "application/x-www-form-urlencoded"


def media_type(headers: Mapping[str, str]) -> str:
    return headers.get("content-type", "").split(";", 1)[0].strip().lower()


def is_json_media_type(value: str) -> bool:
    return value in JSON_TYPES or (value.startswith("application/") and value.endswith("+json"))


def require_json(headers: Mapping[str, str]) -> None:
    value = media_type(headers)
    if not is_json_media_type(value):
        raise unsupported_media_type(f"Content-Type must be application/json, got {value or 'none'!r}")


def load_json_object(body: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise unreadable(f"body is not valid JSON: {exc.msg} at position {exc.pos}") from None
    if not isinstance(data, dict):
        raise bad_request(f"body must be a JSON object, got {type(data).__name__}")
    return data


def form_payload(body: bytes) -> bytes:
    """GitHub's `application/x-www-form-urlencoded` deliveries carry the JSON in a `payload` field."""
    try:
        fields = parse_qs(body.decode("utf-8"), strict_parsing=False, max_num_fields=16)
    except (UnicodeDecodeError, ValueError) as exc:
        raise unreadable(f"form body could not be decoded: {exc}") from None
    values = fields.get("payload")
    if not values:
        raise bad_request("form body has no 'payload' field")
    return values[0].encode("utf-8")


# What a leaf field may hold. Integers are bounded to int64 (orjson reads those beyond u64 as
# floats; msgspec cannot bound at u64): a larger one fails here, and the full parse reads it as
# orjson does.
_Int = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
_Leaf = str | bool | None | float | _Int | dict[str, Any] | list[Any]


class Fields:
    """A decoder of the fields at `paths` only (dotted, `name[]` for a list of objects), each
    path's leaf taken whole whatever its JSON type, every other field skipped unread.

    `load` gives what `load_json_object` gives, restricted to those paths. It parses in full,
    with `load_json_object`, whatever it cannot decode: a body that is not valid UTF-8 or not
    valid JSON (msgspec does not check the text of skipped fields; orjson refuses it), an
    object on a path that is not an object, an integer outside int64 where one is read, nesting
    deeper than msgspec goes. The one difference left: a number too large for a double in a
    field no adapter reads makes orjson refuse the whole body as unreadable, and is skipped
    here (the delivery is verified, and SPEC 7 says it is not refused for its shape).
    """

    def __init__(self, *paths: str) -> None:
        self.paths = paths
        tree: dict[str, Any] = {}
        for path in paths:
            node = tree
            for part in path.split("."):
                node = node.setdefault(part, {})
        self._decoder = msgspec.json.Decoder(_struct("Fields", tree))

    def load(self, body: bytes) -> dict[str, Any]:
        # Python's UTF-8 check refuses what orjson refuses (invalid bytes, encoded surrogates).
        if body.isascii() or _is_utf8(body):
            try:
                data: dict[str, Any] = msgspec.to_builtins(self._decoder.decode(body))
                return data
            except (msgspec.MsgspecError, RecursionError):
                pass
        return load_json_object(body)


def _is_utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _struct(name: str, tree: dict[str, Any]) -> type[msgspec.Struct]:
    """A Struct of `tree`'s names: a subtree is a nested Struct (or a list of them), a leaf `_Leaf`.

    Field names are generated and renamed to the JSON keys, which need not be identifiers."""
    fields: list[tuple[str, Any, None]] = []
    rename: dict[str, str] = {}
    for index, (key, children) in enumerate(tree.items()):
        is_list = key.endswith("[]")
        json_key = key.removesuffix("[]")
        kind: Any = _Leaf
        if children:
            kind = _struct(f"{name}_{index}", children)
            kind = list[kind] if is_list else kind
            kind = kind | None
        fields.append((f"f{index}", kind, None))
        rename[f"f{index}"] = json_key
    return msgspec.defstruct(name, fields, rename=rename)


# Decoded JSON objects are dicts: checking for `dict` (not the Mapping ABC, several times
# slower) matters here, on every field of every delivery.


def field(data: Mapping[str, Any], path: str, kind: type[T]) -> T:
    """The value at dotted `path`, which must exist and be of `kind`."""
    value: Any = data
    for part in path.split("."):
        value = value.get(part) if type(value) is dict else None
        if value is None:
            raise bad_request(f"missing field {_walked(data, path)}")
    return _check(value, path, kind)


def _walked(data: Mapping[str, Any], path: str) -> str:
    """The path up to its first missing (or null, or non-object) step."""
    value: Any = data
    parts = path.split(".")
    for i, part in enumerate(parts):
        value = value.get(part) if type(value) is dict else None
        if value is None:
            return ".".join(parts[: i + 1])
    return path


def optional(data: Mapping[str, Any], path: str, kind: type[T]) -> T | None:
    """The value at dotted `path`, or None where any step is absent or null."""
    value: Any = data
    for part in path.split("."):
        value = value.get(part) if type(value) is dict else None
        if value is None:
            return None
    return _check(value, path, kind)


def _check(value: Any, path: str, kind: type[T]) -> T:
    # bool is an int in Python; a number field holding true is still wrong.
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise bad_request(f"field {path} must be an integer")
    if not isinstance(value, kind):
        raise bad_request(f"field {path} must be of type {_json_name(kind)}")
    return value


def _json_name(kind: type) -> str:
    return {str: "string", int: "integer", bool: "boolean", dict: "object", list: "array"}.get(
        kind, kind.__name__
    )


def parse_time(value: object, path: str) -> datetime | None:
    """ISO-8601 text (with `Z` or an offset) or epoch milliseconds, as UTC; None when absent.

    A time outside the event's bounds (providers/fields.py) is refused here, by its payload path.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise bad_request(f"field {path} must be a time")
    if isinstance(value, int | float):
        # Bitbucket Data Center sends epoch milliseconds.
        try:
            return within_bounds(datetime.fromtimestamp(value / 1000, tz=UTC), path)
        except (OverflowError, OSError, ValueError):
            raise bad_request(f"field {path} is not a time in epoch milliseconds") from None
    if not isinstance(value, str):
        raise bad_request(f"field {path} must be a time")
    text = value.strip()
    # GitLab's older payloads say "2024-01-02 03:04:05 UTC".
    if text.endswith(" UTC"):
        text = text[:-4] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise bad_request(f"field {path} is not an ISO-8601 time: {value[:40]!r}") from None
    return within_bounds(parsed, path)


def within_bounds(moment: datetime, path: str) -> datetime:
    """`moment` as UTC, or `Unusable` naming `path` when it is outside the event's bounds."""
    try:
        return event_time(moment)
    except PydanticCustomError as exc:
        raise bad_request(f"field {path} {exc.message()}") from None


def branch_from_ref(ref: str) -> str | None:
    """`refs/heads/x` gives `x`; a tag or other ref gives None."""
    prefix = "refs/heads/"
    return ref[len(prefix) :] if ref.startswith(prefix) else None


NULL_SHA = "0" * 40


def describe(exc: ValidationError) -> str:
    """pydantic's errors as one line: `field number: Input should be a valid integer; ...`.

    Input values are left out: the reason is shown and logged, and the body is the sender's.
    """
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    parts = []
    for error in errors[:_MAX_REPORTED_ERRORS]:
        location = ".".join(str(part) for part in error["loc"])
        parts.append(f"field {location}: {error['msg']}" if location else str(error["msg"]))
    if len(errors) > _MAX_REPORTED_ERRORS:
        parts.append(f"and {len(errors) - _MAX_REPORTED_ERRORS} more")
    return "; ".join(parts)


Parse = Callable[[Mapping[str, str], bytes, str, datetime], Outcome]


def adapter(parse: Parse) -> Parse:
    """Marks an adapter's `parse`: a value the event model refuses (providers/fields.py) makes
    the delivery `Unusable`, named by the event's field, like any other field in the wrong shape."""

    @functools.wraps(parse)
    def checked(headers: Mapping[str, str], body: bytes, delivery_id: str, received_at: datetime) -> Outcome:
        try:
            return parse(headers, body, delivery_id, received_at)
        except ValidationError as exc:
            raise Unusable(describe(exc)) from None

    return checked
