"""A fake Bitbucket Data Center (Server) REST API (`/rest/api/1.0`): repositories, pull
requests, raw files.

Pages are `{"size", "limit", "start", "isLastPage", "nextPageStart", "values"}`, driven by
`start` / `limit`. Errors are `{"errors": [{"context", "message", "exceptionName"}]}` with the
`application/json;charset=UTF-8` type Data Center sends. Credentials: HTTP access tokens (Bearer),
each acting as a user, whom every authenticated answer names in `X-AUSERNAME` (and `X-AUSERID`).
`/rest/api/latest/...` is served as `/rest/api/1.0/...`, as Data Center does. Comments (and replies),
reactions (`/rest/comment-likes/latest/...`), activities and build statuses are served by
`bitbucket_server_writes`; repository and project hooks by `bitbucket_server_hooks`.

Permissions, as Data Center computes them: a user's permission on a repository is the highest
that any grant implies: the repository's grant to them or to a group of theirs (REPO_READ <
REPO_WRITE < REPO_ADMIN), the project's (PROJECT_READ, PROJECT_WRITE, PROJECT_ADMIN imply the
REPO_ ones), a global ADMIN or SYS_ADMIN (REPO_ADMIN everywhere), and a public repository (REPO_READ
for everyone). `GET /users?permission=REPO_WRITE&permission.projectKey=…&permission.repositorySlug=…`
lists the users who hold at least that, `filter` matching part of a name, slug, display name or
e-mail address. A pull request from a fork has a source repository of its own.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .base import Failure, FakeHost, Request, Response, fake_sha, parse_authorization
from .bitbucket_server_hooks import BitbucketServerHooks, ServerHook
from .bitbucket_server_writes import Activity, BitbucketServerWrites, ServerBuildStatus, ServerComment, page

JSON = "application/json;charset=UTF-8"
API = "/rest/api/1.0"
LATEST = "/rest/api/latest"
LIKES = "/rest/comment-likes/latest"
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
    # (sha, authored at), oldest first; empty: the latest commit alone, at creation.
    commits: list[tuple[str, datetime]] = field(default_factory=list)
    # "": the repository's own branch; `KEY/slug`: a fork's.
    from_repository: str = ""


REPO_LEVELS = ("REPO_READ", "REPO_WRITE", "REPO_ADMIN")
PROJECT_IMPLIES = {"PROJECT_READ": "REPO_READ", "PROJECT_WRITE": "REPO_WRITE", "PROJECT_ADMIN": "REPO_ADMIN"}


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
    user_grants: dict[str, str] = field(default_factory=dict)  # user name (lower case) -> REPO_*
    group_grants: dict[str, str] = field(default_factory=dict)  # group -> REPO_*
    public: bool = False
    hooks: dict[int, ServerHook] = field(default_factory=dict)


class FakeBitbucketServer(BitbucketServerHooks, BitbucketServerWrites, FakeHost):
    name = "bitbucket-server"
    prefix = "/rest/api/1.0"

    def __init__(self) -> None:
        super().__init__()
        self.repositories: dict[tuple[str, str], ServerRepository] = {}
        self.tokens: set[str] = set()
        self._ids = itertools.count(1)
        self.users: dict[str, int] = {}  # user name (lower case) -> id
        self.token_users: dict[str, str] = {}  # token -> the user it acts as
        self.groups: dict[str, set[str]] = {}  # group -> user names (lower case)
        self.project_grants: dict[str, dict[str, str]] = {}  # project key -> user or @group -> PROJECT_*
        self.global_grants: dict[
            str, str
        ] = {}  # user name -> LICENSED_USER, PROJECT_CREATE, ADMIN, SYS_ADMIN
        self.add_user(self.bot_name)

    # -- state, for tests ----------------------------------------------------------------------

    def add_token(self, token: str, user: str | None = None) -> None:
        with self.lock:
            self.tokens.add(token)
            self.token_users[token] = user or self.bot_name

    def add_user(self, name: str) -> int:
        with self.lock:
            return self.users.setdefault(name.lower(), 100 + len(self.users))

    def grant(self, name: str, user: str, permission: str) -> None:
        """A repository permission (REPO_*) for a user, or for a group written `@group`."""
        assert permission in REPO_LEVELS, permission
        key, slug = name.split("/")
        with self.lock:
            repository = self.repositories[key.upper(), slug.lower()]
            if user.startswith("@"):
                repository.group_grants[user[1:]] = permission
            else:
                self.add_user(user)
                repository.user_grants[user.lower()] = permission

    def grant_project(self, key: str, user: str, permission: str) -> None:
        """A project permission (PROJECT_*) for a user, or for a group written `@group`."""
        assert permission in PROJECT_IMPLIES, permission
        with self.lock:
            if not user.startswith("@"):
                self.add_user(user)
            self.project_grants.setdefault(key.upper(), {})[user.lower()] = permission

    def add_to_group(self, group: str, user: str) -> None:
        self.add_user(user)
        with self.lock:
            self.groups.setdefault(group, set()).add(user.lower())

    def permission_of(self, repository: ServerRepository, user: str) -> str | None:
        """The highest REPO_ permission any grant implies for the user."""
        user = user.lower()
        groups = {group for group, members in self.groups.items() if user in members}
        held = [repository.user_grants.get(user)]
        held += [level for group, level in repository.group_grants.items() if group in groups]
        for who, level in self.project_grants.get(repository.project_key.upper(), {}).items():
            if who == user or (who.startswith("@") and who[1:] in groups):
                held.append(PROJECT_IMPLIES[level])
        if self.global_grants.get(user) in ("ADMIN", "SYS_ADMIN"):
            held.append("REPO_ADMIN")
        if repository.public:
            held.append("REPO_READ")
        found = [level for level in held if level is not None]
        return max(found, key=REPO_LEVELS.index) if found else None

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

    def finish(self, request: Request, response: Response) -> None:
        # Data Center names the signed-in user on every answer it gives one.
        user = self.token_users.get(str(request.principal)) if request.principal else None
        if user is not None:
            response.headers.setdefault("X-AUSERNAME", user)
            response.headers.setdefault("X-AUSERID", str(self.users.get(user.lower(), 0)))

    def _route(self, request: Request) -> Response:
        if request.path.startswith(LATEST):
            request.path = API + request.path[len(LATEST) :]
        if request.path.startswith(LIKES + "/"):
            try:
                self.authenticate(request)
                found = self.likes.match(request.method, request.path[len(LIKES) :])
                if found is None:
                    return self.not_found_route(request)
                handler, request.params = found
                return handler(request)
            except Failure as failure:
                return self.error(failure.status, failure.message)
        return super()._route(request)

    # -- routes --------------------------------------------------------------------------------

    def routes(self) -> None:
        add = self.router.add
        base = "/projects/{key}/repos/{slug}"
        add("GET", "/application-properties", self.get_application_properties)
        add("GET", "/users", self.list_users)
        add("GET", base, self.get_repository)
        add("GET", f"{base}/pull-requests", self.list_pull_requests)
        add("GET", f"{base}/pull-requests/{{id}}", self.get_pull_request)
        add("GET", f"{base}/pull-requests/{{id}}/commits", self.list_pull_request_commits)
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

    def get_application_properties(self, request: Request) -> Response:
        return Response(
            200,
            {
                "version": "9.2.0",
                "buildNumber": "9002000",
                "buildDate": "1719388800000",
                "displayName": "Bitbucket",
            },
            content_type=JSON,
        )

    def list_users(self, request: Request) -> Response:
        """Users, `filter` matching part of their name, slug, display name or e-mail address;
        with `permission` (and its project key and repository slug), only those who hold it."""
        wanted = (request.query.get("filter") or "").lower()
        permission = request.query.get("permission")
        repository: ServerRepository | None = None
        if permission is not None:
            if permission not in REPO_LEVELS:
                raise Failure(400, f"Invalid permission: {permission}")
            key = request.query.get("permission.projectKey", "")
            slug = request.query.get("permission.repositorySlug", "")
            repository = self.repositories.get((key.upper(), slug.lower()))
            if repository is None:
                raise Failure(404, f"Repository {slug} of project {key} does not exist.")
        found = []
        for name in sorted(self.users):
            user = self.user_json(name)
            text = " ".join(str(user[f]) for f in ("name", "slug", "displayName", "emailAddress")).lower()
            if wanted and wanted not in text:
                continue
            if repository is not None and permission is not None:
                held = self.permission_of(repository, name)
                if held is None or REPO_LEVELS.index(held) < REPO_LEVELS.index(permission):
                    continue
            found.append(user)
        return page(request, found, lambda user: user)

    def get_pull_request(self, request: Request) -> Response:
        repository = self._repository(request)
        id = request.params["id"]
        pull = repository.pull_requests.get(int(id)) if id.isdigit() else None
        if pull is None:
            raise Failure(
                404, f"Pull request {id} does not exist in {repository.project_key}/{repository.slug}."
            )
        return Response(200, self.pull_request_json(repository, pull), content_type=JSON)

    def list_pull_request_commits(self, request: Request) -> Response:
        """Newest first, paged by `start` and `limit`, as Data Center lists them."""
        repository = self._repository(request)
        id = request.params["id"]
        pull = repository.pull_requests.get(int(id)) if id.isdigit() else None
        if pull is None:
            raise Failure(
                404, f"Pull request {id} does not exist in {repository.project_key}/{repository.slug}."
            )
        commits = list(reversed(pull.commits or [(pull.latest_commit, pull.created)]))
        start = request.int_param("start", 0)
        limit = max(1, min(1000, request.int_param("limit", 25)))
        values = commits[start : start + limit]
        last = start + limit >= len(commits)
        body: dict[str, Any] = {
            "size": len(values),
            "limit": limit,
            "isLastPage": last,
            "start": start,
            "values": [
                {
                    "id": sha,
                    "displayId": sha[:11],
                    "author": {"name": "admin", "emailAddress": "admin@example.com"},
                    "authorTimestamp": millis(at),
                    # A rebase rewrites the committer's time; the author's stays.
                    "committerTimestamp": millis(datetime.now(UTC)),
                    "message": "A commit",
                    "parents": [],
                }
                for sha, at in values
            ],
        }
        if not last:
            body["nextPageStart"] = start + limit
        return Response(200, body, content_type=JSON)

    def list_pull_requests(self, request: Request) -> Response:
        repository = self._repository(request)
        state = request.query.get("state", "OPEN").upper()
        pulls = [
            p
            for p in sorted(repository.pull_requests.values(), key=lambda p: -p.id)
            if state == "ALL" or p.state == state
        ]
        return page(request, pulls, lambda p: self.pull_request_json(repository, p))

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

    def fork_json(self, name: str) -> dict[str, Any]:
        key, slug = name.split("/")
        return self.repository_json(ServerRepository(key, slug, 10_000 + sum(map(ord, name))))

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
            "fromRef": self.ref_json(repository, pull.from_branch, pull.latest_commit)
            | ({"repository": self.fork_json(pull.from_repository)} if pull.from_repository else {}),
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
