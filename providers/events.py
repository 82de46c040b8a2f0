"""The one event shape every source is normalised into.

Whatever sent it (a code host's webhook or a CI's generic trigger), the worker
only ever sees a `LifecycleEvent`. Adapters in `providers/` build them; nothing
downstream looks at a provider's raw payload again.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from providers.fields import (
    BranchName,
    ChangeNumber,
    CommitSha,
    DeliveryId,
    EventTime,
    ImageReference,
    Repository,
)


class Provider(StrEnum):
    GITHUB = "github"
    GITLAB = "gitlab"
    BITBUCKET_CLOUD = "bitbucket-cloud"
    BITBUCKET_SERVER = "bitbucket-server"
    GENERIC = "generic"


class EventType(StrEnum):
    CHANGE_OPENED = "change.opened"
    CHANGE_REOPENED = "change.reopened"
    # New commits on the source branch of an open change.
    CHANGE_UPDATED = "change.updated"
    # Draft marked ready for review.
    CHANGE_READY = "change.ready"
    CHANGE_CLOSED = "change.closed"
    COMMENT_CREATED = "comment.created"
    BUILD_COMPLETED = "build.completed"
    PUSH = "push"
    ENV_DEPLOY = "env.deploy"
    ENV_DESTROY = "env.destroy"
    ENV_HIBERNATE = "env.hibernate"
    ENV_WAKE = "env.wake"


class EventSource(StrEnum):
    """Who produced an event. Every source goes through the same policy, dedup and ordering."""

    # A code host's webhook or the generic trigger.
    WEBHOOK = "webhook"
    # The admin API (and the command line, which calls it).
    API = "api"
    # The resync: a change's state read from its host's list of open changes.
    RESYNC = "resync"
    # The sweep: a TTL that ran out, a change found closed twice.
    SWEEP = "sweep"
    # The idle check: no activity for the environment's idle time.
    IDLE = "idle"
    # A visit to a hibernated environment's preview URL (the gateway's wake service).
    VISIT = "visit"


class BuildStatus(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    CANCELLED = "cancelled"
    PENDING = "pending"


class Comment(BaseModel):
    """A new comment on a change: where chat commands come from."""

    model_config = ConfigDict(frozen=True)

    id: str
    body: str
    # Who wrote it, as the host is asked about permissions: GitHub's login, GitLab's username,
    # Bitbucket Cloud's account id, Data Center's user name.
    author: str
    # The host's own id of the author where it asks by id (GitLab's user id, Bitbucket Cloud's uuid).
    author_id: str | None = None
    # What people see (Cloud's nickname), for answers that name the author; `author` when None.
    author_name: str | None = None
    # The thread to reply in (GitLab's discussion id).
    thread_id: str | None = None


# Events about one change: they must say which.
NUMBERED = frozenset(
    {
        EventType.CHANGE_OPENED,
        EventType.CHANGE_REOPENED,
        EventType.CHANGE_UPDATED,
        EventType.CHANGE_READY,
        EventType.CHANGE_CLOSED,
        EventType.COMMENT_CREATED,
        EventType.ENV_DEPLOY,
        EventType.ENV_DESTROY,
        EventType.ENV_HIBERNATE,
        EventType.ENV_WAKE,
    }
)


def _unsaid(value: object) -> bool:
    return value is None


def _absent(value: object) -> bool:
    # Only a generic trigger that names a provider has a target, only the admin API's events are
    # the operator's: every other event serialises as it always did, without either field.
    return not value


class LifecycleEvent(BaseModel):
    """A verified, normalised delivery: what happened to which change, and when.

    Every field is checked here, once, by its shape in providers/fields.py: the gateway
    builds this model before it accepts a delivery, so nothing reaches the worker that
    the worker could not use.
    """

    model_config = ConfigDict(frozen=True)

    provider: Provider
    delivery_id: DeliveryId
    type: EventType
    # GitHub `owner/repo`; GitLab the full path with subgroups; Bitbucket Cloud
    # `workspace/repo_slug`; Bitbucket Data Center `PROJECTKEY/repo-slug`.
    repository: Repository
    # Pull request / merge request number; None for pushes and builds that the
    # sender did not tie to a change.
    number: ChangeNumber | None = None
    head_sha: CommitSha | None = None
    head_ref: BranchName | None = None
    base_ref: BranchName | None = None
    actor: str | None = None
    fork: bool = False
    draft: bool = False
    merged: bool = False
    comment: Comment | None = None
    build_status: BuildStatus | None = None
    image: ImageReference | None = None
    # The generic trigger may carry the repository's k8s-ee.yaml inline, as JSON.
    config: dict[str, object] | None = None
    # When the sender says it happened (from the payload), if it says so.
    occurred_at: EventTime | None = None
    received_at: EventTime
    # The change's title and web page, for reporting back (escaped before use).
    title: str | None = None
    url: str | None = None
    # How many comments the change had when the sender wrote the event, where its payload says
    # (GitHub's `pull_request.comments`): with none, the first report creates its comment without
    # searching for an earlier one. Left out of the event's JSON where not said.
    comments: int | None = Field(default=None, ge=0, exclude_if=_unsaid)
    source: EventSource = EventSource.WEBHOOK
    # Whose environment the event acts on when it is not the sender's own: the generic
    # trigger may name a code host to act on its environment of the same repository and number.
    target_provider: Provider | None = Field(default=None, exclude_if=_absent)
    # Sent by the gateway's operator through the admin API, not by a code host: the chat commands
    # it carries run without asking the host about their author, as the generic trigger's do.
    operator: bool = Field(default=False, exclude_if=_absent)

    @property
    def environment_provider(self) -> Provider:
        """The provider of the environment this event concerns."""
        return self.target_provider or self.provider

    @model_validator(mode="after")
    def _what_the_type_needs(self) -> Self:
        if self.target_provider is not None and self.provider != Provider.GENERIC:
            raise PydanticCustomError(
                "target_provider",
                "target_provider: only the generic trigger acts on another provider's environment",
            )
        if self.type in NUMBERED and self.number is None:
            raise PydanticCustomError(
                "number_missing", "number: required for {type} events", {"type": self.type.value}
            )
        if self.type in (EventType.PUSH, EventType.ENV_DEPLOY) and (
            self.head_sha is None or self.head_ref is None
        ):
            raise PydanticCustomError(
                "head_missing", "head_sha and head_ref: required for {type} events", {"type": self.type.value}
            )
        return self

    @property
    def key(self) -> str:
        """What serialises work: one environment per (provider, repository, change)."""
        return f"{self.environment_provider.value}:{self.repository}:{self.number}"
