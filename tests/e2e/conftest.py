"""Fixtures the end-to-end tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.receivers import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A status-webhook subscriber on loopback."""
    r = Receiver()
    yield r
    r.close()
