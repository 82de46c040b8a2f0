"""The admin API's paging parameters, read once for every listing.

A listing is newest first, and its cursor is `<score>:<member>` of the last entry a page
showed. A parameter that is not one this API would write (`cursor=nan`, `limit=abc`) is a
`BadParameter`, answered 400 naming it, and never reaches Redis (which would refuse it,
and that refusal would look like Redis being unavailable).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


class BadParameter(ValueError):
    """A query parameter the API cannot use; the message names it."""


@dataclass(frozen=True, slots=True)
class Cursor:
    score: float
    member: bytes

    @classmethod
    def parse(cls, text: str) -> Cursor:
        score_text, separator, member = text.partition(":")
        try:
            score = float(score_text)
        except ValueError:
            score = math.nan
        if not separator or not member or not math.isfinite(score):
            raise BadParameter("cursor is not one this API returned")
        return cls(score, member.encode())

    def __str__(self) -> str:
        return f"{self.score!r}:{self.member.decode()}"


def limit_param(query: Mapping[str, str]) -> int:
    text = query.get("limit")
    if text is None or text == "":
        return DEFAULT_LIMIT
    if not (text.isascii() and text.isdigit() and len(text) <= 6):
        raise BadParameter("limit must be a whole number")
    value = int(text)
    if not 1 <= value <= MAX_LIMIT:
        raise BadParameter(f"limit must be between 1 and {MAX_LIMIT}")
    return value


def cursor_param(query: Mapping[str, str]) -> Cursor | None:
    text = query.get("cursor")
    return Cursor.parse(text) if text else None
