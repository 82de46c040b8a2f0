"""GitLab (gitlab.com or self-managed), through python-gitlab.

A project is addressed by its full path, subgroups included; python-gitlab URL-encodes it into
the project id (`group%2Fsub%2Fproject`), so no lookup of the numeric id is needed. Projects are
taken lazily: reading a merge request is one request.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import gitlab
import requests
from gitlab.exceptions import GitlabError
from gitlab.v4.objects import Project
from pydantic import SecretStr

from gateway.events import Provider
from providers.hosts import (
    USER_AGENT,
    ChangeState,
    HostError,
    HttpPolicy,
    NotFound,
    decode_text,
    redact,
    status_error,
    unreachable,
)

T = TypeVar("T")
NAME = "GitLab"
_STATES = {"opened": "open", "locked": "open", "closed": "closed", "merged": "merged"}
# python-gitlab retries 429s itself, sleeping as long as Retry-After says, up to ten times;
# the session's bounded retry does that job instead.
_CALL: dict[str, Any] = {"obey_rate_limit": False, "retry_transient_errors": False, "max_retries": 0}


class GitLabHost:
    provider: Provider = Provider.GITLAB

    def __init__(self, url: str, token: SecretStr, policy: HttpPolicy) -> None:
        self.url = url.rstrip("/")
        self._secrets = (token.get_secret_value(),)
        # python-gitlab's errors carry no headers: the last error answer's are kept (per thread)
        # for the wait a 429 asks for.
        self._last = threading.local()
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

    def read_file(self, repository: str, path: str, ref: str) -> str | None:
        what = f"{path} at {ref} in {repository}"

        def read(project: Project) -> str:
            data = project.files.raw(file_path=path.strip("/"), ref=ref, **_CALL)
            return decode_text(data, what)

        try:
            return self._call(repository, what, read)
        except NotFound:
            return None

    def repository_exists(self, repository: str) -> bool:
        def read(project: Project) -> bool:
            self._gitlab.projects.get(repository, **_CALL)
            return True

        try:
            return self._call(repository, f"project {repository}", read)
        except NotFound:
            return False

    def close(self) -> None:
        self._gitlab.session.close()

    def _remember(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self._last.headers = response.headers if response.status_code >= 400 else None

    def _call(self, repository: str, what: str, read: Callable[[Project], T]) -> T:
        if not repository.strip("/") or "//" in repository:
            raise HostError(f"{repository!r} is not a GitLab project path")
        self._last.headers = None
        try:
            return read(self._gitlab.projects.get(repository, lazy=True))
        except GitlabError as exc:
            # GitLab's messages start with the status ("404 Project Not Found"): say it once.
            detail = redact(str(exc.error_message), self._secrets).removeprefix(f"{exc.response_code} ")
            if exc.response_code is None:
                raise HostError(f"{NAME}: reading {what} failed ({detail})") from exc
            raise status_error(
                NAME,
                exc.response_code,
                detail,
                what,
                headers=getattr(self._last, "headers", None),
                credentials="K8S_EE_GITLAB_API_TOKEN",
            ) from exc
        except requests.RequestException as exc:
            raise unreachable(NAME, self.url, exc) from exc


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
        }
    )
