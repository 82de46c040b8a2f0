"""Resource quantities (`250m`, `1.5`, `512Mi`, `1G`), read as the real server reads them.

Kept as exact fractions so that sums and comparisons never round: the real server
compares `resource.Quantity` values exactly too.
"""

from __future__ import annotations

import re
from fractions import Fraction

_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([a-zA-Z]*)$")
_SUFFIXES: dict[str, Fraction] = {
    "": Fraction(1),
    "m": Fraction(1, 1000),
    "k": Fraction(1000),
    "M": Fraction(1000**2),
    "G": Fraction(1000**3),
    "T": Fraction(1000**4),
    "P": Fraction(1000**5),
    "E": Fraction(1000**6),
    "Ki": Fraction(1024),
    "Mi": Fraction(1024**2),
    "Gi": Fraction(1024**3),
    "Ti": Fraction(1024**4),
    "Pi": Fraction(1024**5),
    "Ei": Fraction(1024**6),
}


def parse(quantity: object) -> Fraction:
    """The value of a quantity in its base unit (cores, bytes); ValueError when it is not one."""
    text = str(quantity).strip()
    match = _QUANTITY.fullmatch(text)
    if not match or match.group(2) not in _SUFFIXES:
        raise ValueError(
            f"quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$' (got {text!r})"
        )
    return Fraction(match.group(1)) * _SUFFIXES[match.group(2)]


def show(value: Fraction, resource: str) -> str:
    """A quantity as the server prints it in messages: CPU in millicores, bytes in binary units."""
    if resource.endswith("cpu"):
        millis = value * 1000
        return f"{int(value)}" if value.denominator == 1 else f"{int(millis)}m"
    if resource.endswith(("memory", "storage")):
        for suffix in ("Ti", "Gi", "Mi", "Ki"):
            unit = _SUFFIXES[suffix]
            if value >= unit and (value / unit).denominator == 1:
                return f"{int(value / unit)}{suffix}"
        return str(int(value))
    return str(int(value))
