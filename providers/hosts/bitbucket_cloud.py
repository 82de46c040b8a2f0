"""Bitbucket Cloud, through atlassian-python-api's `atlassian.bitbucket.Cloud`.

The calls go through the `Cloud` client's own REST methods rather than its object model: objects
it creates (repositories, pull requests) get a fresh timeout (75 s) and retry settings of their
own, while the client keeps the bounded ones given here. A pull request's payload names its head
commit by a 12-character hash; the full SHA is read from the commit endpoint.

Reporting back: the environment's comment is a pull request comment found again by its marker
(every page searched; deleted comments, which Bitbucket keeps with their text emptied, and inline
comments and replies are skipped); the native status is the build status `k8s-ee-preview` of the
head commit, tied to the pull request by its source branch (`refname`).

Chat commands: a user's permission is the effective repository permission the workspace
permissions API reports for their uuid (`admin`, `write`, `read`: the highest of user, group and
project grants; no entry means no access). That API answers only to a repository admin, so the
credentials need admin on the repository for commands to be obeyed. The gateway is the account of
`GET /user`. Bitbucket Cloud has no reactions: every command is answered by a reply to its comment.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import quote

import requests
from atlassian.bitbucket.cloud import Cloud
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
    earliest,
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
NAME = "Bitbucket Cloud"
_STATES = {"OPEN": "open", "MERGED": "merged", "DECLINED": "closed", "SUPERSEDED": "closed"}
FULL_SHA_LENGTH = 40
# atlassian-python-api's functions carry no annotations: its client is used as `Any`.
_Client: Any = Cloud
# The build status of each environment state: STOPPED is Bitbucket's neutral end.
_BUILD_STATES = {
    "queued": "INPROGRESS",
    "deploying": "INPROGRESS",
    "deployed": "SUCCESSFUL",
    "preserved": "SUCCESSFUL",
    "hibernated": "SUCCESSFUL",
    "failed": "FAILED",
    "destroyed": "STOPPED",
    "skipped": "STOPPED",
}


class BitbucketCloudHost:
    provider: Provider = Provider.BITBUCKET_CLOUD
    name = NAME
    can_react = False

    def __init__(
        self,
        url: str,
        token: SecretStr,
        policy: HttpPolicy,
        *,
        username: str | None = None,
        per_page: int = 100,
    ) -> None:
        self.url = url.rstrip("/")
        self.per_page = per_page
        self._secrets = (token.get_secret_value(),)
        self._pacer = Pacer(Provider.BITBUCKET_CLOUD.value, NAME, policy)
        self._identity: Identity | None = None
        # A user name means HTTP Basic (an API token or app password); without one the token is a
        # workspace, project or repository access token, sent as a Bearer token.
        credentials: dict[str, Any] = (
            {"username": username, "password": token.get_secret_value()}
            if username
            else {"token": token.get_secret_value()}
        )
        self._credentials = (
            "K8S_EE_BITBUCKET_CLOUD_USERNAME and K8S_EE_BITBUCKET_CLOUD_TOKEN"
            if username
            else "K8S_EE_BITBUCKET_CLOUD_TOKEN"
        )
        session = policy.session()
        session.hooks["response"].append(self._observe)
        self._cloud = _Client(
            url=self.url,
            session=session,
            timeout=policy.timeout_seconds,
            backoff_and_retry=False,
            retry_with_header=False,
            **credentials,
        )

    def change(self, repository: str, number: int) -> ChangeState:
        what = f"pull request {repository}#{number}"
        base = _repository_path(repository)
        pull = self._get_json(f"{base}/pullrequests/{number}", what)
        source = pull.get("source") or {}
        head_sha = str((source.get("commit") or {}).get("hash") or "")
        if not head_sha:
            raise HostError(f"{NAME}: {what} has no source commit")
        if len(head_sha) < FULL_SHA_LENGTH:
            commit = self._get_json(f"{base}/commit/{quote(head_sha, safe='')}", f"commit {head_sha}")
            head_sha = str(commit.get("hash") or "")
            if len(head_sha) != FULL_SHA_LENGTH:
                raise HostError(f"{NAME}: commit of {what} has no full hash")
        return ChangeState.model_validate(
            {
                "state": _STATES.get(str(pull.get("state")), "closed"),
                "head_sha": head_sha,
                "head_ref": (source.get("branch") or {}).get("name") or "",
                "base_ref": ((pull.get("destination") or {}).get("branch") or {}).get("name"),
                "draft": bool(pull.get("draft")),
                "updated_at": pull.get("updated_on"),
                "title": pull.get("title"),
                "url": ((pull.get("links") or {}).get("html") or {}).get("href"),
                "fork": _from_fork(pull),
            }
        )

    def open_changes(self, repository: str) -> list[ListedChange]:
        """Every open pull request, newest update first. One listing, no call per pull request: the
        head commit is the abbreviated hash Bitbucket lists (the gateway matches prefixes)."""
        endpoint = f"{_repository_path(repository)}/pullrequests"
        params = {"state": "OPEN", "pagelen": 50, "sort": "-updated_on"}
        return self._request(
            lambda: [_change(p) for p in self._pages(endpoint, params)],
            f"the open pull requests of {repository}",
        )

    def first_commit_at(self, repository: str, number: int) -> datetime | None:
        what = f"commits of pull request {repository}#{number}"
        endpoint = f"{_repository_path(repository)}/pullrequests/{number}/commits"
        # Newest first: every page is read to reach the first commit.
        return self._request(
            lambda: earliest(c.get("date") for c in self._pages(endpoint, {"pagelen": 100})), what
        )

    def read_file(self, repository: str, path: str, ref: str) -> str | None:
        what = f"{path} at {ref} in {repository}"
        endpoint = f"{_repository_path(repository)}/src/{quote(ref, safe='')}/{quote(path.strip('/'))}"
        try:
            data = self._request(lambda: self._cloud.get(endpoint, not_json_response=True), what)
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
        comments = f"{_repository_path(repository)}/pullrequests/{number}/comments"
        content = {"content": {"raw": body}}

        def write() -> str:
            if known_id is not None and known_id.isdigit():
                try:
                    edited = self._cloud.put(f"{comments}/{known_id}", data=content)
                    if isinstance(edited, dict) and not edited.get("deleted"):
                        return known_id
                except requests.HTTPError as exc:
                    if exc.response is None or exc.response.status_code != 404:
                        raise
            for comment in self._pages(comments, {"pagelen": self.per_page}) if search else ():
                if _is_marked(comment, marker):
                    self._cloud.put(f"{comments}/{comment['id']}", data=content)
                    return str(comment["id"])
            created = self._cloud.post(comments, data=content)
            if not isinstance(created, dict) or "id" not in created:
                raise HostError(f"{NAME}: unexpected answer creating a comment on {repository}#{number}")
            return str(created["id"])

        return self._request(write, f"the comment on pull request {repository}#{number}", write=True)

    def report_status(
        self, repository: str, number: int, report: StatusReport, memo: ReportMemo | None = None
    ) -> ReportMemo:
        """Not written again when the last report wrote the same (the memo's digest)."""
        check_report(report, number)
        base = _repository_path(repository)

        def write() -> None:
            url, ref = report.link, report.ref
            if url is None or ref is None:
                # The build status needs a link, and the source branch to show on the pull request.
                pull = self._cloud.get(f"{base}/pullrequests/{number}")
                pull = pull if isinstance(pull, dict) else {}
                url = url or ((pull.get("links") or {}).get("html") or {}).get("href")
                ref = ref or ((pull.get("source") or {}).get("branch") or {}).get("name")
            status: dict[str, Any] = {
                "key": BUILD_KEY,
                "state": _BUILD_STATES[report.state],
                "name": BUILD_NAME,
                "description": report.description,
                "url": url,
            }
            if ref:
                status["refname"] = ref
            # A status with the same key is overwritten: the commit shows one.
            self._cloud.post(f"{base}/commit/{quote(report.head_sha, safe='')}/statuses/build", data=status)

        return write_once(
            report,
            memo,
            lambda: self._request(
                write, f"the build status of pull request {repository}#{number}", write=True
            ),
        )

    def permission(self, repository: str, user: str, user_id: str | None = None) -> Permission:
        workspace, slug = owner_and_name(repository, "workspace/repo_slug")
        endpoint = f"workspaces/{quote(workspace, safe='')}/permissions/repositories/{quote(slug, safe='')}"
        # BBQL: the uuid (braces included) is what the API documents; an account id otherwise.
        query = f'user.uuid="{user_id}"' if user_id else f'user.account_id="{user}"'
        what = f"the permission of {user} on {repository}"
        found = self._request(lambda: list(self._pages(endpoint, {"q": query})), what)
        levels = [str(value.get("permission")) for value in found]
        for level in ("admin", "write", "read"):
            if level in levels:
                return Permission(level=level, reported=level)
        return Permission(level="none", reported="no access")

    def identity(self) -> Identity:
        if self._identity is None:
            user = self._get_json("user", "the gateway's own account")
            names = {str(user[name]) for name in ("uuid", "account_id", "nickname") if user.get(name)}
            self._identity = Identity(names=frozenset(names))
        return self._identity

    def react(self, repository: str, number: int, comment_id: str) -> None:
        raise HostError(f"{NAME} has no reactions: answer with a reply")

    def reply(
        self, repository: str, number: int, comment_id: str, body: str, thread_id: str | None = None
    ) -> str:
        if not comment_id.isdigit():
            raise HostError(f"{NAME}: {comment_id!r} is not a comment id")
        comments = f"{_repository_path(repository)}/pullrequests/{number}/comments"
        data = {"content": {"raw": body}, "parent": {"id": int(comment_id)}}

        def write() -> str:
            created = self._cloud.post(comments, data=data)
            if not isinstance(created, dict) or "id" not in created:
                raise HostError(f"{NAME}: unexpected answer replying on {repository}#{number}")
            return str(created["id"])

        return self._request(write, f"a reply on pull request {repository}#{number}", write=True)

    def rate_limits(self) -> dict[str, Budget]:
        return self._pacer.budgets()

    def close(self) -> None:
        self._cloud.close()

    def _pages(self, endpoint: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Every value of a paged list, following its `next` links."""
        page = self._cloud.get(endpoint, params=params)
        while isinstance(page, dict):
            for value in page.get("values") or []:
                if isinstance(value, dict):
                    yield value
            following = page.get("next")
            if not following:
                return
            page = self._cloud.get(following, absolute=True)

    def _observe(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self._pacer.record_headers("token", response.headers)

    def _get_json(self, endpoint: str, what: str) -> dict[str, Any]:
        data = self._request(lambda: self._cloud.get(endpoint), what)
        if not isinstance(data, dict):
            raise HostError(f"{NAME}: unexpected answer reading {what}")
        return data

    def _request(self, call: Callable[[], T], what: str, *, write: bool = False) -> T:
        action = "writing" if write else "reading"

        def attempt() -> T:
            try:
                return call()
            except requests.RequestException as exc:
                raise requests_error(
                    NAME, self.url, exc, what, self._secrets, self._credentials, action
                ) from exc

        return self._pacer.run("token", attempt, write=write)


def _change(pull: dict[str, Any]) -> ListedChange:
    source = pull.get("source") or {}
    destination = pull.get("destination") or {}
    return ListedChange.model_validate(
        {
            "number": pull["id"],
            "state": _STATES.get(str(pull.get("state")), "closed"),
            "head_sha": (source.get("commit") or {}).get("hash") or "",
            "head_ref": (source.get("branch") or {}).get("name") or "",
            "base_ref": (destination.get("branch") or {}).get("name"),
            "draft": bool(pull.get("draft")),
            "updated_at": pull.get("updated_on"),
            "title": pull.get("title"),
            "url": ((pull.get("links") or {}).get("html") or {}).get("href"),
            "fork": _from_fork(pull),
        }
    )


def _from_fork(pull: dict[str, Any]) -> bool:
    """The source repository is not the destination one; a deleted fork leaves none."""
    source = (pull.get("source") or {}).get("repository") or {}
    target = (pull.get("destination") or {}).get("repository") or {}
    if not source:
        return True
    if source.get("uuid") and target.get("uuid"):
        return bool(source["uuid"] != target["uuid"])
    return str(source.get("full_name")).casefold() != str(target.get("full_name")).casefold()


def _is_marked(comment: dict[str, Any], marker: str) -> bool:
    """A live, top-level, general comment holding the marker."""
    if comment.get("deleted") or comment.get("inline") or comment.get("parent"):
        return False
    return marker in str((comment.get("content") or {}).get("raw") or "")


def _repository_path(repository: str) -> str:
    workspace, slug = owner_and_name(repository, "workspace/repo_slug")
    return f"repositories/{quote(workspace, safe='')}/{quote(slug, safe='')}"
