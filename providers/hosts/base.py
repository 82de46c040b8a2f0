"""What the worker reads from and writes to the code hosts: the answers and errors every client shares.

The worker asks a host what state a change is in and what a file holds at a commit, and it reports
back on the change: one comment, edited in place, and the host's native status for the environment.
For chat commands it asks what a user may do in a repository (`permission`), who the gateway
itself is there (`identity`, so that its own comments never command anything), and answers a
command with a reaction (`react`, where the host has them) or a reply.
Each client module (`github`, `gitlab`, `bitbucket_cloud`, `bitbucket_server`) does this through its
host's SDK (PyGithub, python-gitlab, atlassian-python-api) and answers in these types. `http` holds
the HTTP policy that bounds every SDK's retries and timeouts, `pacer` each host's rate-limit
answers, `build` the factory that picks the clients whose credentials are set.

Only the worker imports this package: the web process never loads an SDK. The calls are
synchronous, as the SDKs are; the worker runs them in a thread.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal, NamedTuple, Protocol

from pydantic import BaseModel, ConfigDict

from providers.events import Provider

if TYPE_CHECKING:
    from providers.hosts.reporting import ReportMemo, StatusReport


class ChangeState(BaseModel):
    """A pull / merge request as the host reports it now."""

    model_config = ConfigDict(frozen=True)

    state: Literal["open", "closed", "merged"]
    head_sha: str  # always the full SHA
    head_ref: str
    base_ref: str | None
    draft: bool
    updated_at: datetime | None
    title: str | None
    url: str | None
    # The source branch is in another repository (a fork); or the fork was deleted.
    fork: bool = False
    # How many comments the change has (all of them, anyone's), where the host's answer says;
    # None where it does not. Zero tells the reporter there is no earlier comment to search for.
    comments: int | None = None


Level = Literal["none", "read", "write", "admin"]


class Permission(BaseModel):
    """What a user may do in a repository, as the host reported it at the time it was asked."""

    model_config = ConfigDict(frozen=True)

    level: Level
    # The host's own words, for the log and for a refusal: "write (role maintain)",
    # "access level 20 (Reporter)", "REPO_READ", "no access".
    reported: str

    @property
    def can_write(self) -> bool:
        """Chat commands need write access: GitHub write or admin, GitLab Developer or above,
        Bitbucket repository write or admin."""
        return self.level in ("write", "admin")


class Identity(BaseModel):
    """Who the gateway's credentials act as on a host: its comments are written as this account."""

    model_config = ConfigDict(frozen=True)

    # Every name the host may put on a comment of ours (login, username, uuid, account id).
    names: frozenset[str]

    def is_self(self, *who: str | None) -> bool:
        known = {name.casefold() for name in self.names}
        return any(name is not None and name.casefold() in known for name in who)


class ListedChange(ChangeState):
    """An open change as the host lists it (for recovering missed deliveries)."""

    number: int


class Budget(NamedTuple):
    """What a credential had left of its rate-limit window, and the window's size when the host
    says it (so "below 10%" can be told)."""

    remaining: float
    limit: float | None = None


def earliest(stamps: Iterable[object]) -> datetime | None:
    """The earliest of ISO-8601 times as hosts write them (`Z` or an offset); others are skipped."""
    found: list[datetime] = []
    for stamp in stamps:
        if isinstance(stamp, str):
            try:
                moment = datetime.fromisoformat(stamp)
            except ValueError:
                continue
            found.append(moment if moment.tzinfo else moment.replace(tzinfo=UTC))
    return min(found) if found else None


class HostError(Exception):
    """A call to a code host failed. The message is safe to show: it never holds a secret."""


class NotFound(HostError):
    """The change, file or repository does not exist (or is not visible with these credentials)."""


class HostUnavailable(HostError):
    """The host cannot answer now (unreachable, 5xx, rate limited, credentials refused).

    Nothing is known about the change: keep its environment and try again later, no sooner than
    `retry_after` seconds when the host said so (or, after a write whose outcome is unknown, when
    the host module says so: re-run the whole call then, it finds what was already written).
    `rate_limited` is set when the host refused because of a rate limit: it did nothing."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        rate_limited: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.rate_limited = rate_limited


class Host(Protocol):
    provider: Provider
    # The host's name as people know it ("GitHub", "Bitbucket Data Center").
    name: str
    # Whether `react` works here (Bitbucket Cloud has no reactions: commands are answered by reply).
    can_react: bool

    def change(self, repository: str, number: int) -> ChangeState: ...

    def open_changes(self, repository: str) -> list[ListedChange]:
        """Every open change of the repository, one list call per page (no call per change). Bitbucket
        Cloud lists abbreviated head hashes (the gateway matches prefixes). `NotFound` when the
        repository is not visible: a successful answer proves it is reachable."""
        ...

    def read_file(self, repository: str, path: str, ref: str) -> str | None:
        """The file's text at `ref`; None when there is no such file there."""
        ...

    def first_commit_at(self, repository: str, number: int) -> datetime | None:
        """When the change's first commit was written: the earliest author date of its commits
        (a rebase rewrites committer dates, not author dates); None when it lists none. Asked
        once per change, for the DORA lead time (handlers/dora.py)."""
        ...

    def upsert_comment(
        self,
        repository: str,
        number: int,
        body: str,
        marker: str,
        known_id: str | None = None,
        *,
        search: bool = True,
    ) -> str:
        """Edit the change's comment that holds `marker`, or create it; return the comment's id.

        `known_id` (an id this method returned for the same change) is edited directly; when it is
        gone, every page of comments is searched for the marker, and a comment is created only when
        none holds it. `search=False` says the caller knows no comment can hold it (the change had
        no comments when last read, and nothing was ever reported on it): created with no search. A create is never repeated after an answer that leaves its outcome unknown:
        `HostUnavailable(retry_after=...)` asks for the whole call to be run again later."""
        ...

    def report_status(
        self, repository: str, number: int, report: StatusReport, memo: ReportMemo | None = None
    ) -> ReportMemo:
        """Show the environment's state with the host's own status (deployment, environment,
        commit or build status) at the report's head commit. `memo` is what the last report of
        this environment returned: ids found or made then are used without a search, and a
        status written then with the same content is not written again. Returns the new memo."""
        ...

    def permission(self, repository: str, user: str, user_id: str | None = None) -> Permission:
        """What `user` (a comment's author; `user_id` the host's id of them, where it asks by id)
        may do in the repository, counting every grant the host counts (teams, groups, projects).
        A user the host does not know, or who is no member, has `none`."""
        ...

    def identity(self) -> Identity:
        """Who these credentials act as (read once, then remembered)."""
        ...

    def react(self, repository: str, number: int, comment_id: str) -> None:
        """Mark a comment on the change with a thumbs-up: its command was accepted."""
        ...

    def reply(
        self, repository: str, number: int, comment_id: str, body: str, thread_id: str | None = None
    ) -> str:
        """Answer a comment on the change with `body` (in its thread where the host has threads);
        return the reply's id."""
        ...

    def rate_limits(self) -> dict[str, Budget]:
        """The request budget each credential had left when the host last said so, keyed
        `"{provider}:{credential}"` (never a secret: "token", or a GitHub App installation id)."""
        ...

    def close(self) -> None: ...
