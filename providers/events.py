"""The one event shape every source is normalised into.

Whatever sent it (a code host's webhook or a CI's generic trigger), the worker
only ever sees a `LifecycleEvent`. Adapters in `providers/` build them; nothing
downstream looks at a provider's raw payload again.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict


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


class LifecycleEvent(BaseModel):
    """A verified, normalised delivery: what happened to which change, and when."""

    model_config = ConfigDict(frozen=True)

    provider: Provider
    delivery_id: str
    type: EventType
    # GitHub `owner/repo`; GitLab the full path with subgroups; Bitbucket Cloud
    # `workspace/repo_slug`; Bitbucket Data Center `PROJECTKEY/repo-slug`.
    repository: str
    # Pull request / merge request number; None for pushes and builds that the
    # sender did not tie to a change.
    number: int | None = None
    head_sha: str | None = None
    head_ref: str | None = None
    base_ref: str | None = None
    actor: str | None = None
    fork: bool = False
    draft: bool = False
    merged: bool = False
    comment: Comment | None = None
    build_status: BuildStatus | None = None
    image: str | None = None
    # The generic trigger may carry the repository's k8s-ee.yaml inline, as JSON.
    config: dict[str, object] | None = None
    # When the sender says it happened (from the payload), if it says so.
    occurred_at: datetime | None = None
    received_at: datetime
    # The change's title and web page, for reporting back (escaped before use).
    title: str | None = None
    url: str | None = None

    @property
    def key(self) -> str:
        """What serialises work: one environment per (provider, repository, change)."""
        return f"{self.provider.value}:{self.repository}:{self.number}"
