"""Durations as people write them: `90s`, `10m`, `4h`, `7d`, or a bare number of seconds.

One parser for the settings (`K8S_EE_HIBERNATE_AFTER=4h`) and for `k8s-ee.yaml`
(`hibernation.after: 2h`), so both read a duration the same way.
"""

from __future__ import annotations

import math
import re
from typing import Annotated

from pydantic import BeforeValidator, Field

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^(?P<amount>[0-9]+(?:\.[0-9]+)?)(?P<unit>[smhd]?)$")


def parse_duration(value: object) -> object:
    """Seconds, from `4h` or `240m` or `14400`; anything else is left for the field to refuse."""
    if isinstance(value, bool):
        raise ValueError("must be a duration such as 90s, 10m, 4h or 7d")
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str):
        return value
    found = _DURATION.fullmatch(value.strip().lower())
    if found is None:
        raise ValueError("must be a duration such as 90s, 10m, 4h or 7d")
    seconds = float(found["amount"]) * UNITS[found["unit"] or "s"]
    if not math.isfinite(seconds):
        raise ValueError("must be a duration such as 90s, 10m, 4h or 7d")
    return seconds


def describe(seconds: float) -> str:
    """`4 h`, `30 min`, `7 days`, `90 s`: how a comment says a duration."""
    if seconds >= 86400 and seconds % 86400 == 0:
        days = int(seconds // 86400)
        return f"{days} day" if days == 1 else f"{days} days"
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{int(seconds // 3600)} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)} min"
    return f"{seconds:g} s"


# Seconds, written as a duration; 0 is allowed where a setting says it switches something off.
Duration = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]
