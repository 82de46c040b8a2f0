"""A fake Bitbucket Cloud REST API (2.0): repositories, pull requests, commits, `src`.

A pull request names its commits by 12-character hashes, as Bitbucket Cloud does; the commit
endpoint resolves a hash prefix to the full commit. Lists are paged with `page` / `pagelen` and a
`next` URL. Errors are `{"type": "error", "error": {"message": ...}}`. Credentials: HTTP Basic
(user name and API token / app password) or a Bearer access token; with `rate_limit` set, answers
to an access token carry `X-RateLimit-Limit`, `-Resource` and `-NearLimit` (Bitbucket sends no
remaining count: a test adds `X-RateLimit-Remaining` with a fault's headers), and a spent budget
answers 429. Comments (and replies to them) and build statuses are served by
`bitbucket_cloud_writes`; repository and workspace hooks by `bitbucket_cloud_hooks`.

Accounts and access: each credential acts as an account (`GET /user`; an access token as its own
bot account, which is how the docs say it appears in API answers). A user's permission on a
repository is the highest of their own grant and their groups' grants, as
`GET /workspaces/{ws}/permissions/repositories/{slug}?q=user.uuid="{…}"` (or
`user.account_id="…"`) lists it; the caller must be an admin of the repository (403 otherwise);
no grant, no entry. A pull request from a fork has a source repository of its own, or none
when the fork was deleted.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from .base import Failure, FakeHost, Request, Response, fake_sha, page_of, parse_authorization
from .bitbucket_cloud_hooks import BitbucketCloudHooks, CloudHook
from .bitbucket_cloud_writes import BitbucketCloudWrites, BuildStatus, CloudComment

SHORT = 12


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


@dataclass
class CloudPullRequest:
    id: int
    source_commit: str  # full SHA; payloads show its first 12 characters
    source_branch: str
    destination_branch: str = "main"
    state: str = "OPEN"  # OPEN, MERGED, DECLINED, SUPERSEDED
    draft: bool = False
    title: str = "A change"
    updated_on: datetime = field(default_factory=lambda: datetime.now(UTC))
    created_on: datetime = field(default_factory=lambda: datetime.now(UTC))
    # (full sha, authored at), oldest first; empty: the source commit alone, at creation.
    commits: list[tuple[str, datetime]] = field(default_factory=list)
    # "": the repository's own branch; `workspace/slug`: a fork's; None: the fork was deleted.
    source_repository: str | None = ""


@dataclass(frozen=True)
class CloudAccount:
    nickname: str
    uuid: str = field(default_factory=lambda: "{" + str(uuid.uuid4()) + "}")
    account_id: str = field(default_factory=lambda: uuid.uuid4().hex[:24])

    def json(self) -> dict[str, Any]:
        return {
            "type": "user",
            "uuid": self.uuid,
            "account_id": self.account_id,
            "nickname": self.nickname,
            "display_name": self.nickname.title(),
        }


LEVELS = ("read", "write", "admin")


@dataclass
class CloudRepository:
    workspace: str
    slug: str
    uuid: str = field(default_factory=lambda: "{" + str(uuid.uuid4()) + "}")
    main_branch: str = "main"
    pull_requests: dict[int, CloudPullRequest] = field(default_factory=dict)
    commits: set[str] = field(default_factory=set)  # full SHAs
    files: dict[str, dict[str, bytes]] = field(default_factory=dict)  # branch or full SHA -> path -> bytes
    comments: dict[int, CloudComment] = field(default_factory=dict)
    build_statuses: dict[tuple[str, str], BuildStatus] = field(default_factory=dict)  # (SHA, key)
    grants: dict[str, str] = field(default_factory=dict)  # account uuid -> read / write / admin
    group_grants: list[tuple[str, str, set[str]]] = field(default_factory=list)  # (group, level, uuids)
    hooks: dict[str, CloudHook] = field(default_factory=dict)  # by UUID

    @property
    def full_name(self) -> str:
        return f"{self.workspace}/{self.slug}"


class FakeBitbucketCloud(BitbucketCloudHooks, BitbucketCloudWrites, FakeHost):
    name = "bitbucket-cloud"
    prefix = "/2.0"

    def __init__(self) -> None:
        super().__init__()
        self.repositories: dict[str, CloudRepository] = {}
        self.basic: set[tuple[str, str]] = set()  # (user name, token)
        self.bearer: set[str] = set()
        self.rate_limit: int | None = None  # requests an hour per access token
        self.rate_remaining = 0
        self.accounts: dict[str, CloudAccount] = {}  # nickname (lower case) -> account
        # The bot account an access token acts as, and whether it is admin of the repositories.
        self.token_account = self.add_account("k8s-ee-access-token")
        self.token_is_admin = True

    # -- state, for tests ----------------------------------------------------------------------

    def add_basic(self, username: str, token: str) -> None:
        with self.lock:
            self.basic.add((username, token))
        self.add_account(username)

    def add_account(self, nickname: str) -> CloudAccount:
        with self.lock:
            return self.accounts.setdefault(nickname.lower(), CloudAccount(nickname))

    def grant(self, full_name: str, account: CloudAccount, level: str) -> None:
        assert level in LEVELS, level
        with self.lock:
            self.repositories[full_name.lower()].grants[account.uuid] = level

    def grant_group(self, full_name: str, group: str, level: str, members: list[CloudAccount]) -> None:
        assert level in LEVELS, level
        with self.lock:
            self.repositories[full_name.lower()].group_grants.append(
                (group, level, {member.uuid for member in members})
            )

    def level_of(self, repository: CloudRepository, account_uuid: str) -> str | None:
        held = [repository.grants.get(account_uuid)] + [
            level for _, level, members in repository.group_grants if account_uuid in members
        ]
        found = [level for level in held if level is not None]
        return max(found, key=LEVELS.index) if found else None

    def caller(self, request: Request) -> CloudAccount:
        if request.principal == "access-token":
            return self.token_account
        return self.accounts[str(request.principal).lower()]

    def add_bearer(self, token: str) -> None:
        with self.lock:
            self.bearer.add(token)

    def add_repository(self, full_name: str) -> CloudRepository:
        workspace, slug = full_name.split("/")
        with self.lock:
            repository = CloudRepository(workspace, slug)
            self.repositories[full_name.lower()] = repository
            return repository

    def add_pull_request(self, full_name: str, id: int, **fields: Any) -> CloudPullRequest:
        fields.setdefault("source_commit", fake_sha(f"{full_name}#{id}"))
        fields.setdefault("source_branch", f"feature-{id}")
        with self.lock:
            pull = CloudPullRequest(id=id, **fields)
            repository = self.repositories[full_name.lower()]
            repository.pull_requests[id] = pull
            repository.commits.add(pull.source_commit)
            return pull

    def add_file(self, full_name: str, path: str, content: str | bytes, ref: str) -> None:
        data = content.encode() if isinstance(content, str) else content
        with self.lock:
            repository = self.repositories[full_name.lower()]
            repository.files.setdefault(ref, {})[path.strip("/")] = data
            if len(ref) == 40:
                repository.commits.add(ref)

    # -- the host's conventions ----------------------------------------------------------------

    def error(self, status: int, message: str) -> Response:
        return Response(status, {"type": "error", "error": {"message": message}})

    def not_found_route(self, request: Request) -> Response:
        return Response(
            404,
            {
                "type": "error",
                "error": {
                    "message": "Resource not found",
                    "detail": "There is no API hosted at this URL.",
                },
            },
        )

    def authenticate(self, request: Request) -> None:
        scheme, credential = parse_authorization(request.headers)
        if scheme == "basic" and credential and tuple(credential.split(":", 1)) in self.basic:
            request.principal = credential.split(":", 1)[0]
        elif scheme == "bearer" and credential in self.bearer:
            request.principal = "access-token"
            if self.rate_limit is not None:
                if self.rate_remaining <= 0:
                    raise Failure(429, "Rate limit for this resource has been exceeded")
                self.rate_remaining -= 1
        else:
            raise Failure(401, "Unauthorized")

    def finish(self, request: Request, response: Response) -> None:
        if self.rate_limit is not None and request.principal == "access-token":
            response.headers.setdefault("X-RateLimit-Limit", str(self.rate_limit))
            response.headers.setdefault("X-RateLimit-Resource", "api")
            near = self.rate_remaining < self.rate_limit // 5
            response.headers.setdefault("X-RateLimit-NearLimit", str(near).lower())

    # -- routes --------------------------------------------------------------------------------

    def routes(self) -> None:
        add = self.router.add
        base = "/repositories/{workspace}/{slug}"
        add("GET", base, self.get_repository)
        add("GET", f"{base}/pullrequests", self.list_pull_requests)
        add("GET", f"{base}/pullrequests/{{id}}", self.get_pull_request)
        add("GET", f"{base}/pullrequests/{{id}}/commits", self.list_pull_request_commits)
        add("GET", f"{base}/commit/{{commit}}", self.get_commit)
        add("GET", f"{base}/src/{{commit}}/{{path:path}}", self.get_source)
        add("GET", "/user", self.get_user)
        add(
            "GET", "/workspaces/{workspace}/permissions/repositories/{slug}", self.list_repository_permissions
        )
        self.write_routes(add)
        self.hook_routes(add)

    def _repository(self, request: Request) -> CloudRepository:
        name = f"{request.params['workspace']}/{request.params['slug']}"
        repository = self.repositories.get(name.lower())
        if repository is None:
            raise Failure(404, f"Repository {name} not found")
        return repository

    def _resolve(self, repository: CloudRepository, ref: str) -> str | None:
        if ref in repository.files or ref in repository.commits:
            return ref
        matches = [sha for sha in repository.commits if len(ref) >= 7 and sha.startswith(ref)]
        return matches[0] if len(matches) == 1 else None

    def get_user(self, request: Request) -> Response:
        account = self.caller(request)
        return Response(200, account.json() | {"links": {}, "created_on": iso(datetime.now(UTC))})

    def list_repository_permissions(self, request: Request) -> Response:
        repository = self._repository(request)
        caller = self.caller(request)
        is_admin = (
            self.token_is_admin
            if caller is self.token_account
            else self.level_of(repository, caller.uuid) == "admin"
        )
        if not is_admin:
            raise Failure(403, "You must be an administrator of the repository to view its permissions")
        query = request.query.get("q")
        wanted: tuple[str, str] | None = None
        if query:
            match = re.fullmatch(r'\s*user\.(uuid|account_id)\s*=\s*"([^"]*)"\s*', query)
            if match is None:
                raise Failure(400, f"Invalid query: {query}")
            wanted = (match.group(1), match.group(2))
        found = []
        for account in sorted(self.accounts.values(), key=lambda a: a.nickname):
            if wanted is not None and getattr(account, wanted[0]) != wanted[1]:
                continue
            level = self.level_of(repository, account.uuid)
            if level is not None:
                found.append((account, level))
        return self._paged(
            request,
            found,
            lambda item: {
                "type": "repository_permission",
                "permission": item[1],
                "user": item[0].json(),
                "repository": self.repository_ref_json(repository),
            },
        )

    def get_repository(self, request: Request) -> Response:
        return Response(200, self.repository_json(self._repository(request)))

    def get_pull_request(self, request: Request) -> Response:
        repository = self._repository(request)
        id = request.params["id"]
        pull = repository.pull_requests.get(int(id)) if id.isdigit() else None
        if pull is None:
            raise Failure(404, "Resource not found")
        return Response(200, self.pull_request_json(repository, pull))

    def list_pull_request_commits(self, request: Request) -> Response:
        """Newest first, paginated by `next` links, as Bitbucket Cloud lists them."""
        repository = self._repository(request)
        id = request.params["id"]
        pull = repository.pull_requests.get(int(id)) if id.isdigit() else None
        if pull is None:
            raise Failure(404, "Resource not found")
        commits = list(reversed(pull.commits or [(pull.source_commit, pull.created_on)]))
        page = request.int_param("page", 1)
        pagelen = min(100, request.int_param("pagelen", 10))
        items, last = page_of(commits, page, pagelen)
        body: dict[str, Any] = {
            "pagelen": pagelen,
            "page": page,
            "values": [
                {"type": "commit", "hash": sha, "date": iso(at), "message": "A commit"} for sha, at in items
            ],
        }
        if page < last:
            query = {**request.query, "page": str(page + 1), "pagelen": str(pagelen)}
            body["next"] = f"{self.origin}{request.path}?{urlencode(query)}"
        return Response(200, body)

    def list_pull_requests(self, request: Request) -> Response:
        repository = self._repository(request)
        state = request.query.get("state", "OPEN").upper()
        pulls = [
            p
            for p in sorted(repository.pull_requests.values(), key=lambda p: -p.id)
            if state == "ALL" or p.state == state
        ]
        page = request.int_param("page", 1)
        pagelen = min(50, request.int_param("pagelen", 10))
        items, last = page_of(pulls, page, pagelen)
        body: dict[str, Any] = {
            "pagelen": pagelen,
            "size": len(pulls),
            "page": page,
            "values": [self.pull_request_json(repository, p) for p in items],
        }
        if page < last:
            query = {**request.query, "page": str(page + 1), "pagelen": str(pagelen)}
            body["next"] = f"{self.origin}{request.path}?{urlencode(query)}"
        if page > 1:
            query = {**request.query, "page": str(page - 1), "pagelen": str(pagelen)}
            body["previous"] = f"{self.origin}{request.path}?{urlencode(query)}"
        return Response(200, body)

    def get_commit(self, request: Request) -> Response:
        repository = self._repository(request)
        sha = self._resolve(repository, request.params["commit"])
        if sha is None or sha not in repository.commits:
            raise Failure(404, f"Commit not found: {request.params['commit']}")
        return Response(200, self.commit_json(repository, sha))

    def get_source(self, request: Request) -> Response:
        repository = self._repository(request)
        ref = self._resolve(repository, request.params["commit"])
        if ref is None:
            raise Failure(404, "Commit not found")
        path = request.params["path"].strip("/")
        data = repository.files.get(ref, {}).get(path)
        if data is None:
            raise Failure(404, f"No such file or directory: {path}")
        return Response(
            200,
            data,
            {"Content-Disposition": "attachment", "ETag": f'"{fake_sha(path)}"'},
            "text/plain",
        )

    # -- JSON shapes ---------------------------------------------------------------------------

    def links(self, api: str, html: str) -> dict[str, Any]:
        return {"self": {"href": api}, "html": {"href": html}}

    def repository_ref_json(self, repository: CloudRepository) -> dict[str, Any]:
        return {
            "type": "repository",
            "full_name": repository.full_name,
            "name": repository.slug,
            "uuid": repository.uuid,
            "links": self.links(
                f"{self.url}/repositories/{repository.full_name}", f"{self.origin}/{repository.full_name}"
            ),
        }

    def repository_json(self, repository: CloudRepository) -> dict[str, Any]:
        now = iso(datetime.now(UTC))
        api = f"{self.url}/repositories/{repository.full_name}"
        return {
            **self.repository_ref_json(repository),
            "slug": repository.slug,
            "scm": "git",
            "is_private": True,
            "description": "",
            "fork_policy": "no_public_forks",
            "created_on": now,
            "updated_on": now,
            "size": 1024,
            "language": "",
            "has_issues": False,
            "has_wiki": False,
            "mainbranch": {"name": repository.main_branch, "type": "branch"},
            "workspace": {"type": "workspace", "slug": repository.workspace, "name": repository.workspace},
            "project": {"type": "project", "key": "PROJ", "name": "Project"},
            "links": {
                **self.links(api, f"{self.origin}/{repository.full_name}"),
                "pullrequests": {"href": f"{api}/pullrequests"},
                "commits": {"href": f"{api}/commits"},
                "source": {"href": f"{api}/src"},
            },
        }

    def source_json(self, repository: CloudRepository, source: str | None) -> dict[str, Any] | None:
        if source == "":
            return self.repository_ref_json(repository)
        if source is None:
            return None
        workspace, slug = source.split("/")
        return self.repository_ref_json(CloudRepository(workspace, slug))

    def commit_ref_json(self, repository: CloudRepository, sha: str) -> dict[str, Any]:
        return {
            "type": "commit",
            "hash": sha[:SHORT],
            "links": self.links(
                f"{self.url}/repositories/{repository.full_name}/commit/{sha[:SHORT]}",
                f"{self.origin}/{repository.full_name}/commits/{sha[:SHORT]}",
            ),
        }

    def commit_json(self, repository: CloudRepository, sha: str) -> dict[str, Any]:
        return {
            "type": "commit",
            "hash": sha,
            "date": iso(datetime.now(UTC)),
            "message": "A commit\n",
            "author": {"type": "author", "raw": "Dev <dev@example.com>"},
            "parents": [],
            "repository": self.repository_ref_json(repository),
            "links": self.links(
                f"{self.url}/repositories/{repository.full_name}/commit/{sha}",
                f"{self.origin}/{repository.full_name}/commits/{sha}",
            ),
        }

    def pull_request_json(self, repository: CloudRepository, pull: CloudPullRequest) -> dict[str, Any]:
        api = f"{self.url}/repositories/{repository.full_name}/pullrequests/{pull.id}"
        author = {"type": "user", "display_name": "Dev", "uuid": "{00000000-0000-0000-0000-000000000001}"}
        destination_sha = fake_sha(f"{repository.full_name}:{pull.destination_branch}")
        return {
            "type": "pullrequest",
            "id": pull.id,
            "title": pull.title,
            "description": "",
            "state": pull.state,
            "draft": pull.draft,
            "author": author,
            "source": {
                "branch": {"name": pull.source_branch},
                "commit": self.commit_ref_json(repository, pull.source_commit),
                "repository": self.source_json(repository, pull.source_repository),
            },
            "destination": {
                "branch": {"name": pull.destination_branch},
                "commit": self.commit_ref_json(repository, destination_sha),
                "repository": self.repository_ref_json(repository),
            },
            "merge_commit": (
                self.commit_ref_json(repository, fake_sha(f"merge {pull.source_commit}"))
                if pull.state == "MERGED"
                else None
            ),
            "comment_count": 0,
            "task_count": 0,
            "close_source_branch": False,
            "closed_by": author if pull.state in ("MERGED", "DECLINED") else None,
            "reason": "",
            "created_on": iso(pull.created_on),
            "updated_on": iso(pull.updated_on),
            "reviewers": [],
            "participants": [],
            "summary": {"type": "rendered", "raw": "", "markup": "markdown", "html": ""},
            "links": {
                **self.links(api, f"{self.origin}/{repository.full_name}/pull-requests/{pull.id}"),
                "commits": {"href": f"{api}/commits"},
                "comments": {"href": f"{api}/comments"},
                "statuses": {"href": f"{api}/statuses"},
                "diff": {"href": f"{api}/diff"},
            },
        }
