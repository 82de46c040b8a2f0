"""The write side of the fake Bitbucket Cloud: pull request comments and commit build statuses.

A comment may answer another (`parent.id`, which must be a comment of the same pull request).

Mixed into `FakeBitbucketCloud`, whose repositories hold the state. As on Bitbucket Cloud: comments
are listed oldest first, paged with `page` / `pagelen` (at most 100) and a `next` URL; a deleted
comment stays in the list with `deleted: true` and its text emptied, and cannot be edited (404); a
build status is keyed per commit: posting one with a key the commit has replaces it; `url` and
`key` are required and `state` is one of SUCCESSFUL, FAILED, INPROGRESS, STOPPED (400 else, with
the fields named).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from .base import Failure, Request, Response, page_of

if TYPE_CHECKING:
    from .bitbucket_cloud import CloudAccount, CloudRepository

BUILD_STATES = frozenset({"SUCCESSFUL", "FAILED", "INPROGRESS", "STOPPED"})


def now() -> datetime:
    return datetime.now(UTC)


@dataclass
class CloudComment:
    id: int
    pull_request: int
    raw: str
    user: str
    parent: int | None = None
    inline: dict[str, Any] | None = None
    deleted: bool = False
    created_on: datetime = field(default_factory=now)
    updated_on: datetime = field(default_factory=now)


@dataclass
class BuildStatus:
    commit: str  # full SHA
    key: str
    state: str
    url: str
    name: str | None
    description: str | None
    refname: str | None
    uuid: str = field(default_factory=lambda: "{" + str(uuid.uuid4()) + "}")
    created_on: datetime = field(default_factory=now)
    updated_on: datetime = field(default_factory=now)
    history: list[str] = field(default_factory=list)  # every state it was given, in order


class BitbucketCloudWrites:
    """Handlers for the write endpoints; `FakeBitbucketCloud` provides the rest."""

    # Provided by FakeBitbucketCloud.
    url: str
    origin: str
    lock: Any
    repositories: dict[str, CloudRepository]
    accounts: dict[str, CloudAccount]
    caller: Callable[[Request], CloudAccount]
    _repository: Callable[[Request], CloudRepository]
    _resolve: Callable[[CloudRepository, str], str | None]
    commit_ref_json: Callable[[CloudRepository, str], dict[str, Any]]

    _write_ids = itertools.count(70000)

    def write_routes(self, add: Callable[[str, str, Callable[[Request], Response]], None]) -> None:
        base = "/repositories/{workspace}/{slug}"
        add("GET", f"{base}/pullrequests/{{id}}/comments", self.list_comments)
        add("POST", f"{base}/pullrequests/{{id}}/comments", self.create_comment)
        add("GET", f"{base}/pullrequests/{{id}}/comments/{{comment_id}}", self.get_comment)
        add("PUT", f"{base}/pullrequests/{{id}}/comments/{{comment_id}}", self.update_comment)
        add("DELETE", f"{base}/pullrequests/{{id}}/comments/{{comment_id}}", self.delete_comment)
        add("GET", f"{base}/commit/{{commit}}/statuses", self.list_statuses)
        add("POST", f"{base}/commit/{{commit}}/statuses/build", self.create_build_status)
        add("GET", f"{base}/commit/{{commit}}/statuses/build/{{key}}", self.get_build_status)
        add("PUT", f"{base}/commit/{{commit}}/statuses/build/{{key}}", self.update_build_status)

    # -- state, for tests ----------------------------------------------------------------------

    def add_comment(
        self, full_name: str, pull_request: int, raw: str, user: str = "Dev", **fields: Any
    ) -> CloudComment:
        with self.lock:
            comment = CloudComment(next(self._write_ids), pull_request, raw, user, **fields)
            self.repositories[full_name.lower()].comments[comment.id] = comment
            return comment

    def comments(self, full_name: str, pull_request: int) -> list[CloudComment]:
        with self.lock:
            repository = self.repositories[full_name.lower()]
            return [
                c
                for c in sorted(repository.comments.values(), key=lambda c: c.id)
                if c.pull_request == pull_request
            ]

    def build_statuses(self, full_name: str) -> list[BuildStatus]:
        with self.lock:
            return list(self.repositories[full_name.lower()].build_statuses.values())

    # -- helpers -------------------------------------------------------------------------------

    def _bad_request(self, fields: dict[str, list[str]]) -> Response:
        return Response(400, {"type": "error", "error": {"message": "Bad request", "fields": fields}})

    def _body(self, request: Request) -> dict[str, Any]:
        try:
            data = request.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise Failure(400, "Bad request")
        return data

    def _paged(self, request: Request, items: Sequence[Any], render: Callable[[Any], Any]) -> Response:
        page = request.int_param("page", 1)
        pagelen = min(100, max(1, request.int_param("pagelen", 10)))
        chosen, last = page_of(items, page, pagelen)
        body: dict[str, Any] = {
            "pagelen": pagelen,
            "size": len(items),
            "page": page,
            "values": [render(item) for item in chosen],
        }
        if page < last:
            body["next"] = (
                f"{self.origin}{request.path}?{urlencode({**request.query, 'page': page + 1, 'pagelen': pagelen})}"
            )
        if page > 1:
            body["previous"] = (
                f"{self.origin}{request.path}?{urlencode({**request.query, 'page': page - 1, 'pagelen': pagelen})}"
            )
        return Response(200, body)

    def _pull_request_id(self, repository: CloudRepository, request: Request) -> int:
        wanted = request.params["id"]
        if not wanted.isdigit() or int(wanted) not in repository.pull_requests:
            raise Failure(404, "Resource not found")
        return int(wanted)

    def _comment(self, repository: CloudRepository, request: Request) -> CloudComment:
        pull_request = self._pull_request_id(repository, request)
        wanted = request.params["comment_id"]
        comment = repository.comments.get(int(wanted)) if wanted.isdigit() else None
        if comment is None or comment.pull_request != pull_request:
            raise Failure(404, "Resource not found")
        return comment

    def _raw(self, request: Request) -> str | None:
        content = self._body(request).get("content")
        raw = content.get("raw") if isinstance(content, dict) else None
        return raw if isinstance(raw, str) and raw.strip() else None

    def _commit(self, repository: CloudRepository, request: Request) -> str:
        sha = self._resolve(repository, request.params["commit"])
        if sha is None or sha not in repository.commits:
            raise Failure(404, f"Commit not found: {request.params['commit']}")
        return sha

    # -- comments ------------------------------------------------------------------------------

    def list_comments(self, request: Request) -> Response:
        repository = self._repository(request)
        pull_request = self._pull_request_id(repository, request)
        found = [
            c
            for c in sorted(repository.comments.values(), key=lambda c: c.id)
            if c.pull_request == pull_request
        ]
        return self._paged(request, found, lambda c: self.comment_json(repository, c))

    def create_comment(self, request: Request) -> Response:
        repository = self._repository(request)
        pull_request = self._pull_request_id(repository, request)
        raw = self._raw(request)
        if raw is None:
            return self._bad_request({"content": ["This field is required."]})
        parent = self._body(request).get("parent")
        parent_id = parent.get("id") if isinstance(parent, dict) else None
        if parent is not None:
            known = repository.comments.get(parent_id) if isinstance(parent_id, int) else None
            if known is None or known.pull_request != pull_request:
                raise Failure(404, "Resource not found")
        user = self.caller(request).nickname
        comment = CloudComment(next(self._write_ids), pull_request, raw, user, parent=parent_id)
        repository.comments[comment.id] = comment
        return Response(201, self.comment_json(repository, comment))

    def get_comment(self, request: Request) -> Response:
        repository = self._repository(request)
        return Response(200, self.comment_json(repository, self._comment(repository, request)))

    def update_comment(self, request: Request) -> Response:
        repository = self._repository(request)
        comment = self._comment(repository, request)
        if comment.deleted:
            raise Failure(404, "Resource not found")
        raw = self._raw(request)
        if raw is None:
            return self._bad_request({"content": ["This field is required."]})
        comment.raw, comment.updated_on = raw, now()
        return Response(200, self.comment_json(repository, comment))

    def delete_comment(self, request: Request) -> Response:
        repository = self._repository(request)
        comment = self._comment(repository, request)
        comment.deleted, comment.raw, comment.updated_on = True, "", now()
        return Response(204)

    # -- build statuses ------------------------------------------------------------------------

    def create_build_status(self, request: Request) -> Response:
        repository = self._repository(request)
        sha = self._commit(repository, request)
        data = self._body(request)
        problems = {
            name: ["This field is required."] for name in ("key", "state", "url") if not data.get(name)
        }
        if data.get("state") and data["state"] not in BUILD_STATES:
            problems["state"] = [f"'{data['state']}' is not a valid choice."]
        if problems:
            return self._bad_request(problems)
        status = repository.build_statuses.get((sha, data["key"]))
        if status is None:
            status = BuildStatus(sha, data["key"], data["state"], data["url"], None, None, None)
            repository.build_statuses[sha, data["key"]] = status
        self._apply(status, data)
        return Response(201, self.status_json(repository, status))

    def update_build_status(self, request: Request) -> Response:
        repository = self._repository(request)
        sha = self._commit(repository, request)
        status = repository.build_statuses.get((sha, request.params["key"]))
        if status is None:
            raise Failure(404, "Resource not found")
        data = self._body(request)
        if data.get("state") and data["state"] not in BUILD_STATES:
            return self._bad_request({"state": [f"'{data['state']}' is not a valid choice."]})
        self._apply(status, {**data, "key": status.key})
        return Response(200, self.status_json(repository, status))

    def get_build_status(self, request: Request) -> Response:
        repository = self._repository(request)
        sha = self._commit(repository, request)
        status = repository.build_statuses.get((sha, request.params["key"]))
        if status is None:
            raise Failure(404, "Resource not found")
        return Response(200, self.status_json(repository, status))

    def list_statuses(self, request: Request) -> Response:
        repository = self._repository(request)
        sha = self._commit(repository, request)
        found = [s for s in repository.build_statuses.values() if s.commit == sha]
        return self._paged(request, found, lambda s: self.status_json(repository, s))

    def _apply(self, status: BuildStatus, data: dict[str, Any]) -> None:
        for name in ("state", "url", "name", "description", "refname"):
            if name in data:
                setattr(status, name, data[name])
        status.history.append(status.state)
        status.updated_on = now()

    # -- JSON shapes ---------------------------------------------------------------------------

    def comment_json(self, repository: CloudRepository, comment: CloudComment) -> dict[str, Any]:
        api = f"{self.url}/repositories/{repository.full_name}/pullrequests/{comment.pull_request}"
        html = f"{self.origin}/{repository.full_name}/pull-requests/{comment.pull_request}"
        body: dict[str, Any] = {
            "id": comment.id,
            "type": "pullrequest_comment",
            "created_on": comment.created_on.isoformat(),
            "updated_on": comment.updated_on.isoformat(),
            "content": {
                "type": "rendered",
                "raw": comment.raw,
                "markup": "markdown",
                "html": f"<p>{comment.raw}</p>",
            },
            "user": (
                self.accounts[comment.user.lower()].json()
                if comment.user.lower() in self.accounts
                else {
                    "type": "user",
                    "display_name": comment.user,
                    "uuid": "{00000000-0000-0000-0000-000000000002}",
                }
            ),
            "deleted": comment.deleted,
            "pending": False,
            "pullrequest": {
                "type": "pullrequest",
                "id": comment.pull_request,
                "links": {"self": {"href": api}, "html": {"href": html}},
            },
            "links": {
                "self": {"href": f"{api}/comments/{comment.id}"},
                "html": {"href": f"{html}#comment-{comment.id}"},
            },
        }
        if comment.parent is not None:
            body["parent"] = {"id": comment.parent}
        if comment.inline is not None:
            body["inline"] = comment.inline
        return body

    def status_json(self, repository: CloudRepository, status: BuildStatus) -> dict[str, Any]:
        api = f"{self.url}/repositories/{repository.full_name}/commit/{status.commit}"
        return {
            "type": "build",
            "uuid": status.uuid,
            "key": status.key,
            "state": status.state,
            "name": status.name,
            "description": status.description,
            "url": status.url,
            "refname": status.refname,
            "created_on": status.created_on.isoformat(),
            "updated_on": status.updated_on.isoformat(),
            "commit": self.commit_ref_json(repository, status.commit),
            "links": {
                "self": {"href": f"{api}/statuses/build/{status.key}"},
                "commit": {"href": api},
            },
        }
