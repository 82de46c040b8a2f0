"""The body of a status webhook, and its JSON Schema (docs/status-webhook.schema.json).

The schema file is generated from these models (`python -m handlers.status_webhooks.payload`
rewrites it); a test fails when the two disagree, so receivers can rely on the file.
"""

from __future__ import annotations

import hashlib
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from handlers.status import EnvironmentStatus
from providers.events import Provider
from providers.states import State

EVENT_TYPE = "environment.state_changed"
SCHEMA_PATH = Path(__file__).resolve().parents[2] / "docs" / "status-webhook.schema.json"


class EnvironmentState(BaseModel):
    # Every key is always sent (null when unknown): the schema says so.
    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_serialization_defaults_required=True)

    provider: Provider
    repository: str = Field(description="owner/repo, or the full GitLab path with subgroups")
    number: int = Field(description="The pull or merge request number")
    namespace: str | None = None
    state: State
    previous_state: State | None = Field(
        description="The state before this change; null for a new environment"
    )
    head_sha: str | None = None
    head_ref: str | None = None
    preview_url: str | None = None
    last_error: str | None = Field(None, description="What went wrong last, when the state is failed")


class StatusEvent(BaseModel):
    """One environment state change, as POSTed to each subscriber."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        title="k8s-ee status webhook",
        json_schema_extra={"$schema": "https://json-schema.org/draft/2020-12/schema"},
        json_schema_serialization_defaults_required=True,
    )

    id: str = Field(description="The event id; also the webhook-id header, the same on every retry")
    type: Literal["environment.state_changed"]
    occurred_at: datetime
    environment: EnvironmentState

    @classmethod
    def from_status(
        cls, status: EnvironmentStatus, previous_state: State | None, occurred_at: datetime
    ) -> StatusEvent:
        # Derived from what changed, not random: the worker calling twice for one change
        # (a retried job) makes the same event, hence the same deliveries, not duplicates.
        seed = f"{status.key}|{previous_state}|{status.state}|{occurred_at.isoformat()}"
        event_id = "evt_" + hashlib.sha256(seed.encode()).hexdigest()[:32]
        return cls(
            id=event_id,
            type=EVENT_TYPE,
            occurred_at=occurred_at,
            environment=EnvironmentState(
                provider=status.provider,
                repository=status.repository,
                number=status.number,
                namespace=status.namespace,
                state=status.state,
                previous_state=previous_state,
                head_sha=status.head_sha,
                head_ref=status.head_ref,
                preview_url=status.preview_url,
                last_error=status.last_error,
            ),
        )


def json_schema() -> dict[str, Any]:
    return StatusEvent.model_json_schema(mode="serialization")


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    SCHEMA_PATH.write_text(schema_text())
    sys.stdout.write(f"wrote {SCHEMA_PATH}\n")
