from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def no_host_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No K8S_EE_ setting of the machine running the tests reaches them: the host clients are
    configured by each test alone."""
    for name in list(os.environ):
        if name.startswith("K8S_EE_"):
            monkeypatch.delenv(name)
