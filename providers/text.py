"""Comparing names without Unicode surprises."""

from __future__ import annotations

import string

_ASCII_UPPER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def ascii_lower(text: str) -> str:
    """Lower-case A-Z only. `str.lower` maps look-alikes onto ASCII (the Kelvin sign `K`
    becomes `k`), so a name compared after it could pass for one it is not."""
    return text.translate(_ASCII_UPPER)
