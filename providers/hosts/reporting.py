"""What the worker tells a code host about a change's environment (SPEC 4), as host-neutral models.

`StatusReport` is one state of one environment at one commit; each host client in
`providers/hosts/` (`github`, `gitlab`, `bitbucket_cloud`, `bitbucket_server`) turns it into its
host's own status (a GitHub deployment and commit status, a GitLab environment and commit status, a
Bitbucket build status). The comment itself is Markdown rendered elsewhere; here is only the hidden
marker by which it is found again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from providers.states import State

# The hidden line that marks the environment's comment on a change.
MARKER = "<!-- k8s-ee-pr-env -->"
# The commit status name (GitHub context, GitLab name) and Bitbucket build status key and name.
STATUS_CONTEXT = "k8s-ee/preview"
BUILD_KEY = "k8s-ee-preview"
BUILD_NAME = "k8s-ee preview environment"
# GitHub refuses longer status descriptions.
MAX_DESCRIPTION = 140


DEFAULT_DESCRIPTIONS: dict[str, str] = {
    "queued": "Preview environment queued",
    "deploying": "Deploying the preview environment",
    "deployed": "Preview environment deployed",
    "failed": "Preview environment failed to deploy",
    "destroyed": "Preview environment destroyed",
    "hibernated": "Preview environment hibernated",
    "preserved": "Preview environment preserved",
    "skipped": "No preview environment for this change",
}
# States in which the preview URL answers.
SERVING: frozenset[str] = frozenset({"deployed", "preserved"})


def _http_url(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    value = value.strip()
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL")
    return value


class StatusReport(BaseModel):
    """The environment of change `number` (`environment` is `pr-{number}`) at commit `head_sha`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    state: State
    # Full or abbreviated (Bitbucket Cloud sends 12 characters); 64 for SHA-256 repositories.
    head_sha: str = Field(pattern=r"^[0-9a-f]{7,64}$")
    environment: str = Field(pattern=r"^pr-[1-9][0-9]*$")
    preview_url: str | None = None
    # Blank: the state's default text.
    description: str = Field("", max_length=MAX_DESCRIPTION)
    # A dashboard or log link for the states in which the preview itself does not answer.
    target_url: str | None = None
    # The change's source branch, when known: Bitbucket Cloud ties a build status to a pull request
    # through it, GitLab a commit status to a pipeline (asked from the host when missing).
    ref: str | None = Field(None, min_length=1, max_length=255)

    @field_validator("head_sha", mode="before")
    @classmethod
    def lower_sha(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("preview_url", "target_url")
    @classmethod
    def http_url(cls, value: str | None) -> str | None:
        return _http_url(value)

    @field_validator("description")
    @classmethod
    def one_line(cls, value: str) -> str:
        return " ".join(value.split())

    @model_validator(mode="before")
    @classmethod
    def default_description(cls, data: object) -> object:
        if isinstance(data, dict) and not str(data.get("description") or "").strip():
            default = DEFAULT_DESCRIPTIONS.get(str(data.get("state")))
            if default is not None:
                data = {**data, "description": default}
        return data

    @property
    def serving(self) -> bool:
        return self.state in SERVING

    @property
    def link(self) -> str | None:
        """Where a status should point: the preview while it answers, else the dashboard or logs."""
        if self.serving and self.preview_url:
            return self.preview_url
        return self.target_url

    def number(self) -> int:
        return int(self.environment.removeprefix("pr-"))


def check_report(report: StatusReport, number: int) -> None:
    if report.number() != number:
        raise ValueError(f"a report for {report.environment} cannot go to change {number}")


def check_marker(body: str, marker: str) -> None:
    """A comment written without its marker could never be found again: refuse to write it."""
    if not marker.strip() or marker not in body:
        raise ValueError("the comment body must contain its marker")


class ReportMemo(BaseModel):
    """What a client wrote on a host for one environment, handed back to it with the next report:
    ids it need not look up again, and a digest of each status as last written, so that a status
    whose content did not change is not written again.

    `complete`: `ids` hold everything the environment has on the host, so an id that is missing
    does not exist and is created without a search first. The worker clears it before a report
    whose outcome it may not learn (a worker killed mid-report), so the next one searches."""

    model_config = ConfigDict(frozen=True)

    ids: dict[str, str] = Field(default_factory=dict)
    written: dict[str, str] = Field(default_factory=dict)
    complete: bool = False


def digest(*parts: object) -> str:
    """A short digest of a write's content, to tell whether it changed (not a secret's hash)."""
    return hashlib.sha256("\x1f".join(str(part) for part in parts).encode()).hexdigest()[:16]


def write_once(report: StatusReport, memo: ReportMemo | None, write: Callable[[], object]) -> ReportMemo:
    """Run `write` (the host's one status for `report`) unless `memo` says the last report wrote
    this very status; the memo to hand to the next report."""
    content = digest(report.model_dump_json())
    if memo is not None and memo.written.get("status") == content:
        return memo
    write()
    return ReportMemo(written={"status": content})
