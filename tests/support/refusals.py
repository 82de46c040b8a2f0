"""Checking what an adapter refuses (providers.verdicts.Refusal)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pytest

from providers.verdicts import Refusal


def refusal(
    call: Callable[[], object], status: int | None = None, *, hiding: Iterable[bytes] = ()
) -> Refusal:
    """The Refusal `call()` raises: with `status` when one is given, and a reason that shows
    none of `hiding` (the secrets a reason must never echo)."""
    with pytest.raises(Refusal) as caught:
        call()
    refused = caught.value
    if status is not None:
        assert refused.status == status, refused.reason
    for secret in hiding:
        assert secret.decode() not in refused.reason
    return refused
