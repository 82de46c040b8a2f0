"""A fake Bitbucket Data Center (Server) REST API (`/rest/api/1.0`): repositories, pull
requests, raw files.

Pages are `{"size", "limit", "start", "isLastPage", "nextPageStart", "values"}`, driven by
`start` / `limit`. Errors are `{"errors": [{"context", "message", "exceptionName"}]}` with the
`application/json;charset=UTF-8` type Data Center sends. Credentials: HTTP access tokens (Bearer).
Comments, activities and build statuses are served by `bitbucket_server_writes`; repository and
project hooks by `bitbucket_server_hooks`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .base import Failure, FakeHost, Request, Response, fake_sha, parse_authorization
from .bitbucket_server_hooks import BitbucketServerHooks, ServerHook
from .bitbucket_server_writes import Activity, BitbucketServerWrites, ServerBuildStatus, ServerComment

JSON = "application/json;charset=UTF-8"
_EXCEPTIONS = {
    401: "com.atlassian.bitbucket.auth.IncorrectPasswordAuthenticationException",
    404: "com.atlassian.bitbucket.NoSuchEntityException",
}


def millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


@dataclass
class ServerPullRequest:
    id: int
    latest_commit: str
    from_branch: str
    to_branch: str = "main"
    state: str = "OPEN"  # OPEN, MERGED, DECLINED
    draft: bool = False
    title: str = "A change"
    updated: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))
    created: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))


@dataclass
class ServerRepository:
    project_key: str
    slug: str
    id: int
    default_branch: str = "main"
    pull_requests: dict[int, ServerPullRequest] = field(default_factory=dict)
    files: dict[str, dict[str, bytes]] = field(default_factory=dict)  # branch or SHA -> path -> bytes
    comments: dict[int, ServerComment] = field(default_factory=dict)
    activities: list[Activity] = field(default_factory=list)  # oldest first
    build_statuses: dict[tuple[str, str], ServerBuildStatus] = field(default_factory=dict)  # (SHA, key)
    hooks: dict[int, ServerHook] = field(default_factory=dict)


class FakeBitbucketServer(BitbucketServerHooks, BitbucketServerWrites, FakeHost):
    name = "bitbucket-server"
    prefix = "/rest/api/1.0"

    def __init__(self) -> None:
        super().__init__()
        self.repositories: dict[tuple[str, str], ServerRepository] = {}
        self.tokens: set[str] = set()
        self._ids = itertools.count(1)

    # -- state, for tests ----------------------------------------------------------------------

    def add_token(self, token: str) -> None:
        with self.lock:
            self.tokens.add(token)

    def add_repository(self, name: str) -> ServerRepository:
        key, slug = name.split("/")
        with self.lock:
            repository = ServerRepository(key, slug, next(self._ids))
            self.repositories[key.upper(), slug.lower()] = repository
            return repository

    def add_pull_request(self, name: str, id: int, **fields: Any) -> ServerPullRequest:
        fields.setdefault("latest_commit", fake_sha(f"{name}#{id}"))
        fields.setdefault("from_branch", f"feature-{id}")
        key, slug = name.split("/")
        with self.lock:
            pull = ServerPullRequest(id=id, **fields)
            repository = self.repositories[key.upper(), slug.lower()]
            repository.pull_requests[id] = pull
            repository.activities.append(Activity(next(self._write_ids), id, "OPENED", "dev"))
            return pull

    def add_file(self, name: str, path: str, content: str | bytes, ref: str) -> None:
        data = content.encode() if isinstance(content, str) else content
        key, slug = name.split("/")
        with self.lock:
            self.repositories[key.upper(), slug.lower()].files.setdefault(ref, {})[path.strip("/")] = data

    # -- the host's conventions ----------------------------------------------------------------

    def error(self, status: int, message: str, exception: str | None = None) -> Response:
        exception = exception or _EXCEPTIONS.get(status, "com.atlassian.bitbucket.ServiceException")
        body = {"errors": [{"context": None, "message": message, "exceptionName": exception}]}
        return Response(status, body, content_type=JSON)

    def authenticate(self, request: Request) -> None:
        scheme, credential = parse_authorization(request.headers)
        if scheme != "bearer" or credential not in self.tokens:
            raise Failure(401, "Authentication failed. Please check your credentials and try again.")
        request.principal = credential

    # -- routes --------------------------------------------------------------------------------

    def routes(self) -> None:
        add = self.router.add
        base = "/projects/{key}/repos/{slug}"
        add("GET", base, self.get_repository)
        add("GET", f"{base}/pull-requests", self.list_pull_requests)
        add("GET", f"{base}/pull-requests/{{id}}", self.get_pull_request)
        add("GET", f"{base}/raw/{{path:path}}", self.get_raw)
        self.write_routes(add)
        self.hook_routes(add)

    def _repository(self, request: Request) -> ServerRepository:
        key, slug = request.params["key"], request.params["slug"]
        repository = self.repositories.get((key.upper(), slug.lower()))
        if repository is None:
            raise Failure(404, f"Repository {slug} of project {key} does not exist.")
        return repository

    def get_repository(self, request: Request) -> Response:
        return Response(200, self.repository_json(self._repository(request)), content_type=JSON)

    def get_pull_request(self, request: Request) -> Response:
        repository = self._repository(request)
        id = request.params["id"]
        pull = repository.pull_requests.get(int(id)) if id.isdigit() else None
        if pull is None:
            raise Failure(
                404, f"Pull request {id} does not exist in {repository.project_key}/{repository.slug}."
            )
        return Response(200, self.pull_request_json(repository, pull), content_type=JSON)

    def list_pull_requests(self, request: Request) -> Response:
        repository = self._repository(request)
        state = request.query.get("state", "OPEN").upper()
        pulls = [
            p
            for p in sorted(repository.pull_requests.values(), key=lambda p: -p.id)
            if state == "ALL" or p.state == state
        ]
        start = request.int_param("start", 0)
        limit = max(1, min(1000, request.int_param("limit", 25)))
        values = pulls[start : start + limit]
        last = start + limit >= len(pulls)
        body: dict[str, Any] = {
            "size": len(values),
            "limit": limit,
            "isLastPage": last,
            "values": [self.pull_request_json(repository, p) for p in values],
            "start": start,
        }
        if not last:
            body["nextPageStart"] = start + limit
        return Response(200, body, content_type=JSON)

    def get_raw(self, request: Request) -> Response:
        repository = self._repository(request)
        at = request.query.get("at") or repository.default_branch
        files = repository.files.get(at.removeprefix("refs/heads/"))
        if files is None:
            raise Failure(404, f"Commit '{at}' does not exist in repository '{repository.slug}'.")
        path = request.params["path"].strip("/")
        if path not in files:
            raise Failure(404, f'The path "{path}" does not exist at revision "{at}"')
        return Response(200, files[path], content_type="text/plain;charset=UTF-8")

    # -- JSON shapes ---------------------------------------------------------------------------

    def project_json(self, key: str) -> dict[str, Any]:
        return {
            "key": key,
            "id": sum(map(ord, key)),
            "name": key.title(),
            "public": False,
            "type": "NORMAL",
            "links": {"self": [{"href": f"{self.origin}/projects/{key}"}]},
        }

    def repository_json(self, repository: ServerRepository) -> dict[str, Any]:
        browse = f"{self.origin}/projects/{repository.project_key}/repos/{repository.slug}/browse"
        return {
            "slug": repository.slug,
            "id": repository.id,
            "name": repository.slug,
            "hierarchyId": fake_sha(repository.slug)[:20],
            "scmId": "git",
            "state": "AVAILABLE",
            "statusMessage": "Available",
            "forkable": True,
            "project": self.project_json(repository.project_key),
            "public": False,
            "archived": False,
            "links": {
                "clone": [
                    {
                        "href": f"{self.origin}/scm/{repository.project_key.lower()}/{repository.slug}.git",
                        "name": "http",
                    }
                ],
                "self": [{"href": browse}],
            },
        }

    def ref_json(self, repository: ServerRepository, branch: str, commit: str) -> dict[str, Any]:
        return {
            "id": f"refs/heads/{branch}",
            "displayId": branch,
            "latestCommit": commit,
            "type": "BRANCH",
            "repository": self.repository_json(repository),
        }

    def pull_request_json(self, repository: ServerRepository, pull: ServerPullRequest) -> dict[str, Any]:
        user = {
            "name": "dev",
            "emailAddress": "dev@example.com",
            "id": 1,
            "displayName": "Dev",
            "active": True,
            "slug": "dev",
            "type": "NORMAL",
        }
        base = f"{self.origin}/projects/{repository.project_key}/repos/{repository.slug}"
        body: dict[str, Any] = {
            "id": pull.id,
            "version": 0,
            "title": pull.title,
            "description": "",
            "state": pull.state,
            "open": pull.state == "OPEN",
            "closed": pull.state != "OPEN",
            "draft": pull.draft,
            "createdDate": millis(pull.created),
            "updatedDate": millis(pull.updated),
            "fromRef": self.ref_json(repository, pull.from_branch, pull.latest_commit),
            "toRef": self.ref_json(
                repository, pull.to_branch, fake_sha(f"{repository.slug}:{pull.to_branch}")
            ),
            "locked": False,
            "author": {"user": user, "role": "AUTHOR", "approved": False, "status": "UNAPPROVED"},
            "reviewers": [],
            "participants": [],
            "links": {"self": [{"href": f"{base}/pull-requests/{pull.id}"}]},
        }
        if pull.state != "OPEN":
            body["closedDate"] = millis(pull.updated)
        return body
