"""GitLab (gitlab.com or self-managed), through python-gitlab.

A project is addressed by its full path, subgroups included; python-gitlab URL-encodes it into
the project id (`group%2Fsub%2Fproject`), so no lookup of the numeric id is needed. Projects are
taken lazily: reading a merge request is one request.

Reporting back: the environment's comment is a merge request note found again by its marker
(every page searched, oldest first, system notes skipped); the native status is an environment
`pr-{number}` with the preview as its `external_url` (stopped when the preview is destroyed) and a
commit status `k8s-ee/preview`. GitLab answers `RateLimit-*` headers where rate limits are on.

Chat commands: a user's permission is their membership of the project as `members/all` reports
it (direct, inherited from any ancestor group, or through an invited group: the highest access
level), Developer (30) or above counting as write; no membership answers 404, which is no access.
The gateway is the token's user (`GET /user`). An accepted command gets a `thumbsup` award emoji
on its note; a reply goes into the note's discussion.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar

import gitlab
import requests
from gitlab.exceptions import GitlabError
from gitlab.v4.objects import Project, ProjectEnvironment
from pydantic import SecretStr

from providers.events import Provider
from providers.hosts.base import (
    Budget,
    ChangeState,
    HostError,
    Identity,
    Level,
    ListedChange,
    NotFound,
    Permission,
    earliest,
)
from providers.hosts.http import USER_AGENT, HttpPolicy, decode_text, redact, status_error, unreachable
from providers.hosts.pacer import Pacer
from providers.hosts.reporting import (
    STATUS_CONTEXT,
    ReportMemo,
    StatusReport,
    check_marker,
    check_report,
    write_once,
)

T = TypeVar("T")
NAME = "GitLab"
_STATES = {"opened": "open", "locked": "open", "closed": "closed", "merged": "merged"}
# python-gitlab retries 429s itself, sleeping as long as Retry-After says, up to ten times;
# the session's bounded retry does that job instead.
_CALL: dict[str, Any] = {"obey_rate_limit": False, "retry_transient_errors": False, "max_retries": 0}
# The commit status of each environment state.
_COMMIT_STATES = {
    "queued": "pending",
    "deploying": "running",
    "deployed": "success",
    "preserved": "success",
    "hibernated": "success",
    "failed": "failed",
    "destroyed": "canceled",
    "skipped": "skipped",
}
# Review environments, in GitLab's words.
TIER = "development"
# `gitlab.const.AccessLevel`'s names, for the log and for refusals.
ACCESS_LEVELS = {
    0: "No access",
    5: "Minimal access",
    10: "Guest",
    15: "Planner",
    20: "Reporter",
    25: "Security Manager",
    30: "Developer",
    40: "Maintainer",
    50: "Owner",
    60: "Admin",
}
DEVELOPER = 30
MAINTAINER = 40


class GitLabHost:
    provider: Provider = Provider.GITLAB
    name = NAME
    can_react = True

    def __init__(self, url: str, token: SecretStr, policy: HttpPolicy, *, per_page: int = 100) -> None:
        self.url = url.rstrip("/")
        self.per_page = per_page
        self._secrets = (token.get_secret_value(),)
        self._pacer = Pacer(Provider.GITLAB.value, NAME, policy)
        # python-gitlab's errors carry no headers: the last error answer's are kept (per thread)
        # for the wait a 429 asks for.
        self._last = threading.local()
        self._identity: Identity | None = None
        session = policy.session()
        session.hooks["response"].append(self._remember)
        self._gitlab = gitlab.Gitlab(
            self.url,
            private_token=token.get_secret_value(),
            timeout=policy.timeout,
            user_agent=USER_AGENT,
            retry_transient_errors=False,
            # Pagination links come back with the server's own external URL; follow them to the
            # URL configured here (which may be an internal address).
            keep_base_url=True,
            session=session,
        )

    def change(self, repository: str, number: int) -> ChangeState:
        what = f"merge request {repository}!{number}"

        def read(project: Project) -> ChangeState:
            return change_state(project.mergerequests.get(number, **_CALL).attributes, what)

        return self._call(repository, what, read)

    def open_changes(self, repository: str) -> list[ListedChange]:
        """Every open merge request, most recently updated first, one request per page."""
        what = f"the open merge requests of {repository}"

        def read(project: Project) -> list[ListedChange]:
            found = []
            listed = project.mergerequests.list(
                state="opened", order_by="updated_at", iterator=True, per_page=self.per_page, **_CALL
            )
            for mr in listed:
                attributes = mr.attributes
                state = change_state(attributes, what)
                found.append(ListedChange(**state.model_dump(), number=int(attributes["iid"])))
            return found

        return self._call(repository, what, read)

    def first_commit_at(self, repository: str, number: int) -> datetime | None:
        what = f"commits of merge request {repository}!{number}"

        def read(project: Project) -> datetime | None:
            # Newest first: every page is read to reach the first commit.
            mr = project.mergerequests.get(number, lazy=True)
            commits = mr.commits(get_all=True, per_page=100, **_CALL)
            return earliest(commit.attributes.get("authored_date") for commit in commits)

        return self._call(repository, what, read)

    def read_file(self, repository: str, path: str, ref: str) -> str | None:
        what = f"{path} at {ref} in {repository}"

        def read(project: Project) -> str:
            data = project.files.raw(file_path=path.strip("/"), ref=ref, **_CALL)
            return decode_text(data, what)

        try:
            return self._call(repository, what, read)
        except NotFound:
            return None

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
        check_marker(body, marker)

        def write(project: Project) -> str:
            notes = project.mergerequests.get(number, lazy=True).notes
            if known_id is not None and known_id.isdigit():
                try:
                    notes.update(int(known_id), {"body": body}, **_CALL)
                    return known_id
                except GitlabError as exc:
                    if exc.response_code != 404:
                        raise
            found = (
                notes.list(iterator=True, per_page=self.per_page, sort="asc", order_by="created_at", **_CALL)
                if search
                else ()
            )
            for note in found:
                if not note.attributes.get("system") and marker in str(note.attributes.get("body") or ""):
                    notes.update(note.get_id(), {"body": body}, **_CALL)
                    return str(note.get_id())
            return str(notes.create({"body": body}, **_CALL).get_id())

        return self._call(repository, f"the note on merge request {repository}!{number}", write, write=True)

    def report_status(
        self, repository: str, number: int, report: StatusReport, memo: ReportMemo | None = None
    ) -> ReportMemo:
        """Not written again when the last report wrote the same (the memo's digest)."""
        check_report(report, number)

        def write(project: Project) -> None:
            if report.state != "skipped":
                self._environment(project, report)
            status: dict[str, Any] = {
                "state": _COMMIT_STATES[report.state],
                "name": STATUS_CONTEXT,
                "description": report.description,
            }
            if report.link:
                status["target_url"] = report.link
            if report.ref:
                status["ref"] = report.ref
            try:
                project.commits.get(report.head_sha, lazy=True).statuses.create(status, **_CALL)
            except GitlabError as exc:
                # GitLab refuses to move a pending or running status to the state it is in
                # ("Cannot transition status via :run from :running"): it is already shown.
                if exc.response_code != 400 or "transition" not in str(exc.error_message):
                    raise

        return write_once(
            report,
            memo,
            lambda: self._call(
                repository, f"the status of merge request {repository}!{number}", write, write=True
            ),
        )

    def permission(self, repository: str, user: str, user_id: str | None = None) -> Permission:
        what = f"the membership of {user} in {repository}"

        def read(project: Project) -> Permission:
            member_id = int(user_id) if user_id and user_id.isdigit() else self._user_id(user)
            if member_id is None:
                return Permission(level="none", reported="no such user")
            try:
                member = project.members_all.get(member_id, **_CALL).attributes
            except GitlabError as exc:
                if exc.response_code == 404:
                    return Permission(level="none", reported="not a member (404)")
                raise
            access = int(member.get("access_level") or 0)
            reported = f"access level {access} ({ACCESS_LEVELS.get(access, 'unknown')})"
            if member.get("state") not in (None, "active"):
                return Permission(level="none", reported=f"{reported}, account {member.get('state')}")
            return Permission(level=_level(access), reported=reported)

        return self._call(repository, what, read)

    def identity(self) -> Identity:
        if self._identity is None:
            user = self._request("/user", "the gateway's own account")
            self._identity = Identity(names=frozenset({str(user.get("username")), str(user.get("id"))}))
        return self._identity

    def react(self, repository: str, number: int, comment_id: str) -> None:
        def write(project: Project) -> None:
            note = project.mergerequests.get(number, lazy=True).notes.get(_note_id(comment_id), lazy=True)
            try:
                note.awardemojis.create({"name": "thumbsup"}, **_CALL)
            except GitlabError as exc:
                # Awarded already (a retried answer): GitLab says the name "has already been taken".
                if "already been taken" not in str(exc.error_message):
                    raise

        self._call(repository, f"an award on note {comment_id} of {repository}!{number}", write, write=True)

    def reply(
        self, repository: str, number: int, comment_id: str, body: str, thread_id: str | None = None
    ) -> str:
        def write(project: Project) -> str:
            mr = project.mergerequests.get(number, lazy=True)
            if thread_id:
                discussion = mr.discussions.get(thread_id, lazy=True)
                return str(discussion.notes.create({"body": body}, **_CALL).get_id())
            return str(mr.notes.create({"body": body}, **_CALL).get_id())

        return self._call(repository, f"a reply on merge request {repository}!{number}", write, write=True)

    def rate_limits(self) -> dict[str, Budget]:
        return self._pacer.budgets()

    def close(self) -> None:
        self._gitlab.session.close()

    def _user_id(self, username: str) -> int | None:
        """Older GitLab sends no author id with a note: look the username up."""
        found = self._gitlab.users.list(username=username, get_all=False, **_CALL)
        for user in found:
            if str(user.attributes.get("username")).casefold() == username.casefold():
                return int(user.get_id())
        return None

    def _request(self, path: str, what: str) -> dict[str, Any]:
        def call() -> dict[str, Any]:
            self._last.headers = None
            try:
                answer = self._gitlab.http_get(path, **_CALL)
            except GitlabError as exc:
                detail = redact(str(exc.error_message), self._secrets)
                raise status_error(
                    NAME,
                    exc.response_code or 0,
                    detail,
                    what,
                    headers=getattr(self._last, "headers", None),
                    credentials="K8S_EE_GITLAB_API_TOKEN",
                ) from exc
            except requests.RequestException as exc:
                raise unreachable(NAME, self.url, exc) from exc
            if not isinstance(answer, dict):
                raise HostError(f"{NAME}: unexpected answer reading {what}")
            return answer

        return self._pacer.run("token", call)

    def _environment(self, project: Project, report: StatusReport) -> None:
        """Create, update or stop environment `pr-{number}`. A stopped environment cannot be made
        available again through the API: when its change comes back, it is replaced."""
        found: list[ProjectEnvironment] = project.environments.list(
            name=report.environment, get_all=False, **_CALL
        )
        environment = found[0] if found else None
        state = environment.attributes.get("state") if environment is not None else None
        if report.state == "destroyed":
            if environment is not None and state not in ("stopped", "stopping"):
                environment.stop(**_CALL)
            return
        if environment is not None and state == "stopped":
            project.environments.delete(environment.get_id(), **_CALL)
            environment = None
        if environment is None:
            data = {"name": report.environment, "tier": TIER}
            if report.preview_url:
                data["external_url"] = report.preview_url
            project.environments.create(data, **_CALL)
        elif report.preview_url and environment.attributes.get("external_url") != report.preview_url:
            project.environments.update(environment.get_id(), {"external_url": report.preview_url}, **_CALL)

    def _remember(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self._last.headers = response.headers if response.status_code >= 400 else None
        self._pacer.record_headers("token", response.headers)

    def _call(self, repository: str, what: str, call: Callable[[Project], T], *, write: bool = False) -> T:
        if not repository.strip("/") or "//" in repository:
            raise HostError(f"{repository!r} is not a GitLab project path")
        return self._pacer.run("token", lambda: self._attempt(repository, what, call, write), write=write)

    def _attempt(self, repository: str, what: str, call: Callable[[Project], T], write: bool) -> T:
        return self._guard(what, write, lambda: call(self._gitlab.projects.get(repository, lazy=True)))

    def _guard(self, what: str, write: bool, call: Callable[[], T]) -> T:
        """Run one call, turning what python-gitlab and requests raise into host errors."""
        action = "writing" if write else "reading"
        self._last.headers = None
        try:
            return call()
        except GitlabError as exc:
            # GitLab's messages start with the status ("404 Project Not Found"): say it once.
            detail = redact(str(exc.error_message), self._secrets).removeprefix(f"{exc.response_code} ")
            if exc.response_code is None:
                raise HostError(f"{NAME}: {action} {what} failed ({detail})") from exc
            raise status_error(
                NAME,
                exc.response_code,
                detail,
                what,
                headers=getattr(self._last, "headers", None),
                credentials="K8S_EE_GITLAB_API_TOKEN",
                action=action,
            ) from exc
        except requests.RequestException as exc:
            raise unreachable(NAME, self.url, exc) from exc


def _level(access: int) -> Level:
    if access >= MAINTAINER:
        return "admin"
    if access >= DEVELOPER:
        return "write"
    return "read" if access >= 10 else "none"


def _note_id(comment_id: str) -> int:
    if not comment_id.isdigit():
        raise HostError(f"{NAME}: {comment_id!r} is not a note id")
    return int(comment_id)


def change_state(mr: Mapping[str, Any], what: str) -> ChangeState:
    """A merge request's JSON as `ChangeState`; `locked` (being merged) still counts as open."""
    head_sha = mr.get("sha") or (mr.get("diff_refs") or {}).get("head_sha")
    if not head_sha:
        raise HostError(f"{NAME}: {what} has no head commit yet")
    return ChangeState.model_validate(
        {
            "state": _STATES.get(str(mr.get("state")), "closed"),
            "head_sha": head_sha,
            "head_ref": mr.get("source_branch") or "",
            "base_ref": mr.get("target_branch"),
            "draft": bool(mr.get("draft") or mr.get("work_in_progress")),
            "updated_at": mr.get("updated_at"),
            "title": mr.get("title"),
            "url": mr.get("web_url"),
            # The notes people wrote, where ours is (system notes are not counted).
            "comments": mr.get("user_notes_count"),
            "fork": mr.get("source_project_id") != mr.get("target_project_id"),
        }
    )
