"""Bitbucket Data Center (Server), through atlassian-python-api's `atlassian.Bitbucket`.

Authenticates with an HTTP access token (Bearer). Repositories are `PROJECTKEY/repo-slug`;
personal repositories (`~USER/repo`) work the same way.

Reporting back: the environment's comment is a pull request comment found again by its marker in
the pull request's activities (every page; general comments only). Data Center edits a comment only
at its current `version`, so an edit reads the comment first (and reads it again once should it
have changed in between). The native status is the build status `k8s-ee-preview` of the head
commit (the repository builds API of Data Center 7.14 and later, whose states include CANCELLED,
its word for Cloud's STOPPED).

Chat commands: a user has write access when the users API lists them among the users holding
REPO_WRITE on the repository (`GET /users?permission=REPO_WRITE&permission.projectKey=…&
permission.repositorySlug=…`: any authenticated user may ask, and the permission counts every
grant that implies it: the repository's, the project's, groups', global ones). Its `filter`
matches parts of names, so the user is picked out by exact name. The gateway is the user Data
Center names in the `X-AUSERNAME` header of every authenticated answer. An accepted command gets
a `thumbsup` reaction (the comment-likes API of Data Center 7.0 and later); a reply is a comment
under the command's comment.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote

import requests
from atlassian import Bitbucket
from pydantic import SecretStr

from providers.events import Provider
from providers.hosts.base import (
    Budget,
    ChangeState,
    HostError,
    Identity,
    ListedChange,
    NotFound,
    Permission,
)
from providers.hosts.http import HttpPolicy, decode_text, owner_and_name, requests_error
from providers.hosts.pacer import Pacer
from providers.hosts.reporting import (
    BUILD_KEY,
    BUILD_NAME,
    ReportMemo,
    StatusReport,
    check_marker,
    check_report,
    write_once,
)

T = TypeVar("T")
NAME = "Bitbucket Data Center"
# atlassian-python-api's functions carry no annotations: its client is used as `Any`.
_Client: Any = Bitbucket
_STATES = {"OPEN": "open", "MERGED": "merged", "DECLINED": "closed"}
# The build status of each environment state.
_BUILD_STATES = {
    "queued": "INPROGRESS",
    "deploying": "INPROGRESS",
    "deployed": "SUCCESSFUL",
    "preserved": "SUCCESSFUL",
    "hibernated": "SUCCESSFUL",
    "failed": "FAILED",
    "destroyed": "CANCELLED",
    "skipped": "CANCELLED",
}


class BitbucketServerHost:
    provider: Provider = Provider.BITBUCKET_SERVER
    name = NAME
    can_react = True

    def __init__(self, url: str, token: SecretStr, policy: HttpPolicy, *, per_page: int = 100) -> None:
        self.url = url.rstrip("/")
        self.per_page = per_page
        self._secrets = (token.get_secret_value(),)
        self._pacer = Pacer(Provider.BITBUCKET_SERVER.value, NAME, policy)
        self._identity: Identity | None = None
        session = policy.session()
        session.hooks["response"].append(self._observe)
        self._server = _Client(
            url=self.url,
            token=token.get_secret_value(),
            session=session,
            timeout=policy.timeout_seconds,
            backoff_and_retry=False,
            retry_with_header=False,
        )

    def change(self, repository: str, number: int) -> ChangeState:
        what = f"pull request {repository}#{number}"
        key, slug = _key_and_slug(repository)
        pull = self._request(lambda: self._server.get_pull_request(key, slug, number), what)
        if not isinstance(pull, dict):
            raise HostError(f"{NAME}: unexpected answer reading {what}")
        source = pull.get("fromRef") or {}
        head_sha = source.get("latestCommit")
        if not head_sha:
            raise HostError(f"{NAME}: {what} has no source commit")
        updated = pull.get("updatedDate")
        links = (pull.get("links") or {}).get("self") or [{}]
        return ChangeState.model_validate(
            {
                "state": _STATES.get(str(pull.get("state")), "closed"),
                "head_sha": head_sha,
                "head_ref": _branch(source),
                "base_ref": _branch(pull.get("toRef") or {}) or None,
                "draft": bool(pull.get("draft")),
                # Data Center gives epoch milliseconds.
                "updated_at": datetime.fromtimestamp(updated / 1000, UTC)
                if isinstance(updated, int)
                else None,
                "title": pull.get("title"),
                "url": links[0].get("href"),
                "fork": _from_fork(pull),
            }
        )

    def open_changes(self, repository: str) -> list[ListedChange]:
        """Every open pull request, newest first, one request per page (the SDK follows
        `nextPageStart`)."""
        key, slug = _key_and_slug(repository)

        def read() -> list[ListedChange]:
            pulls = self._server.get_pull_requests(
                key, slug, state="OPEN", order="newest", limit=self.per_page
            )
            return [_change(p) for p in pulls if isinstance(p, dict)]

        return self._request(read, f"the open pull requests of {repository}")

    def first_commit_at(self, repository: str, number: int) -> datetime | None:
        what = f"commits of pull request {repository}#{number}"
        key, slug = _key_and_slug(repository)

        def read() -> datetime | None:
            # Newest first, paged: every page is read to reach the first commit. Epoch ms.
            stamps = [
                c.get("authorTimestamp")
                for c in self._server.get_pull_requests_commits(key, slug, number, limit=100)
                if isinstance(c, dict)
            ]
            found = [s for s in stamps if isinstance(s, int)]
            return datetime.fromtimestamp(min(found) / 1000, UTC) if found else None

        return self._request(read, what)

    def read_file(self, repository: str, path: str, ref: str) -> str | None:
        what = f"{path} at {ref} in {repository}"
        key, slug = _key_and_slug(repository)
        # The SDK puts the path into the URL as given: quote it, so that `#`, `?` and `%` survive.
        quoted = quote(path.strip("/"))
        try:
            data = self._request(lambda: self._server.get_content_of_file(key, slug, quoted, at=ref), what)
        except NotFound:
            return None
        return decode_text(data if isinstance(data, bytes) else b"", what)

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
        key, slug = _key_and_slug(repository)

        def write() -> str:
            comment = self._comment(key, slug, number, known_id) if known_id and known_id.isdigit() else None
            if comment is not None and marker not in str(comment.get("text") or ""):
                comment = None
            if comment is None and search:
                comment = self._find(key, slug, number, marker)
            if comment is not None:
                return self._edit(key, slug, number, comment, body)
            created = self._server.add_pull_request_comment(key, slug, number, body)
            if not isinstance(created, dict) or "id" not in created:
                raise HostError(f"{NAME}: unexpected answer creating a comment on {repository}#{number}")
            return str(created["id"])

        return self._request(write, f"the comment on pull request {repository}#{number}", write=True)

    def report_status(
        self, repository: str, number: int, report: StatusReport, memo: ReportMemo | None = None
    ) -> ReportMemo:
        """Not written again when the last report wrote the same (the memo's digest)."""
        check_report(report, number)
        key, slug = _key_and_slug(repository)
        status: dict[str, Any] = {
            "key": BUILD_KEY,
            "state": _BUILD_STATES[report.state],
            "name": BUILD_NAME,
            "description": report.description,
            # A link is required: the pull request itself when there is nothing better.
            "url": report.link or f"{self.url}/projects/{key}/repos/{slug}/pull-requests/{number}",
        }
        if report.ref:
            status["ref"] = f"refs/heads/{report.ref}"
        endpoint = self._server.resource_url(f"projects/{key}/repos/{slug}/commits/{report.head_sha}/builds")

        def write() -> None:
            # A status with the same key is replaced: the commit shows one.
            self._server.post(endpoint, data=status)

        return write_once(
            report,
            memo,
            lambda: self._request(
                write, f"the build status of pull request {repository}#{number}", write=True
            ),
        )

    def permission(self, repository: str, user: str, user_id: str | None = None) -> Permission:
        key, slug = owner_and_name(repository, "PROJECTKEY/repo-slug")
        what = f"the permission of {user} on {repository}"
        for permission, level in (("REPO_WRITE", "write"), ("REPO_READ", "read")):
            params = {
                "filter": user,
                "permission": permission,
                "permission.projectKey": key,
                "permission.repositorySlug": slug,
                "limit": self.per_page,
            }
            found = self._request(
                lambda params=params: list(self._server._get_paged("rest/api/1.0/users", params=params)),  # type: ignore[misc]
                what,
            )
            if any(_named(candidate, user) for candidate in found):
                return Permission(level=level, reported=permission)
        return Permission(level="none", reported="no repository permission")

    def identity(self) -> Identity:
        if self._identity is None:

            def read() -> str | None:
                answer = self._server.get("rest/api/1.0/application-properties", advanced_mode=True)
                answer.raise_for_status()
                return answer.headers.get("X-AUSERNAME")  # type: ignore[no-any-return]

            name = self._request(read, "the gateway's own account")
            if not name:
                raise HostError(f"{NAME} did not say which user the token belongs to")
            self._identity = Identity(names=frozenset({name}))
        return self._identity

    def react(self, repository: str, number: int, comment_id: str) -> None:
        key, slug = _key_and_slug(repository)
        path = (
            f"rest/comment-likes/latest/projects/{key}/repos/{slug}/pull-requests/{number}"
            f"/comments/{quote(comment_id, safe='')}/reactions/thumbsup"
        )

        def write() -> None:
            try:
                self._server.put(path)
            except requests.HTTPError as exc:
                # 409: reacted with it already (a retried answer).
                if exc.response is None or exc.response.status_code != 409:
                    raise

        self._request(write, f"a reaction on comment {comment_id} of {repository}#{number}", write=True)

    def reply(
        self, repository: str, number: int, comment_id: str, body: str, thread_id: str | None = None
    ) -> str:
        key, slug = _key_and_slug(repository)
        if not comment_id.isdigit():
            raise HostError(f"{NAME}: {comment_id!r} is not a comment id")

        def write() -> str:
            created = self._server.add_pull_request_comment(
                key, slug, number, body, parent_id=int(comment_id)
            )
            if not isinstance(created, dict) or "id" not in created:
                raise HostError(f"{NAME}: unexpected answer replying on {repository}#{number}")
            return str(created["id"])

        return self._request(write, f"a reply on pull request {repository}#{number}", write=True)

    def rate_limits(self) -> dict[str, Budget]:
        return self._pacer.budgets()

    def close(self) -> None:
        self._server.close()

    def _comment(self, key: str, slug: str, number: int, comment_id: str) -> dict[str, Any] | None:
        try:
            comment = self._server.get_pull_request_comment(key, slug, number, comment_id)
        except requests.HTTPError as exc:
            if exc.response is not None and exc.response.status_code == 404:
                return None
            raise
        return comment if isinstance(comment, dict) else None

    def _find(self, key: str, slug: str, number: int, marker: str) -> dict[str, Any] | None:
        """The oldest general comment holding the marker. Activities come newest first, so every
        page is read."""
        found: dict[str, Any] | None = None
        for activity in self._server.get_pull_requests_activities(key, slug, number, limit=self.per_page):
            comment = activity.get("comment") if isinstance(activity, dict) else None
            if activity.get("action") != "COMMENTED" or not isinstance(comment, dict):
                continue
            if activity.get("commentAnchor") or comment.get("anchor"):
                continue  # a comment on a file or line
            if marker in str(comment.get("text") or "") and (found is None or comment["id"] < found["id"]):
                found = comment
        return found

    def _edit(self, key: str, slug: str, number: int, comment: dict[str, Any], body: str) -> str:
        comment_id = str(comment["id"])
        try:
            self._server.update_pull_request_comment(key, slug, number, comment_id, body, comment["version"])
        except requests.HTTPError as exc:
            # Someone edited it since it was read: read its version again, once.
            if exc.response is None or exc.response.status_code != 409:
                raise
            current = self._comment(key, slug, number, comment_id)
            if current is None:
                raise
            self._server.update_pull_request_comment(key, slug, number, comment_id, body, current["version"])
        return comment_id

    def _observe(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self._pacer.record_headers("token", response.headers)

    def _request(self, call: Callable[[], T], what: str, *, write: bool = False) -> T:
        action = "writing" if write else "reading"

        def attempt() -> T:
            try:
                return call()
            except requests.RequestException as exc:
                raise requests_error(
                    NAME, self.url, exc, what, self._secrets, "K8S_EE_BITBUCKET_SERVER_TOKEN", action
                ) from exc

        return self._pacer.run("token", attempt, write=write)


def _change(pull: dict[str, Any]) -> ListedChange:
    source = pull.get("fromRef") or {}
    target = pull.get("toRef") or {}
    links = (pull.get("links") or {}).get("self") or [{}]
    updated = pull.get("updatedDate")
    return ListedChange.model_validate(
        {
            "number": pull["id"],
            "state": _STATES.get(str(pull.get("state")), "closed"),
            "head_sha": source.get("latestCommit") or "",
            "head_ref": _branch(source),
            "base_ref": _branch(target) or None,
            "draft": bool(pull.get("draft")),
            # Data Center gives epoch milliseconds.
            "updated_at": datetime.fromtimestamp(updated / 1000, UTC) if isinstance(updated, int) else None,
            "title": pull.get("title"),
            "url": links[0].get("href"),
            "fork": _from_fork(pull),
        }
    )


def _key_and_slug(repository: str) -> tuple[str, str]:
    key, slug = owner_and_name(repository, "PROJECTKEY/repo-slug")
    # A personal project's key is `~USER`. The SDK would send that to `/users/~USER/repos`, which
    # Data Center does not serve; `%7E` keeps it on `/projects/~USER/repos` (requests turns it
    # back into `~` on the wire).
    return quote(key, safe="").replace("~", "%7E"), quote(slug, safe="")


def _named(user: object, name: str) -> bool:
    if not isinstance(user, dict):
        return False
    return name.casefold() in (str(user.get("name")).casefold(), str(user.get("slug")).casefold())


def _from_fork(pull: dict[str, Any]) -> bool:
    source = (pull.get("fromRef") or {}).get("repository") or {}
    target = (pull.get("toRef") or {}).get("repository") or {}
    if source.get("id") is not None and target.get("id") is not None:
        return bool(source["id"] != target["id"])
    return _identity(source) != _identity(target)


def _identity(repository: dict[str, Any]) -> str:
    return f"{(repository.get('project') or {}).get('key')}/{repository.get('slug')}".casefold()


def _branch(ref: dict[str, Any]) -> str:
    return str(ref.get("displayId") or str(ref.get("id") or "").removeprefix("refs/heads/"))
