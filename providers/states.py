"""The states of an environment (SPEC 4): what the worker records, the hosts are told, the API shows."""

from __future__ import annotations

from typing import Literal

State = Literal[
    "queued", "deploying", "deployed", "failed", "destroyed", "hibernated", "preserved", "skipped"
]
